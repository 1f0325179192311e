// Alerts and events: filter by kind, severity, period and acknowledgement; each event as one line
// people read ("North gate: vehicle entering 沪A23522"), its raw payload one click away; repeats
// of the same line grouped; older events a page at a time (the server pages by seq). Only alerts
// are acknowledged. A camera's `snapshot` event shows a thumbnail of its blob that opens the full
// image in a new tab.
import { api, ApiError, badge, can, dialog, errorBox, fmt, fmtTime, h, problemText, state, t, table } from '../core.js';

const SEV = { critical: 'bad', warning: 'warn', info: 'info', debug: 'muted' };
const PAGE = 100;
const MASK = '■■■■';
// Fields that name a person: masked in the one-line view (the raw payload, one click away,
// shows what the reader's role may see).
const PERSON = new Set(['resident', 'user', 'subject']);
// Fields the one-line view leaves out: bookkeeping, not what happened.
const QUIET = new Set(['privacy', 'sha256', 'blobs', 'redaction', 'faces', 'duration_ms', 'totals']);
// Units of the payload fields the shipped kinds carry, for their numbers.
const FIELD_UNIT = {
  systolic_mmhg: 'mmHg', diastolic_mmhg: 'mmHg', mean_arterial_mmhg: 'mmHg', pulse_bpm: 'bpm', weight_kg: 'kg',
  temperature_c: '°C', spo2_pct: '%', glucose_mmol_l: 'mmol/L', glucose_mg_dl: 'mg/dL', height_m: 'm',
  hba1c_pct: '%', carbohydrate_g: 'g', exercise_s: 's', time_offset_min: 'min',
  step_s: 's', paused_s: 's', duration_s: 's', width: 'px', height: 'px', retention_s: 's',
};

const has = (key) => state.cat[key] !== undefined;

export function kindLabel(kind) {
  return has('event.kind.' + kind) ? t('event.kind.' + kind) : kind;
}

function fieldLabel(name) {
  return has('event.field.' + name) ? t('event.field.' + name) : name;
}

// The server replaced the payload of an event above the reader's class by this marker.
function withheld(p) {
  return p && p.redacted === true && !('blob' in p) && Object.keys(p).every((k) => k === 'privacy' || k === 'redacted');
}

function fieldValue(name, v) {
  const f = fmt();
  if (v === null || v === undefined || v === '') return null;
  if (PERSON.has(name)) return MASK;
  if (name.endsWith('_ts') || name === 'started' || (name === 'measured_at' && typeof v === 'number')) return f.dateTime(v);
  if (['retention_s', 'paused_s', 'duration_s'].includes(name) && typeof v === 'number') return f.duration(v);
  if (name === 'bytes' && typeof v === 'number') return f.bytes(v);
  if (name === 'state' || name === 'previous') return has('state.' + v) ? t('state.' + v) : has('alertState.' + v) ? t('alertState.' + v) : String(v);
  // enumerations the decoders name in English (a meal, a body site) read in the page's language
  if (typeof v === 'string' && has('event.value.' + v)) return t('event.value.' + v);
  if (typeof v === 'object') return Array.isArray(v) ? f.count(v.length, 'unit.item') : JSON.stringify(v);
  if (typeof v === 'number') return f.quantity(v, { unit: FIELD_UNIT[name] });
  return f.value(v);
}

// "label value" for each field worth reading, in the payload's order.
function fields(p, skip = []) {
  const out = [];
  for (const [k, v] of Object.entries(p)) {
    if (QUIET.has(k) || skip.includes(k)) continue;
    const shown = fieldValue(k, v);
    if (shown !== null) out.push(`${fieldLabel(k)} ${shown}`);
  }
  return out;
}

// One line per kind; a kind without its own falls back to its label and labelled fields.
const LINES = {
  alert: (p) => [`${p.name || p.rule || ''} ${t('alertState.' + (p.state || 'fired'))}${p.message ? ': ' + p.message : ''}`],
  vehicle_passage: (p, where) => [t(p.direction === 'out' ? 'event.line.vehicleOut' : 'event.line.vehicleIn', { where, plate: p.plate ?? MASK })],
  blood_pressure: (p) => [
    t('event.line.bloodPressure', { sys: fmt().number(p.systolic_mmhg, 0), dia: fmt().number(p.diastolic_mmhg, 0) }),
    ...fields(p, ['systolic_mmhg', 'diastolic_mmhg'])],
  spo2: (p) => [t('event.line.spo2', { spo2: fmt().number(p.spo2_pct, 0) }), ...fields(p, ['spo2_pct'])],
  glucose: (p) => [p.glucose_mmol_l !== undefined
    ? t('event.line.glucose', { value: fmt().number(p.glucose_mmol_l, 1), unit: 'mmol/L' })
    : t('event.line.glucose', { value: fmt().number(p.glucose_mg_dl, 0), unit: 'mg/dL' }), ...fields(p, ['glucose_mmol_l', 'glucose_mg_dl'])],
  weight: (p) => [t('event.line.weight', { value: fmt().number(p.weight_kg, 1) }), ...fields(p, ['weight_kg'])],
  body_temperature: (p) => [t('event.line.bodyTemperature', { value: fmt().number(p.temperature_c, 1) }), ...fields(p, ['temperature_c'])],
  command: (p) => [t('event.line.command', { point: p.point, value: fmt().value(p.value), status: has('command.' + p.status) ? t('command.' + p.status) : p.status }),
    ...(p.reason ? [p.reason] : []), ...(p.by ? [t('event.line.by', { by: String(p.by).replace(/^user:/, '') })] : [])],
  device_state: (p) => [t('event.line.deviceState', { from: fieldValue('state', p.previous) ?? '—', to: fieldValue('state', p.state) ?? '—' }), ...(p.reason ? [p.reason] : [])],
  driver_restart: (p) => [t('event.line.driverRestart', { n: p.restarts ?? 1 }), ...(p.error ? [p.error] : [])],
  gateway_started: (p) => [t('event.line.gatewayStarted', { n: p.devices ?? 0 })],
};

// kinds whose line names what happened on its own ("North gate: vehicle entering ...")
const OWN_LABEL = new Set(['vehicle_passage', 'blood_pressure', 'spo2', 'glucose', 'weight', 'body_temperature']);

export function describe(e, deviceName) {
  const p = e.payload || {};
  const label = kindLabel(e.kind);
  if (withheld(p)) return `${label} · ${t('event.redacted', { privacy: t('privacy.' + p.privacy) })}`;
  const where = deviceName(e.source);
  const line = LINES[e.kind];
  if (line) return (OWN_LABEL.has(e.kind) ? line(p, where) : [label, ...line(p, where)]).filter(Boolean).join(' · ');
  // an event a rule emits carries its message; other kinds their labelled fields
  if (typeof p.message === 'string' && p.message) return `${label} · ${p.message}`;
  return [label, ...fields(p)].join(' · ');
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

// An alert that fired can be acknowledged; everything else is a record of what happened.
const ackable = (e) => e.kind === 'alert' && (e.payload || {}).state !== 'cleared' && !withheld(e.payload);

// Consecutive events that read the same (kind, source, severity, line) become one row with a
// count; alerts stay one row each, since each is acknowledged on its own.
export function groupRepeats(events, lineOf) {
  const groups = [];
  for (const e of events) {
    const line = e.kind === 'snapshot' ? null : lineOf(e);
    const last = groups[groups.length - 1];
    if (last && line !== null && !ackable(e) && !ackable(last.first) && last.line === line
        && last.first.kind === e.kind && last.first.source === e.source && last.first.severity === e.severity) {
      last.events.push(e);
      continue;
    }
    groups.push({ first: e, line, events: [e] });
  }
  return groups;
}

export async function render(view, _params, query) {
  view.append(h('h1', {}, t('alerts.title')));
  const names = new Map();
  try {
    for (const d of (await api('GET', '/api/v1/devices')).devices) names.set(d.id, d.name || d.id);
  } catch (err) { /* names are a nicety: ids do */ }
  const deviceName = (id) => names.get(id) || id;
  const lineOf = (e) => describe(e, deviceName);

  const kinds = new Set(Object.keys(state.cat).filter((k) => k.startsWith('event.kind.')).map((k) => k.slice('event.kind.'.length)));
  const wanted = query.get('kind') ?? 'alert';
  if (wanted) kinds.add(wanted);
  const kind = h('select', { id: 'f-kind' });
  function fillKinds() {
    const chosen = kind.value || wanted;
    kind.replaceChildren(h('option', { value: '' }, t('alerts.allKinds')),
      ...[...kinds].sort((a, b) => kindLabel(a).localeCompare(kindLabel(b), state.lang)).map((k) => h('option', { value: k }, kindLabel(k))));
    kind.value = chosen;
  }
  fillKinds();
  const severity = h('select', { id: 'f-severity' }, h('option', { value: '' }, t('alerts.allSeverities')),
    ['critical', 'warning', 'info', 'debug'].map((s) => h('option', { value: s }, t('severity.' + s))));
  const period = h('select', { id: 'f-period' }, [[3600, 'alerts.1h'], [86400, 'alerts.24h'], [604800, 'alerts.7d']].map(([v, k]) => h('option', { value: v }, t(k))));
  period.value = '86400';
  const unacked = h('input', { type: 'checkbox', id: 'f-unacked' });
  const list = h('div', { id: 'events' });
  const more = h('button', { type: 'button', class: 'secondary', id: 'events-more', hidden: true, onclick: () => load(true).catch(showError) }, t('alerts.more'));
  const summary = h('p', { class: 'hint', id: 'events-count' });
  for (const c of [kind, severity, period, unacked]) c.addEventListener('change', () => load(false).catch(showError));
  view.append(h('div', { class: 'row filters' },
    h('label', {}, t('alerts.kind'), kind), h('label', {}, t('alerts.severity'), severity),
    h('label', {}, t('alerts.period'), period), h('label', { class: 'check' }, unacked, t('alerts.unacked'))), summary, list, more);

  let shown = [];
  function showError(err) { list.prepend(errorBox(err)); }

  function row(g) {
    const e = g.first;
    const p = e.payload || {};
    const n = g.events.length;
    const oldest = g.events[n - 1];
    const when = h('td', { class: 'when' }, fmtTime(e.ts),
      n > 1 ? h('div', { class: 'sub' }, t('alerts.repeatSince', { time: fmt().clock(oldest.ts) })) : null);
    const line = e.kind === 'snapshot' ? snapshot(e) : h('span', { class: 'line' }, g.line);
    const raw = withheld(p) ? null : h('details', { class: 'raw' }, h('summary', {}, t('alerts.raw')),
      h('pre', {}, JSON.stringify(p, null, 2)));
    let ackCell = '';
    // who acknowledged is shown only when the server sends it: withheld from this caller
    // (redacted), its user forgotten (erased), or sealed where no key here opens it
    if (e.ack && typeof e.ack.user !== 'string') ackCell = h('span', { class: 'acked' }, t('alerts.acked'));
    else if (e.ack) ackCell = h('span', { class: 'acked', title: e.ack.comment }, t('alerts.ackedBy', { user: e.ack.user }), e.ack.comment ? h('div', { class: 'sub' }, e.ack.comment) : null);
    else if (ackable(e) && can('write')) ackCell = h('button', { class: 'secondary small', 'data-ack': e.seq, onclick: () => ack(e) }, t('alerts.ack'));
    return h('tr', { 'data-seq': e.seq, 'data-kind': e.kind, 'data-source': e.source, 'data-count': n },
      when,
      h('td', { class: 'source' }, deviceName(e.source), deviceName(e.source) !== e.source ? h('div', { class: 'sub' }, e.source) : null),
      h('td', { class: 'sev' }, badge(SEV[e.severity] || 'muted', t('severity.' + e.severity)), n > 1 ? h('span', { class: 'badge badge-muted repeat', 'data-repeat': n }, `×${n}`) : null),
      h('td', { class: 'desc' }, line, raw),
      h('td', { class: 'ack' }, ackCell));
  }

  function draw() {
    const groups = groupRepeats(shown, lineOf);
    list.replaceChildren(groups.length
      ? table([t('alerts.time'), t('alerts.source'), t('alerts.severity'), t('alerts.detail'), t('alerts.ackCol')], groups.map(row), { class: 'events' })
      : h('p', { class: 'hint', id: 'no-events' }, t('alerts.none')));
    summary.textContent = shown.length ? t('alerts.count', { n: fmt().number(shown.length, 0), rows: fmt().number(groups.length, 0) }) : '';
    list.dataset.loaded = String(Date.now());
  }

  async function load(older) {
    const q = new URLSearchParams({ limit: String(PAGE), since: String(Date.now() / 1000 - Number(period.value)) });
    if (kind.value) q.set('kind', kind.value);
    if (severity.value) q.set('severity', severity.value);
    if (unacked.checked) q.set('unacked', '1');
    if (older && shown.length) q.set('before', String(shown[shown.length - 1].seq));
    const { events } = await api('GET', '/api/v1/events?' + q);
    shown = older ? shown.concat(events) : events;
    let added = false;
    for (const e of events) if (!kinds.has(e.kind)) { kinds.add(e.kind); added = true; }
    if (added) fillKinds();
    more.hidden = events.length < PAGE;
    draw();
  }

  async function ack(e) {
    const v = await dialog(t('alerts.ackTitle'), h('label', {}, t('alerts.comment'), h('textarea', { name: 'comment', id: 'ack-comment', rows: 3 })), t('alerts.ack'));
    if (!v) return;
    try {
      await api('POST', `/api/v1/alerts/${e.seq}/ack`, { comment: v.comment || '' });
      await load(false);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409 && err.body.ack)) { showError(err); return; }
      // acknowledged meanwhile from elsewhere: the row shows that first acknowledgement, which
      // stays, and the message says who and when (in the site's zone, as the table does)
      e.ack = err.body.ack;
      draw();
      const body = { ...err.body, args: { ...(err.body.args || {}), at: fmtTime(e.ack.ts) } };
      list.prepend(h('div', { class: 'error', role: 'alert', id: 'ack-refused' }, problemText(body, err.status)));
    }
  }

  await load(false);
  // New alerts appear without reloading: the live stream carries events too. The first page is
  // reloaded; the older pages a reader opened stay as they are below it.
  const es = new EventSource('/api/v1/live?points=-');
  let pending = null;
  es.addEventListener('records', (ev) => {
    if (!JSON.parse(ev.data).some((r) => r.type === 'event')) return;
    clearTimeout(pending);
    pending = setTimeout(() => {
      const since = shown.length ? shown[0].seq : 0;
      const q = new URLSearchParams({ limit: String(PAGE), since: String(Date.now() / 1000 - Number(period.value)) });
      if (kind.value) q.set('kind', kind.value);
      if (severity.value) q.set('severity', severity.value);
      if (unacked.checked) q.set('unacked', '1');
      api('GET', '/api/v1/events?' + q, undefined, { background: true }).then(({ events }) => {
        const fresh = events.filter((e) => e.seq > since);
        if (!fresh.length) return;
        shown = fresh.concat(shown);
        draw();
      }).catch(() => {});
    }, 500);
  });
  return () => { es.close(); clearTimeout(pending); };
}
