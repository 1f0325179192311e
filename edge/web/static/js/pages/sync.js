// Sync: per sink and consumer cursor, backlog, last success/error; dead letters (the newest first,
// a page at a time, "Load older" for the next) with a retry button for roles that may write. An
// empty list says so ("no push sinks configured") rather than showing bare headers. MQTT sinks
// (those whose status says whether the broker link is up) get a second table for the link:
// connected, session present, in flight, last PUBACK, backlog.
import { api, can, errorBox, fmt, fmtAge, fmtBytes, fmtTime, h, t, table, tableOrNone } from '../core.js';

export async function render(view) {
  view.append(h('h1', {}, t('sync.title')));
  const res = await api('GET', '/api/v1/sync', undefined, { allowError: true });
  const now = Date.now() / 1000;
  if (!res.ok) {
    view.append(h('div', { class: 'error', id: 'sync-missing' }, t('sync.apiMissing')));
    const st = await api('GET', '/api/v1/status');
    const rows = Object.entries(st.buffer.cursors || {}).map(([name, c]) => h('tr', {},
      h('td', {}, name), h('td', {}, t('cursor.' + c.kind)), h('td', {}, String(c.seq)), h('td', {}, fmt().number(c.backlog, 0)),
      h('td', {}, c.oldest_unsent_ts ? fmtAge(now - c.oldest_unsent_ts) : t('overview.upToDate'))));
    view.append(h('h2', {}, t('sync.cursors')), tableOrNone([t('sync.id'), t('overview.kind'), t('sync.cursor'), t('overview.backlog'), t('overview.oldestUnsent')], rows, t('overview.noCursors')));
    return;
  }
  const d = res.data;
  view.append(h('h2', {}, t('sync.sinks')), tableOrNone(
    [t('sync.id'), t('sync.type'), t('sync.cursor'), t('overview.backlog'), t('overview.oldestUnsent'), t('sync.inFlight'), t('sync.lastSuccess'), t('sync.lastError'), t('sync.retryIn'), t('sync.deadLetters')],
    (d.sinks || []).map((s) => h('tr', { 'data-sink': s.id },
      h('td', {}, s.id), h('td', {}, s.type), h('td', {}, String(s.cursor)),
      h('td', {}, `${fmt().number(s.backlog_rows, 0)} (${fmtBytes(s.backlog_bytes)})`),
      h('td', {}, s.oldest_unsent_age_s ? fmtAge(s.oldest_unsent_age_s) : t('overview.upToDate')),
      h('td', { class: 'in-flight' }, `${s.in_flight ?? 0} / ${s.max_in_flight ?? 1}`),
      h('td', {}, fmtTime(s.last_success)), h('td', { class: 'err-text' }, s.last_error || ''),
      h('td', {}, s.retry_in_s ? fmt().fromNow(s.retry_in_s) : '—'), h('td', {}, fmt().number(s.dead_letters || 0, 0)))),
    t('sync.noSinks'), { id: 'sinks' }));
  const mqtt = (d.sinks || []).filter((s) => 'connected' in s && 'last_puback' in s);
  if (mqtt.length) view.append(h('h2', {}, t('sync.mqttSinks')), mqttTable(mqtt));
  view.append(h('h2', {}, t('sync.consumers')), tableOrNone(
    [t('sync.id'), t('sync.cursor'), t('overview.backlog'), t('overview.oldestUnsent'), t('sync.lastAck')],
    (d.consumers || []).map((c) => h('tr', { 'data-consumer': c.id },
      h('td', {}, c.id), h('td', {}, String(c.cursor)), h('td', {}, fmt().number(c.backlog_rows, 0)),
      h('td', {}, c.oldest_unsent_age_s ? fmtAge(c.oldest_unsent_age_s) : t('overview.upToDate')), h('td', {}, fmtTime(c.last_ack)))),
    t('sync.noConsumers'), { id: 'consumers' }));
  const dl = h('div', { id: 'dead-letters' });
  view.append(h('h2', {}, t('sync.deadLetters')), dl);
  // the sinks' count of dead letters not yet delivered on retry (the list also shows retried ones)
  let waiting = (d.sinks || []).reduce((n, s) => n + (s.dead_letters || 0), 0);
  const mayRetry = can('write');
  const PAGE = 100;
  let shown = [];
  let more = false; // whether older dead letters than those shown exist
  const row = (x) => h('tr', { 'data-dead': x.id }, h('td', {}, String(x.id)), h('td', {}, x.sink || ''), h('td', {}, fmtTime(x.ts)),
    h('td', { 'data-k': 'class', title: x.privacy && x.privacy !== 'public' ? t('sync.expiresByClass') : '' }, x.privacy ? t('privacy.class.' + x.privacy) : '—'),
    h('td', { class: 'err-text' }, `${x.status ?? ''} ${x.response || ''}`.trim()), h('td', {}, x.record ? t('sync.recordIs', { seq: x.seq, what: x.record.point || x.record.kind || '' }) : String(x.seq ?? '')),
    h('td', {}, x.retried ? t('sync.retried') : mayRetry ? h('button', { class: 'secondary small', 'data-retry': x.id, onclick: async () => {
      const res = await api('POST', `/api/v1/sync/dead-letters/${encodeURIComponent(x.id)}/retry`, {}, { allowError: true });
      if (res.ok && !x.retried) { x.retried = true; waiting = Math.max(0, waiting - 1); }
      draw();
      if (!res.ok) dl.prepend(errorBox(res));
    } }, t('sync.retry')) : ''));
  function draw() {
    if (!shown.length) { dl.replaceChildren(h('p', { class: 'hint' }, t('sync.noDead'))); return; }
    const older = more ? h('button', { class: 'secondary', id: 'dead-older', onclick: () => loadDead(shown[shown.length - 1].id) }, t('sync.loadOlder')) : null;
    dl.replaceChildren(
      h('p', { class: 'hint', id: 'dead-count' }, t('sync.deadShown', { shown: fmt().number(shown.length, 0), waiting: fmt().number(waiting, 0) })),
      table([t('sync.id'), t('sync.sink'), t('alerts.time'), t('privacy.class'), t('sync.reason'), t('sync.record'), ''], shown.map(row)),
      older);
  }
  // from the newest, or the page older than dead letter `before` (appended to the list shown)
  async function loadDead(before) {
    const q = `limit=${PAGE + 1}${before ? `&before=${encodeURIComponent(before)}` : ''}`;
    const r = await api('GET', `/api/v1/sync/dead-letters?${q}`, undefined, { allowError: true });
    const items = r.ok ? (r.data.dead_letters || r.data.items || []) : [];
    more = items.length > PAGE;
    shown = before ? shown.concat(items.slice(0, PAGE)) : items.slice(0, PAGE);
    draw();
    if (!r.ok) dl.prepend(errorBox(r));
  }
  await loadDead();
}

function mqttTable(sinks) {
  const now = Date.now() / 1000;
  return table([t('sync.id'), t('sync.broker'), t('sync.connected'), t('sync.sessionPresent'), t('sync.inFlight'), t('sync.lastPuback'), t('overview.backlog')],
    sinks.map((s) => h('tr', { 'data-mqtt': s.id },
      h('td', { translate: 'no' }, s.id),
      h('td', { translate: 'no' }, s.broker || s.url || ''),
      h('td', { 'data-k': 'connected', class: s.connected ? '' : 'err-text' }, s.connected ? t('sync.isConnected') : t('sync.notConnected')),
      h('td', { 'data-k': 'session' }, s.session_present ? t('sync.sessionKept') : t('sync.sessionNew')),
      h('td', { 'data-k': 'in-flight' }, `${fmt().number(s.in_flight ?? 0, 0)} / ${fmt().number(s.max_in_flight ?? 1, 0)}`),
      h('td', { 'data-k': 'last-puback', title: fmtTime(s.last_puback) }, s.last_puback ? fmt().relative(s.last_puback, now) : '—'),
      h('td', { 'data-k': 'backlog' }, `${fmt().number(s.backlog_rows, 0)} (${fmtBytes(s.backlog_bytes)})`))),
    { id: 'mqtt-sinks' });
}
