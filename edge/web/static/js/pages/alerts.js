// Alerts and events: filter by kind, severity, period and acknowledgement; acknowledge with a comment.
// A camera's `snapshot` event shows a thumbnail of its blob that opens the full image in a new tab.
import { api, badge, can, dialog, fmtTime, h, t, table } from '../core.js';

const SEV = { critical: 'bad', warning: 'warn', info: 'info', debug: 'muted' };

function describe(e) {
  const p = e.payload || {};
  if (e.kind === 'alert') return `${p.name || p.rule || e.source} — ${t('alertState.' + (p.state || 'fired'))}${p.message ? ': ' + p.message : ''}`;
  if (e.kind === 'command') return `${p.point} ← ${JSON.stringify(p.value)} (${p.status}${p.reason ? ', ' + p.reason : ''}) ${p.by || ''}`;
  return Object.entries(p).slice(0, 5).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ');
}

const BLOB_ID = /^[0-9a-f]{64}$/;
const THUMB_W = 96;

// A snapshot's thumbnail. A viewer gets the event without its payload (the events API minimises
// personal events), and a blob may have been pruned since: both show a line of text, never a
// broken image.
function snapshot(e) {
  const p = e.payload || {};
  if (typeof p.blob !== 'string' || !BLOB_ID.test(p.blob)) return h('span', { class: 'hint snapshot-withheld' }, t('alerts.snapshotWithheld'));
  const url = '/api/v1/blobs/' + p.blob;
  const height = p.width > 0 && p.height > 0 ? Math.round((THUMB_W * p.height) / p.width) : null;
  const img = h('img', { class: 'thumb', src: url, loading: 'lazy', width: THUMB_W, height, alt: t('alerts.snapshotAlt', { source: e.source, time: fmtTime(e.ts) }) });
  const link = h('a', { class: 'snapshot', href: url, target: '_blank', rel: 'noopener', title: t('alerts.snapshotOpen') }, img);
  img.addEventListener('error', () => link.replaceWith(h('span', { class: 'hint snapshot-gone' }, t('alerts.snapshotGone'))));
  return h('div', { class: 'snapshot-cell' }, link, p.rule ? h('span', { class: 'sub' }, t('alerts.snapshotRule', { rule: p.rule })) : null);
}

export async function render(view, _params, query) {
  view.append(h('h1', {}, t('alerts.title')));
  const kind = h('select', { id: 'f-kind' }, h('option', { value: '' }, t('alerts.allKinds')),
    ['alert', 'command', 'device_offline', 'driver_restart', 'vehicle_passage', 'blood_pressure', 'snapshot', 'gateway_started'].map((k) => h('option', { value: k }, k)));
  kind.value = query.get('kind') || 'alert';
  const severity = h('select', { id: 'f-severity' }, h('option', { value: '' }, t('alerts.allSeverities')),
    ['critical', 'warning', 'info', 'debug'].map((s) => h('option', { value: s }, t('severity.' + s))));
  const period = h('select', { id: 'f-period' }, [[3600, 'alerts.1h'], [86400, 'alerts.24h'], [604800, 'alerts.7d']].map(([v, k]) => h('option', { value: v }, t(k))));
  period.value = '86400';
  const unacked = h('input', { type: 'checkbox', id: 'f-unacked' });
  const list = h('div', { id: 'events' });
  for (const c of [kind, severity, period, unacked]) c.addEventListener('change', load);
  view.append(h('div', { class: 'row filters' },
    h('label', {}, t('alerts.kind'), kind), h('label', {}, t('alerts.severity'), severity),
    h('label', {}, t('alerts.period'), period), h('label', { class: 'check' }, unacked, t('alerts.unacked'))), list);

  async function load() {
    const q = new URLSearchParams({ limit: '300', since: String(Date.now() / 1000 - Number(period.value)) });
    if (kind.value) q.set('kind', kind.value);
    if (severity.value) q.set('severity', severity.value);
    if (unacked.checked) q.set('unacked', '1');
    const { events } = await api('GET', '/api/v1/events?' + q);
    const rows = events.map((e) => h('tr', { 'data-seq': e.seq, 'data-kind': e.kind, 'data-source': e.source },
      h('td', {}, fmtTime(e.ts)), h('td', {}, e.kind), h('td', {}, e.source),
      h('td', {}, badge(SEV[e.severity] || 'muted', t('severity.' + e.severity))),
      h('td', { class: 'desc' }, e.kind === 'snapshot' ? snapshot(e) : describe(e)),
      h('td', {}, e.ack
        ? h('span', { class: 'acked', title: e.ack.comment }, t('alerts.ackedBy', { user: e.ack.user }), e.ack.comment ? h('div', { class: 'sub' }, e.ack.comment) : null)
        : can('write') ? h('button', { class: 'secondary small', 'data-ack': e.seq, onclick: () => ack(e) }, t('alerts.ack')) : '')));
    list.replaceChildren(rows.length
      ? table([t('alerts.time'), t('alerts.kind'), t('alerts.source'), t('alerts.severity'), t('alerts.detail'), t('alerts.ackCol')], rows, { class: 'events' })
      : h('p', { class: 'hint', id: 'no-events' }, t('alerts.none')));
    list.dataset.loaded = String(Date.now());
  }

  async function ack(e) {
    const v = await dialog(t('alerts.ackTitle'), h('label', {}, t('alerts.comment'), h('textarea', { name: 'comment', id: 'ack-comment', rows: 3 })), t('alerts.ack'));
    if (!v) return;
    await api('POST', `/api/v1/alerts/${e.seq}/ack`, { comment: v.comment || '' });
    await load();
  }

  await load();
  // New alerts appear without reloading: the live stream carries events too.
  const es = new EventSource('/api/v1/live?points=-');
  let pending = null;
  es.addEventListener('records', (ev) => {
    if (JSON.parse(ev.data).some((r) => r.type === 'event')) { clearTimeout(pending); pending = setTimeout(() => load().catch(() => {}), 500); }
  });
  return () => { es.close(); clearTimeout(pending); };
}
