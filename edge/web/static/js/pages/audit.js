// Audit log: who logged in, changed a rule, wrote a point, created a token.
import { api, fmtTime, h, t, table } from '../core.js';

export async function render(view) {
  view.append(h('h1', {}, t('audit.title')));
  const filter = h('input', { id: 'audit-filter', placeholder: t('audit.filter') });
  const out = h('div');
  view.append(h('div', { class: 'row' }, filter), out);
  const { entries } = await api('GET', '/api/v1/audit?limit=500');
  function draw() {
    const f = filter.value.trim().toLowerCase();
    const rows = entries.filter((e) => !f || `${e.actor} ${e.action} ${e.target}`.toLowerCase().includes(f)).map((e) => h('tr', { 'data-action': e.action },
      h('td', {}, fmtTime(e.ts)), h('td', {}, e.actor), h('td', {}, t('action.' + e.action) === 'action.' + e.action ? e.action : t('action.' + e.action)),
      h('td', {}, e.target), h('td', { class: 'desc' }, Object.entries(e.detail || {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' '))));
    out.replaceChildren(table([t('alerts.time'), t('audit.actor'), t('audit.action'), t('audit.target'), t('alerts.detail')], rows, { class: 'audit' }));
  }
  filter.addEventListener('input', draw);
  draw();
}
