// Overview: site health at a glance, refreshed every 5 s from /api/v1/status.
import { api, fmtAge, fmtBytes, h, t } from '../core.js';

const STATES = ['online', 'degraded', 'offline', 'starting', 'stopped'];

function card(title, ...body) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...body);
}

function stat(key, value, label, cls) {
  return h('div', { class: `stat ${cls || ''}` }, h('span', { class: 'num', 'data-k': key }, String(value)), h('span', { class: 'lbl' }, label));
}

export async function render(view) {
  view.append(h('h1', {}, t('overview.title')));
  const body = h('div', { class: 'grid' });
  view.append(body);
  let prev = null;
  let timer = null;

  async function refresh() {
    const [st, alerts, sync] = await Promise.all([
      api('GET', '/api/v1/status'),
      api('GET', '/api/v1/alerts/active').catch(() => ({ alerts: [] })),
      api('GET', '/api/v1/sync', undefined, { allowError: true }).then((r) => (r.ok ? r.data : null)),
    ]);
    const now = Date.now() / 1000;
    let rate = null;
    let untilFull = null;
    if (prev) {
      const dt = now - prev.now;
      rate = Math.max(0, (st.hub.received - prev.st.hub.received) / dt);
      const growth = (st.buffer.bytes - prev.st.buffer.bytes) / dt;
      if (growth > 0 && st.buffer.max_bytes) untilFull = (st.buffer.max_bytes - st.buffer.bytes) / growth;
    }
    prev = { st, now };
    const devs = st.devices || {};
    const known = STATES.filter((s) => devs[s] !== undefined || ['online', 'degraded', 'offline'].includes(s));
    const deviceCard = card(t('overview.devices'),
      h('div', { class: 'stats' }, known.map((s) => stat(`devices-${s}`, devs[s] || 0, t('state.' + s), `st-${s}`))),
      h('a', { href: '/devices' }, t('overview.toDevices')));
    const active = alerts.alerts || [];
    const alertCard = card(t('overview.alerts'),
      h('div', { class: 'stats' }, stat('alerts-active', active.length, t('overview.activeAlerts'), active.length ? 'st-offline' : 'st-online')),
      h('ul', { class: 'compact' }, active.slice(0, 5).map((a) => h('li', {}, `${a.payload.name || a.source}: ${a.payload.message || ''}`))),
      h('a', { href: '/alerts' }, t('overview.toAlerts')));
    const b = st.buffer;
    const cursorRows = Object.entries(b.cursors || {}).map(([name, c]) => h('tr', {},
      h('td', {}, name), h('td', {}, t('cursor.' + c.kind)), h('td', { 'data-k': `backlog-${name}` }, String(c.backlog)),
      h('td', {}, c.oldest_unsent_ts ? fmtAge(now - c.oldest_unsent_ts) : t('overview.upToDate'))));
    const bufferCard = card(t('overview.buffer'),
      h('div', { class: 'stats' },
        stat('buffer-rows', b.rows, t('overview.rows')),
        stat('buffer-bytes', fmtBytes(b.bytes), t('overview.bytes')),
        stat('buffer-full', untilFull === null ? '—' : fmtAge(untilFull), t('overview.untilFull'))),
      h('p', { class: 'hint' }, t('overview.cap', { max: fmtBytes(b.max_bytes), policy: t('policy.' + b.when_full) })),
      cursorRows.length
        ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, t('overview.cursor')), h('th', {}, t('overview.kind')), h('th', {}, t('overview.backlog')), h('th', {}, t('overview.oldestUnsent')))), h('tbody', {}, cursorRows))
        : h('p', { class: 'hint' }, t('overview.noCursors')));
    const comps = Object.entries(st.components || {});
    const syncCard = card(t('overview.components'),
      comps.length
        ? h('dl', { class: 'kv' }, comps.map(([name, s]) => [h('dt', {}, name), h('dd', {}, summary(s))]))
        : h('p', { class: 'hint' }, t('overview.noComponents')),
      null);
    const hubCard = card(t('overview.ingest'),
      h('div', { class: 'stats' },
        stat('ingest-rate', rate === null ? '—' : rate.toFixed(1), t('overview.perSecond')),
        stat('hub-points', st.hub.points, t('overview.points')),
        stat('hub-received', st.hub.received, t('overview.received'))),
      h('p', { class: 'hint' }, t('overview.uptime', { age: fmtAge(st.uptime_s) })));
    const cards = [deviceCard, alertCard, bufferCard, hubCard];
    if (sync && (sync.sinks.length || sync.consumers.length)) {
      cards.push(card(t('overview.sync'), h('table', {}, h('tbody', {},
        sync.sinks.map((s) => h('tr', { 'data-sync': s.id }, h('td', {}, s.id),
          h('td', {}, s.last_error ? h('span', { class: 'err-text' }, t('overview.syncError')) : t('overview.syncOk')),
          h('td', {}, t('overview.lastSuccess', { age: s.last_success ? fmtAge(now - s.last_success) : '—' })),
          h('td', {}, t('overview.backlogRows', { n: s.backlog_rows })))),
        sync.consumers.map((c) => h('tr', { 'data-sync': c.id }, h('td', {}, c.id), h('td', {}, t('cursor.consumer')),
          h('td', {}, t('overview.lastAck', { age: c.last_ack ? fmtAge(now - c.last_ack) : '—' })),
          h('td', {}, t('overview.backlogRows', { n: c.backlog_rows })))))),
      h('a', { href: '/sync' }, t('overview.toSync'))));
    }
    cards.push(syncCard);
    body.replaceChildren(...cards);
    body.dataset.loaded = '1';
  }

  await refresh();
  timer = setInterval(() => refresh().catch(() => {}), 5000);
  return () => clearInterval(timer);
}

function summary(s) {
  if (!s || typeof s !== 'object') return String(s);
  return Object.entries(s)
    .filter(([, v]) => v === null || typeof v !== 'object')
    .slice(0, 6)
    .map(([k, v]) => `${k}: ${v}`)
    .join(' · ');
}
