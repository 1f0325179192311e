// Rules: list with state and last firing, enable/disable, pack import/export (rules API).
import { api, badge, can, errorBox, fmtTime, h, t, table } from '../core.js';

// a rule state's badge colour, the same in the list and the editor: an active rule has an alert on
export const STATE_BADGE = { ok: 'ok', pending: 'warn', active: 'bad', error: 'bad', disabled: 'muted' };

// A server message (a problem, or one validation error of it) in the reader's language: its
// `message_key` and `args` from the catalogue, else the server's English.
export function said(m) {
  const key = m && m.message_key;
  if (key) { const s = t(key, m.args || undefined); if (s !== key) return s; }
  return (m && (m.message || [m.title, m.detail].filter(Boolean).join(': '))) || '';
}

// A pack the gateway refused: the count, then its problems (each `file:line: text`) with their
// line in the reader's words, the first ones listed (the rest counted).
const PACK_PROBLEMS_SHOWN = 10;
function packRefused(data) {
  const box = h('div', { class: 'error', role: 'alert' }, said(data));
  const errors = Array.isArray(data && data.errors) ? data.errors : data && data.args && data.args.first ? [data.args.first] : [];
  if (!errors.length) return box;
  const line = (p) => {
    const m = /^[^\n]*?:(\d+): (.*)$/s.exec(String(p));
    return m ? `${t('rules.packLine', { line: m[1] })} ${m[2]}` : String(p);
  };
  const list = h('ul', { class: 'pack-problems' }, errors.slice(0, PACK_PROBLEMS_SHOWN).map((p) => h('li', {}, line(p))));
  if (errors.length > PACK_PROBLEMS_SHOWN) list.append(h('li', { class: 'hint' }, t('editor.more', { n: errors.length - PACK_PROBLEMS_SHOWN })));
  box.append(list);
  return box;
}

export async function render(view) {
  view.append(h('h1', {}, t('rules.title')));
  const res = await api('GET', '/api/v1/rules', undefined, { allowError: true });
  if (res.status === 404) {
    view.append(h('div', { class: 'error', id: 'rules-missing' }, t('rules.apiMissing')));
    return;
  }
  if (!res.ok) { view.append(errorBox({ toString: () => said(res.data) })); return; }
  const msg = h('div', { id: 'rules-msg' });
  const tools = h('div', { class: 'row' });
  if (can('rules')) {
    const file = h('input', { type: 'file', accept: '.yaml,.yml', id: 'pack-file', hidden: true, onchange: async () => {
      const text = await file.files[0].text();
      const r = await api('POST', '/api/v1/rules/import', text, { raw: true, contentType: 'application/yaml', allowError: true });
      msg.replaceChildren(r.ok ? h('div', { class: 'ok-box' }, t('rules.imported')) : packRefused(r.data));
      if (r.ok) setTimeout(() => location.reload(), 600);
    } });
    tools.append(h('a', { href: '/rules/new', class: 'button primary', id: 'new-rule' }, t('rules.new')),
      h('button', { class: 'secondary', onclick: () => file.click() }, t('rules.import')), file);
  }
  tools.append(h('a', { href: '/api/v1/rules/export', class: 'button secondary', download: 'rules.yaml' }, t('rules.export')));
  view.append(tools, msg);
  const rows = res.data.rules.map((r) => {
    const toggle = can('rules') ? h('button', { class: 'secondary small', onclick: async () => {
      await api('POST', `/api/v1/rules/${encodeURIComponent(r.id)}/${r.enabled ? 'disable' : 'enable'}`, {});
      location.reload();
    } }, r.enabled ? t('rules.disable') : t('rules.enable')) : null;
    return h('tr', { 'data-rule': r.id },
      h('td', {}, h('a', { href: `/rules/${encodeURIComponent(r.id)}` }, r.id)),
      h('td', {}, r.name || ''),
      h('td', {}, badge(STATE_BADGE[r.state] || 'muted', t('ruleState.' + r.state)), r.error ? h('div', { class: 'err-text' }, r.error) : null),
      h('td', {}, r.redacted ? t('ruleState.redacted') : r.last_fired ? fmtTime(r.last_fired) : t('rules.never')),
      h('td', {}, String(r.version ?? '')),
      h('td', {}, toggle));
  });
  view.append(rows.length
    ? table([t('rules.id'), t('rules.name'), t('rules.state'), t('rules.lastFired'), t('rules.version'), ''], rows, { class: 'rules' })
    : h('p', { class: 'hint' }, t('rules.none')));
}
