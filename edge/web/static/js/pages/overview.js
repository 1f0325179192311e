// Overview: site health at a glance, refreshed every 5 s from /api/v1/status (whose buffer
// carries the ingest rate and the time until full, so both show from the first render).
// Active alerts are counted once, from /api/v1/alerts/active, for every card that shows them.
// An untrusted clock is a warning above the cards; a site with KPIs shows today's so far.
import { api, fmt, fmtAge, fmtBytes, h, inBackground, t, table } from '../core.js';
import { grade, share, today as kpiToday } from './kpi.js';

const STATES = ['online', 'degraded', 'offline', 'starting', 'stopped'];

function card(title, ...body) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...body);
}

function stat(key, value, label, cls) {
  return h('div', { class: `stat ${cls || ''}` }, h('span', { class: 'num', 'data-k': key }, String(value)), h('span', { class: 'lbl' }, label));
}

export async function render(view) {
  view.append(h('h1', {}, t('overview.title')));
  const clock = h('div', { id: 'clock-warning', class: 'warn-box', role: 'status', hidden: true });
  const restart = h('div', { id: 'restart-pending', class: 'warn-box', role: 'status', hidden: true });
  const body = h('div', { class: 'grid' });
  view.append(clock, restart, body);
  let timer = null;
  let kpiOff = false; // a site without kpi: answers 404 once; it is not asked again every 5 s

  async function refresh() {
    const [st, alerts, sync, kpi] = await Promise.all([
      api('GET', '/api/v1/status'),
      api('GET', '/api/v1/alerts/active').catch(() => null),
      api('GET', '/api/v1/sync', undefined, { allowError: true }).then((r) => (r.ok ? r.data : null)),
      kpiOff ? null : kpiToday().catch(() => null),
    ]);
    if (kpi === undefined) kpiOff = true;
    showClock(clock, st.clock);
    showRestart(restart, st.restart_pending);
    const now = Date.now() / 1000;
    const f = fmt();
    const rate = st.buffer.ingest_rate ?? null;
    const untilFull = st.buffer.time_until_full_s ?? null;
    const devs = st.devices || {};
    const known = STATES.filter((s) => devs[s] !== undefined || ['online', 'degraded', 'offline'].includes(s));
    const deviceCard = card(t('overview.devices'),
      h('div', { class: 'stats' }, known.map((s) => stat(`devices-${s}`, devs[s] || 0, t('state.' + s), `st-${s}`))),
      h('a', { href: '/devices' }, t('overview.toDevices')));
    const active = alerts ? alerts.alerts || [] : null;
    const activeCount = active ? active.length : (st.components?.rules?.active ?? 0);
    const alertCard = card(t('overview.alerts'),
      h('div', { class: 'stats' }, stat('alerts-active', f.number(activeCount, 0), t('overview.activeAlerts'), activeCount ? 'st-offline' : 'st-online')),
      h('ul', { class: 'compact' }, (active || []).slice(0, 5).map((a) => h('li', {},
        a.payload.redacted ? `${a.source}: ${t('event.redacted', { privacy: t('privacy.' + a.payload.privacy) })}`
          : `${a.payload.name || a.source}: ${a.payload.message || ''}`))),
      h('a', { href: '/alerts' }, t('overview.toAlerts')));
    const b = st.buffer;
    const cursorRows = Object.entries(b.cursors || {}).map(([name, c]) => h('tr', {},
      h('td', {}, name), h('td', {}, t('cursor.' + c.kind)), h('td', { 'data-k': `backlog-${name}` }, f.number(c.backlog, 0)),
      h('td', {}, c.oldest_unsent_ts ? fmtAge(now - c.oldest_unsent_ts) : t('overview.upToDate'))));
    const bufferCard = card(t('overview.buffer'),
      h('div', { class: 'stats' },
        stat('buffer-rows', f.number(b.rows, 0), t('overview.rows')),
        stat('buffer-bytes', fmtBytes(b.bytes), t('overview.bytes')),
        stat('buffer-full', untilFull === null ? t('overview.notFilling') : f.fromNow(untilFull), t('overview.untilFull'))),
      h('p', { class: 'hint' }, t('overview.cap', { max: fmtBytes(b.max_bytes), policy: t('policy.' + b.when_full) })),
      cursorRows.length
        ? table([t('overview.cursor'), t('overview.kind'), t('overview.backlog'), t('overview.oldestUnsent')], cursorRows)
        : h('p', { class: 'hint' }, t('overview.noCursors')));
    const comps = Object.entries(st.components || {});
    const syncCard = card(t('overview.components'),
      comps.length
        ? comps.map(([name, s]) => componentView(name, name === 'rules' && active ? { ...s, active: activeCount } : s, now))
        : h('p', { class: 'hint' }, t('overview.noComponents')),
      null);
    const hubCard = card(t('overview.ingest'),
      h('div', { class: 'stats' },
        stat('ingest-rate', f.number(rate, 1), t('overview.perSecond')),
        stat('hub-points', st.hub.points, t('overview.points')),
        stat('hub-received', f.number(st.hub.received, 0), t('overview.received'))),
      h('p', { class: 'hint' }, t('overview.uptime', { age: f.duration(st.uptime_s), since: f.dateTime(now - st.uptime_s) })));
    const cards = [deviceCard, alertCard, bufferCard, hubCard];
    if (kpi) {
      const dev = kpi.devices || [];
      const worstTarget = (k) => Math.max(...dev.map((x) => (x.targets || {})[k] ?? 0), 0) || null;
      const unacked = (kpi.alerts || {}).awaiting_ack ?? 0;
      cards.splice(2, 0, card(t('overview.kpi'),
        h('div', { class: 'stats', id: 'kpi-today' },
          stat('kpi-availability', share(kpi.site.availability), t('overview.kpiAvailability'), `g-${grade(kpi.site.availability, worstTarget('availability'))}`),
          stat('kpi-completeness', share(kpi.site.completeness), t('overview.kpiCompleteness'), `g-${grade(kpi.site.completeness, worstTarget('completeness'))}`),
          stat('kpi-unacked', f.number(unacked, 0), t('overview.kpiUnacked'), unacked ? 'st-offline' : 'st-online')),
        h('a', { href: '/kpi' }, t('overview.toKpi'))));
    }
    if (sync && (sync.sinks.length || sync.consumers.length)) {
      cards.push(card(t('overview.sync'), h('table', { class: 'plain' }, h('tbody', {},
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
  // every call of refresh() starts before its first await: all are marked as the page's own
  timer = setInterval(() => inBackground(refresh).catch(() => {}), 5000);
  return () => clearInterval(timer);
}

// The clock's trust (`clock` of /api/v1/status): a warning in the page's language, with the
// gateway's own reason (it names the kernel's sync state) as data.
function showClock(box, clock) {
  const untrusted = !!clock && clock.trusted === false;
  box.hidden = !untrusted;
  if (!untrusted) { box.replaceChildren(); return; }
  box.replaceChildren(
    h('strong', {}, t('overview.clockUntrusted')),
    h('div', {}, t('overview.clockReason'), ' ', h('span', { translate: 'no', 'data-k': 'clock-reason' }, clock.reason || '')),
    h('div', { class: 'sub' }, t('overview.clockHelp')));
}

// Keys of the site file a reload read but only a restart applies (`restart_pending` of
// /api/v1/status): the settings in force are the earlier ones until then.
function showRestart(box, keys) {
  const pending = Array.isArray(keys) && keys.length > 0;
  box.hidden = !pending;
  if (!pending) { box.replaceChildren(); return; }
  box.replaceChildren(
    h('strong', {}, t('overview.restartPending')),
    h('div', {}, h('span', { translate: 'no', 'data-k': 'restart-keys' }, keys.join(', '))),
    h('div', { class: 'sub' }, t('overview.restartHelp')));
}

// The components the UI knows get translated rows; any other falls back to its raw fields.
function componentView(name, s, now) {
  const rows = (COMPONENT_ROWS[name] || rawRows)(s || {}, now, name);
  const title = COMPONENT_TITLES[name] ? t(COMPONENT_TITLES[name]) : name;
  return h('div', { class: 'component', 'data-component': name },
    h('h3', {}, title),
    h('dl', { class: 'kv' }, rows.map(([key, label, value, cls]) => [
      h('dt', {}, label),
      h('dd', { 'data-k': `comp-${name}-${key}`, class: cls || '' }, String(value))])));
}

const COMPONENT_TITLES = { rules: 'comp.rules.title', sync: 'comp.sync.title', modbus_server: 'comp.modbus.title', trend: 'comp.trend.title', kpi: 'comp.kpi.title' };

const COMPONENT_ROWS = {
  rules: (s) => [
    ['enabled', t('comp.rules.enabledLabel'), t('comp.rules.enabled', { n: s.enabled ?? 0, total: s.rules ?? 0 })],
    ['active', t('comp.rules.activeLabel'), s.active ?? 0, s.active ? 'err-text' : ''],
    ['pending', t('comp.rules.pendingLabel'), s.pending ?? 0],
    ['errors', t('comp.rules.errorsLabel'), s.errors ?? 0, s.errors ? 'err-text' : ''],
    ['evaluations', t('comp.rules.evaluationsLabel'), fmt().number(s.evaluations ?? 0, 0)],
    ['firings', t('comp.rules.firingsLabel'), fmt().number(s.firings ?? 0, 0)],
    ['actions', t('comp.rules.actionsLabel'),
      t('comp.rules.actions', { ok: s.actions_executed ?? 0, failed: s.actions_failed ?? 0 }),
      s.actions_failed ? 'err-text' : ''],
  ],
  sync: (s, now) => [
    ...(s.sinks || []).map((k) => [`sink-${k.id}`, t('comp.sync.sink', { id: k.id }), [
      k.last_error ? t('overview.syncError') : t('overview.syncOk'),
      t('overview.backlogRows', { n: k.backlog_rows ?? 0 }),
      t('overview.lastSuccess', { age: k.last_success ? fmtAge(now - k.last_success) : '—' }),
      ...(k.dead_letters ? [t('comp.sync.deadLetters', { n: k.dead_letters })] : []),
      ...(k.last_error ? [t('comp.sync.lastError', { error: k.last_error })] : []),
    ].join(' · '), k.last_error ? 'err-text' : '']),
    ...(s.consumers || []).map((c) => [`consumer-${c.id}`, t('comp.sync.consumer', { id: c.id }), [
      t('overview.backlogRows', { n: c.backlog_rows ?? 0 }),
      t('overview.lastAck', { age: c.last_ack ? fmtAge(now - c.last_ack) : '—' }),
    ].join(' · ')]),
  ],
  trend: (s, now) => [
    ['cursor', t('comp.trend.cursor'), s.cursor ?? 0],
    ['lag', t('comp.trend.lag'), t('comp.trend.lagRows', { n: fmt().number(s.lag_rows ?? 0, 0) })],
    ['buckets', t('comp.trend.buckets'), fmt().number(s.buckets ?? 0, 0)],
    ['last-rollup', t('comp.trend.lastRollup'), s.last_rollup ? fmtAge(now - s.last_rollup) : '—'],
    ...(s.last_error ? [['error', t('comp.trend.lastError'), s.last_error, 'err-text']] : []),
  ],
  kpi: (s) => [
    ['position', t('comp.kpi.position'), s.position ?? 0],
    ['closed', t('comp.kpi.daysClosed'), fmt().number(s.days_closed ?? 0, 0)],
    ...(s.last_error ? [['error', t('comp.kpi.lastError'), s.last_error, 'err-text']] : []),
  ],
  modbus_server: (s) => [
    ['listen', t('comp.modbus.listen'), s.port ? `${s.listen} (${s.port})` : String(s.listen ?? '—')],
    ['points', t('comp.modbus.points'), s.points ?? 0],
    ['requests', t('comp.modbus.requests'), s.requests ?? 0],
    ...((s.unknown_points || []).length
      ? [['unknown', t('comp.modbus.unknown'), s.unknown_points.join(', '), 'err-text']] : []),
  ],
};

function rawRows(s, now, name) {
  return [['raw', name, summary(s)]];
}

function summary(s) {
  if (!s || typeof s !== 'object') return String(s);
  return Object.entries(s)
    .filter(([, v]) => v === null || typeof v !== 'object')
    .slice(0, 6)
    .map(([k, v]) => `${k}: ${typeof v === 'number' ? fmt().number(v) : v}`)
    .join(' · ');
}
