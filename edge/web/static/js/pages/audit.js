// Audit log: who logged in, changed a rule, wrote a point, created a token, read personal data.
// Actions, detail fields and their coded values (roles, classes, states) read in the page's
// language; an action or value the catalogue does not know shows as it is recorded.
import { api, fmt, fmtTime, h, state, t, table } from '../core.js';

const label = (prefix, key) => (state.cat[prefix + key] !== undefined ? t(prefix + key) : key);

// a recorded value in words where the catalogue has them: a role, a principal's kind, a rule's
// state, an alert's event kind; names, addresses and free text stay as recorded
function valueText(field, v) {
  if (field === 'role') return label('role.', v);
  const own = `audit.value.${field}.${v}`;
  if (state.cat[own] !== undefined) return t(own);
  if (field === 'kind') return label('event.kind.', v);
  return v;
}

// a field recorded empty (null: a raw register read has no quality nor duration) is left out
function detailText(detail) {
  return Object.entries(detail || {}).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => {
    let shown = v;
    if (typeof v === 'number') shown = fmt().number(v);
    else if (typeof v === 'boolean') shown = v ? t('value.yes') : t('value.no');
    else if (typeof v === 'string') shown = valueText(k, v);
    else if (k === 'classes' && v && typeof v === 'object' && !Array.isArray(v)) {
      // records read per privacy class: "sensitive 11, personal 2"
      shown = Object.entries(v).map(([c, n]) => `${label('privacy.class.', c)} ${typeof n === 'number' ? fmt().number(n) : n}`).join(', ');
    } else if (Array.isArray(v)) shown = v.map((x) => (k === 'scopes' ? label('scope.', x) : typeof x === 'object' ? JSON.stringify(x) : x)).join(' ');
    else if (v && typeof v === 'object') shown = JSON.stringify(v);
    return `${label('audit.field.', k)}: ${shown}`;
  }).join(' · ');
}

export async function render(view) {
  view.append(h('h1', {}, t('audit.title')));
  const filter = h('input', { id: 'audit-filter', placeholder: t('audit.filter'), type: 'search' });
  const out = h('div');
  view.append(h('div', { class: 'row' }, filter), out);
  const { entries } = await api('GET', '/api/v1/audit?limit=500');
  function draw() {
    const f = filter.value.trim().toLowerCase();
    const rows = entries.filter((e) => !f || `${e.actor} ${e.action} ${label('action.', e.action)} ${e.target}`.toLowerCase().includes(f)).map((e) => h('tr', { 'data-action': e.action },
      h('td', { class: 'when' }, fmtTime(e.ts)), h('td', { translate: 'no' }, e.actor), h('td', {}, label('action.', e.action)),
      h('td', { translate: 'no' }, e.target), h('td', { class: 'desc' }, detailText(e.detail))));
    out.replaceChildren(rows.length
      ? table([t('alerts.time'), t('audit.actor'), t('audit.action'), t('audit.target'), t('alerts.detail')], rows, { class: 'audit' })
      : h('p', { class: 'hint none' }, t('audit.none')));
  }
  filter.addEventListener('input', draw);
  draw();
}
