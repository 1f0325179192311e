// One device: live values over SSE, a trend of the local history, writes with confirmation,
// and commissioning test-reads (a point, or a raw Modbus register range in every word order).
import { api, badge, can, dialog, errorBox, fmtAge, fmtClock, fmtTime, fmtValue, h, t, table } from '../core.js';
import { trendChart } from '../chart.js';

const QCLS = { good: 'ok', bad: 'bad', stale: 'warn' };
// Trend ranges: the server answers raw readings when it can, else minute or hour buckets from the
// trend index (a limit that fits a day of minutes keeps 24 h at minute resolution).
const RANGES = { '1h': { seconds: 3600, limit: 5000 }, '24h': { seconds: 86400, limit: 1500 }, '7d': { seconds: 7 * 86400, limit: 1000 } };

export async function render(view, [deviceId]) {
  const info = await api('GET', `/api/v1/devices/${encodeURIComponent(deviceId)}/points`);
  const dev = info.device;
  const points = new Map(info.points.map((p) => [p.id, p]));
  const cells = new Map();
  let selected = (info.points.find((p) => p.type === 'float' || p.type === 'int') || info.points.find((p) => p.type === 'bool'))?.id || null;
  let history = [];
  let ranges = null; // [min, max] per reading when the history is bucketed
  let resolution = 'raw';
  let range = '1h';

  view.append(h('div', {}, h('p', {}, h('a', { href: '/devices' }, '← ' + t('nav.devices'))),
    h('h1', {}, dev.id, ' ', badge(dev.health.state === 'online' ? 'ok' : 'warn', t('state.' + dev.health.state))),
    dev.name ? h('p', { class: 'sub' }, dev.name) : null,
    dev.last_error ? h('p', { class: 'err-text' }, dev.last_error) : null));

  const rows = info.points.map((p) => {
    const value = h('td', { class: 'value', 'data-point': p.id }, fmtValue(p.value));
    const quality = h('td', {}, p.quality ? badge(QCLS[p.quality], t('quality.' + p.quality)) : '—');
    const age = h('td', { class: 'age' }, '—');
    cells.set(p.id, { value, quality, age });
    const writeBtn = p.writable && can('write')
      ? h('button', { class: 'secondary small', 'data-write': p.id, onclick: (ev) => { ev.stopPropagation(); writePoint(p); } }, t('device.write'))
      : null;
    return h('tr', { 'data-row': p.id, class: 'clickable', onclick: () => select(p.id) },
      h('td', {}, p.name, p.privacy !== 'public' ? h('span', { class: 'sub' }, ` (${t('privacy.' + p.privacy)})`) : null),
      value, h('td', {}, p.unit || ''), quality, age, h('td', {}, writeBtn));
  });
  view.append(h('section', { class: 'card' }, h('h2', {}, t('device.points')),
    table([t('device.point'), t('device.value'), t('device.unit'), t('device.quality'), t('device.age'), ''], rows, { class: 'points' })));

  const trendTitle = h('h2');
  const trendBox = h('div', { class: 'trend-box' });
  const trendNote = h('p', { class: 'hint', id: 'trend-resolution' });
  const rangeButtons = Object.keys(RANGES).map((key) => h('button', {
    type: 'button', class: 'small', 'data-range': key, 'aria-pressed': String(key === range),
    onclick: () => { range = key; for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b.dataset.range === key)); if (selected) select(selected); },
  }, t('device.range.' + key)));
  view.append(h('section', { class: 'card' }, trendTitle, h('div', { id: 'trend-range', role: 'group' }, rangeButtons), trendBox, trendNote));

  function drawTrend() {
    const p = points.get(selected);
    trendTitle.textContent = p ? t('device.trend', { point: p.name, unit: p.unit || '', range: t('device.range.' + range) }) : t('device.trendNone');
    trendBox.replaceChildren(trendChart(history, { fmtX: range === '1h' ? fmtClock : fmtTime, ranges }));
    trendNote.textContent = t('device.resolution.' + resolution);
    trendNote.dataset.resolution = resolution;
  }

  async function select(pid) {
    selected = pid;
    for (const tr of view.querySelectorAll('tr[data-row]')) tr.classList.toggle('selected', tr.dataset.row === pid);
    const { seconds, limit } = RANGES[range];
    const since = Date.now() / 1000 - seconds;
    const res = await api('GET', `/api/v1/history?point=${encodeURIComponent(pid)}&since=${since}&limit=${limit}`);
    if (pid !== selected) return; // another point was chosen meanwhile
    history = res.readings;
    ranges = res.ranges || null;
    resolution = res.resolution || 'raw';
    drawTrend();
  }

  async function writePoint(p) {
    const input = p.type === 'bool'
      ? h('select', { name: 'value', id: 'write-value' }, h('option', { value: 'true' }, t('value.true')), h('option', { value: 'false' }, t('value.false')))
      : h('input', { name: 'value', id: 'write-value', required: true });
    const values = await dialog(t('device.writeTitle', { point: p.id }),
      h('div', {}, h('p', {}, t('device.writeWarn')), h('label', {}, t('device.newValue'), input)), t('device.writeConfirm'));
    if (!values) return;
    let value = values.value;
    if (p.type === 'bool') value = value === 'true';
    else if (p.type !== 'str' && value.trim() !== '' && !Number.isNaN(Number(value))) value = Number(value);
    const res = await api('POST', `/api/v1/points/${encodeURIComponent(p.id)}/write`, { value }, { allowError: true });
    const msg = res.ok ? t('device.writeOk', { point: p.id, value: fmtValue(res.data.value) })
      : t('device.writeFailed', { status: res.data.status || res.status, reason: res.data.reason || res.data.detail || '' });
    writeResult.replaceChildren(h('div', { class: res.ok ? 'ok-box' : 'error', role: 'status' }, msg));
  }
  const writeResult = h('div', { id: 'write-result' });
  view.append(writeResult);

  // Commissioning
  if (can('write')) view.append(commissioning(dev, info.points));

  function tickAges() {
    const now = Date.now() / 1000;
    for (const [pid, c] of cells) {
      const p = points.get(pid);
      c.age.textContent = p.ts ? fmtAge(now - p.ts) : '—';
    }
  }
  tickAges();
  const ageTimer = setInterval(tickAges, 1000);

  const es = new EventSource(`/api/v1/live?device=${encodeURIComponent(deviceId)}&events=0`);
  es.addEventListener('records', (ev) => {
    for (const r of JSON.parse(ev.data)) {
      if (r.type !== 'reading') continue;
      const p = points.get(r.point);
      const c = cells.get(r.point);
      if (!p || !c) continue;
      p.value = r.value; p.ts = r.ts; p.quality = r.quality;
      c.value.textContent = fmtValue(r.value);
      c.value.classList.remove('flash'); void c.value.offsetWidth; c.value.classList.add('flash');
      c.quality.replaceChildren(badge(QCLS[r.quality], t('quality.' + r.quality)));
      if (r.point === selected && resolution === 'raw') { history.push([r.ts, r.value, r.quality]); if (history.length > 6000) history.shift(); drawTrend(); }
    }
    tickAges();
  });
  if (selected) await select(selected); else drawTrend();
  return () => { es.close(); clearInterval(ageTimer); };
}

function commissioning(dev, pts) {
  const out = h('div', { id: 'commission-result' });
  const pointSel = h('select', { id: 'commission-point' }, pts.map((p) => h('option', { value: p.id }, p.name)));
  const readBtn = h('button', { class: 'primary', id: 'commission-read', type: 'button', onclick: async () => {
    out.replaceChildren(h('p', { class: 'loading' }, t('common.loading')));
    try {
      const r = await api('POST', '/api/v1/commission/read', { point: pointSel.value });
      out.replaceChildren(h('dl', { class: 'kv' },
        h('dt', {}, t('device.value')), h('dd', { 'data-k': 'commission-value' }, fmtValue(r.value)),
        h('dt', {}, t('device.quality')), h('dd', {}, t('quality.' + r.quality)),
        h('dt', {}, t('commission.at')), h('dd', {}, fmtTime(r.ts)),
        h('dt', {}, t('commission.source')), h('dd', { 'data-k': 'commission-source', 'data-source': r.source },
          r.source === 'device' ? t('commission.src.device', { ms: Math.round(r.duration_ms ?? 0) }) : t('commission.src.last_poll'))));
    } catch (err) { out.replaceChildren(errorBox(err)); }
  } }, t('commission.read'));
  const card = h('section', { class: 'card' }, h('h2', {}, t('commission.title')),
    h('div', { class: 'row' }, h('label', {}, t('device.point'), pointSel), readBtn), out);
  if (dev.driver === 'modbus') card.append(registerProbe(dev));
  return card;
}

function registerProbe(dev) {
  const tableSel = h('select', { name: 'table' }, ['holding', 'input', 'coil', 'discrete'].map((x) => h('option', { value: x }, t('modbus.' + x))));
  const addr = h('input', { name: 'address', type: 'number', min: 0, max: 65535, value: 0 });
  const count = h('input', { name: 'count', type: 'number', min: 1, max: 125, value: 2 });
  const dtype = h('select', { name: 'type' }, ['float32', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float64', 'string'].map((x) => h('option', { value: x }, x)));
  const out = h('div', { id: 'probe-result' });
  const btn = h('button', { class: 'primary', type: 'button', onclick: async () => {
    out.replaceChildren(h('p', { class: 'loading' }, t('common.loading')));
    const res = await api('POST', '/api/v1/commission/read',
      { device: dev.id, table: tableSel.value, address: Number(addr.value), count: Number(count.value), type: dtype.value }, { allowError: true });
    if (res.status === 501) { out.replaceChildren(h('div', { class: 'error' }, t('modbus.noProbe'))); return; }
    if (!res.ok) { out.replaceChildren(h('div', { class: 'error' }, `${res.data.title}: ${res.data.detail || ''}`)); return; }
    out.replaceChildren(probeTable(res.data));
  } }, t('modbus.read'));
  return h('div', { class: 'probe' }, h('h3', {}, t('modbus.title')),
    h('div', { class: 'row' }, h('label', {}, t('modbus.table'), tableSel), h('label', {}, t('modbus.address'), addr), h('label', {}, t('modbus.count'), count), h('label', {}, t('modbus.type'), dtype), btn), out);
}

// The probe answers raw registers and, per value offset, the decoding in each word order
// (ABCD, CDAB, BADC, DCBA), or bits for coils and discrete inputs.
function probeTable(data) {
  if (data.bits) {
    return table([t('modbus.address'), t('device.value')],
      data.bits.map((b, i) => h('tr', {}, h('td', {}, String(data.address + i)), h('td', {}, b ? '1' : '0'))), { class: 'probe-table' });
  }
  const regs = data.registers || [];
  const raw = table([t('modbus.address'), t('modbus.hex'), t('device.value')],
    regs.map((r, i) => h('tr', {}, h('td', {}, String(data.address + i)), h('td', {}, h('code', {}, '0x' + r.toString(16).toUpperCase().padStart(4, '0'))), h('td', {}, String(r)))));
  const rows = data.decoded || [];
  const orders = rows.length ? Object.keys(rows[0].orders) : [];
  const decoded = table([t('modbus.address'), ...orders],
    rows.map((row) => h('tr', {}, h('td', {}, String(data.address + row.offset)), orders.map((o) => h('td', { 'data-order': o }, fmtValue(row.orders[o]))))),
    { class: 'probe-table' });
  return h('div', {}, h('p', {}, t('modbus.raw'), ' ', data.target || ''), raw, h('p', {}, t('modbus.decoded', { type: data.type })), decoded);
}
