// One device: live values over SSE (rounded to each point's precision), a trend of the local
// history, writes with confirmation, a Modbus device's register map, and commissioning
// test-reads (a point, or a raw Modbus register range in every word order, starting from the
// selected point's own table and address).
import { api, badge, can, dialog, errorBox, fmt, fmtAge, fmtClock, fmtTime, fmtValue, h, problemText, t, table } from '../core.js';
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
  let selected = defaultTrendPoint(info.points);
  let history = [];
  let ranges = null; // [min, max] per reading when the history is bucketed
  let resolution = 'raw';
  let range = '1h';

  view.append(h('div', {}, h('p', {}, h('a', { href: '/devices' }, '← ' + t('nav.devices'))),
    h('h1', {}, dev.id, ' ', badge(dev.health.state === 'online' ? 'ok' : 'warn', t('state.' + dev.health.state))),
    dev.name ? h('p', { class: 'sub' }, dev.name) : null,
    dev.last_error ? h('p', { class: 'err-text' }, dev.last_error) : null));

  const regs = dev.driver === 'modbus'
    ? await api('GET', `/api/v1/commission/registers/${encodeURIComponent(deviceId)}`).catch(() => null) : null;
  const regOf = new Map(((regs && regs.points) || []).map((r) => [r.point, r]));
  const rows = info.points.map((p) => {
    const value = h('td', { class: 'value', 'data-point': p.id }, fmtValue(p.value, p));
    const quality = h('td', {}, p.quality ? badge(QCLS[p.quality], t('quality.' + p.quality)) : '—');
    const age = h('td', { class: 'age' }, '—');
    cells.set(p.id, { value, quality, age });
    const writeBtn = p.writable && can('write')
      ? h('button', { class: 'secondary small', 'data-write': p.id, onclick: (ev) => { ev.stopPropagation(); writePoint(p); } }, t('device.write'))
      : null;
    const reg = regOf.get(p.id);
    return h('tr', { 'data-row': p.id, class: 'clickable', onclick: () => select(p.id) },
      h('td', {}, p.name, p.privacy !== 'public' ? h('span', { class: 'sub' }, ` (${t('privacy.' + p.privacy)})`) : null),
      value, h('td', {}, p.unit || ''), quality, age,
      regs ? h('td', { class: 'register', 'data-register': p.id }, reg ? registerText(reg) : '—') : null,
      h('td', {}, writeBtn));
  });
  const heads = [t('device.point'), t('device.value'), t('device.unit'), t('device.quality'), t('device.age'), ...(regs ? [t('device.register')] : []), ''];
  view.append(h('section', { class: 'card' }, h('h2', {}, t('device.points')),
    table(heads, rows, { class: 'points' })));

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
    // the unit once, and not when the name already says it ("fps" of fps)
    const label = p && p.unit && !p.name.toLowerCase().includes(p.unit.toLowerCase()) ? `${p.name} (${p.unit})` : p && p.name;
    trendTitle.textContent = p ? t('device.trend', { point: label, range: t('device.range.' + range) }) : t('device.trendNone');
    trendBox.replaceChildren(trendChart(history, { fmtX: range === '1h' ? fmtClock : fmtTime, fmtY: (v) => fmt().number(v), ranges }));
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
    // the last write's answer goes once this one is typed, or refused by the browser (empty)
    const clear = () => writeResult.replaceChildren();
    input.addEventListener('input', clear);
    input.addEventListener('invalid', clear);
    const values = await dialog(t('device.writeTitle', { point: p.id }),
      h('div', {}, h('p', {}, t('device.writeWarn')), h('label', {}, t('device.newValue'), input)), t('device.writeConfirm'));
    if (!values) return;
    let value = values.value;
    if (p.type === 'bool') value = value === 'true';
    else if (p.type === 'int' || p.type === 'float') {
      const refused = numberRefused(value, p);
      if (refused) {
        writeResult.replaceChildren(h('div', { class: 'error', role: 'status', 'data-k': 'write-refused' }, refused));
        return;
      }
      value = Number(value.trim());
    }
    const res = await api('POST', `/api/v1/points/${encodeURIComponent(p.id)}/write`, { value }, { allowError: true });
    const msg = res.ok ? t('device.writeOk', { point: p.id, value: fmtValue(res.data.value, p) })
      : res.data && res.data.status && typeof res.data.status === 'string'
        ? t('device.writeFailed', { status: t('command.' + res.data.status), reason: res.data.reason || '' })
        : problemText(res.data, res.status);
    writeResult.replaceChildren(h('div', { class: res.ok ? 'ok-box' : 'error', role: 'status' }, msg));
  }
  const writeResult = h('div', { id: 'write-result' });
  view.append(writeResult);

  // Commissioning
  if (can('write')) view.append(commissioning(dev, info.points, regOf, () => selected));

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
      c.value.textContent = fmtValue(r.value, p);
      c.value.classList.remove('flash'); void c.value.offsetWidth; c.value.classList.add('flash');
      c.quality.replaceChildren(badge(QCLS[r.quality], t('quality.' + r.quality)));
      if (r.point === selected && resolution === 'raw') { history.push([r.ts, r.value, r.quality]); if (history.length > 6000) history.shift(); drawTrend(); }
    }
    tickAges();
  });
  if (selected) await select(selected); else drawTrend();
  return () => { es.close(); clearInterval(ageTimer); };
}

// The point a trend opens with: the most telling number. A constant code (fault_code = 0) or a
// command flag says little; a measured value with a unit says most.
export function defaultTrendPoint(points) {
  const score = (p) => {
    if (p.type === 'str') return -Infinity;
    let s = p.type === 'float' ? 3 : p.type === 'int' ? 1 : 0;
    if (p.unit) s += 2;
    if (/(fault|error|code|status|alarm|_cmd$|command)/i.test(p.name)) s -= 4;
    if (typeof p.value === 'number' && p.value !== 0) s += 1;
    if (p.writable) s -= 1;
    if (p.redacted) s -= 5;
    return s;
  };
  let best = null;
  for (const p of points) if (score(p) > -Infinity && (best === null || score(p) > score(best))) best = p;
  return best ? best.id : null;
}

// Why a number typed for an int or float point is not sent, or null when it may be: a finite
// decimal (12.5, -3, 1e3), whole for an int point; hex, commas and units are refused rather than
// read some other way ("0x10" is not 16 here, "1,5" not 15), and a value past what JSON carries
// exactly (1e400, an int beyond 2^53) rather than sent as something else.
export function numberRefused(text, p) {
  const s = String(text).trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return t('device.writeNotDecimal', { value: s });
  const n = Number(s);
  if (!Number.isFinite(n)) return t('device.writeTooLarge', { value: s });
  if (p.type === 'int') {
    if (!Number.isInteger(n)) return t('device.writeNotWhole', { value: s, point: p.id });
    if (!Number.isSafeInteger(n)) return t('device.writeTooLarge', { value: s });
  }
  return null;
}

const hex = (n) => '0x' + Number(n).toString(16).toUpperCase().padStart(4, '0');

// "holding 0x2006 (8198) · float32 · CDAB": how the datasheet and the decimal tools both write it.
function registerText(r) {
  return [`${t('modbus.' + r.table)} ${hex(r.address)} (${r.address})`, r.type + (r.bit !== null && r.bit !== undefined ? ` bit ${r.bit}` : ''),
    r.order ? t('modbus.orderIs', { order: r.order }) : null].filter(Boolean).join(' · ');
}

// An address as typed: decimal, or hex with 0x as datasheets write it.
export function parseAddress(text) {
  const s = String(text).trim();
  if (/^0x[0-9a-f]{1,4}$/i.test(s)) return parseInt(s.slice(2), 16);
  if (/^[0-9]{1,5}$/.test(s) && Number(s) <= 65535) return Number(s);
  return null;
}

function commissioning(dev, pts, regOf, selectedPoint) {
  const out = h('div', { id: 'commission-result' });
  const pointSel = h('select', { id: 'commission-point' }, pts.map((p) => h('option', { value: p.id }, p.name)));
  if (selectedPoint()) pointSel.value = selectedPoint();
  const readBtn = h('button', { class: 'primary', id: 'commission-read', type: 'button', onclick: async () => {
    out.replaceChildren(h('p', { class: 'loading' }, t('common.loading')));
    try {
      const r = await api('POST', '/api/v1/commission/read', { point: pointSel.value });
      out.replaceChildren(h('dl', { class: 'kv' },
        h('dt', {}, t('device.value')), h('dd', { 'data-k': 'commission-value' }, fmtValue(r.value, pts.find((p) => p.id === r.point))),
        h('dt', {}, t('device.quality')), h('dd', {}, t('quality.' + r.quality)),
        h('dt', {}, t('commission.at')), h('dd', {}, fmtTime(r.ts)),
        h('dt', {}, t('commission.source')), h('dd', { 'data-k': 'commission-source', 'data-source': r.source },
          r.source === 'device' ? t('commission.src.device', { ms: Math.round(r.duration_ms ?? 0) }) : t('commission.src.last_poll'))));
    } catch (err) { out.replaceChildren(errorBox(err)); }
  } }, t('commission.read'));
  const card = h('section', { class: 'card' }, h('h2', {}, t('commission.title')),
    h('div', { class: 'row' }, h('label', {}, t('device.point'), pointSel), readBtn), out);
  if (dev.driver === 'modbus') {
    const probe = registerProbe(dev);
    card.append(probe.box);
    // the raw read starts from the chosen point's own table and address
    const follow = () => { const r = regOf.get(pointSel.value); if (r) probe.setFrom(r); };
    pointSel.addEventListener('change', follow);
    follow();
  }
  return card;
}

const REG_TYPES = ['float32', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float64', 'string'];

function registerProbe(dev) {
  const tableSel = h('select', { name: 'table' }, ['holding', 'input', 'coil', 'discrete'].map((x) => h('option', { value: x }, t('modbus.' + x))));
  const addr = h('input', { name: 'address', type: 'text', inputmode: 'text', value: '0x0000', autocomplete: 'off', spellcheck: 'false', title: t('modbus.addressHint') });
  const addrNote = h('span', { class: 'sub', id: 'probe-address-dec' });
  const count = h('input', { name: 'count', type: 'number', min: 1, max: 125, value: 2 });
  const dtype = h('select', { name: 'type' }, REG_TYPES.map((x) => h('option', { value: x }, x)));
  const out = h('div', { id: 'probe-result' });
  const showDecimal = () => {
    const n = parseAddress(addr.value);
    addrNote.textContent = n === null ? t('modbus.addressBad') : `= ${n} (${hex(n)})`;
    addr.setAttribute('aria-invalid', String(n === null));
  };
  addr.addEventListener('input', showDecimal);
  showDecimal();
  const btn = h('button', { class: 'primary', type: 'button', onclick: async () => {
    const address = parseAddress(addr.value);
    if (address === null) { out.replaceChildren(h('div', { class: 'error', role: 'alert' }, t('modbus.addressBad'))); return; }
    out.replaceChildren(h('p', { class: 'loading' }, t('common.loading')));
    const res = await api('POST', '/api/v1/commission/read',
      { device: dev.id, table: tableSel.value, address, count: Number(count.value), type: dtype.value }, { allowError: true });
    if (res.status === 501) { out.replaceChildren(h('div', { class: 'error' }, t('modbus.noProbe'))); return; }
    if (!res.ok) {
      const code = res.data && res.data.exception_code;
      out.replaceChildren(h('div', { class: 'error', role: 'alert', 'data-exception': code ?? '' },
        code ? t('modbus.exceptionIs', { code, what: t(`modbus.exc.${code}`) === `modbus.exc.${code}` ? t('modbus.exc.other') : t(`modbus.exc.${code}`) })
          : problemText(res.data, res.status)));
      return;
    }
    out.replaceChildren(probeTable(res.data));
  } }, t('modbus.read'));
  const box = h('div', { class: 'probe' }, h('h3', {}, t('modbus.title')),
    h('div', { class: 'row' }, h('label', {}, t('modbus.table'), tableSel), h('label', {}, t('modbus.address'), addr, addrNote), h('label', {}, t('modbus.count'), count), h('label', {}, t('modbus.type'), dtype), btn), out);
  function setFrom(r) {
    tableSel.value = r.table;
    addr.value = hex(r.address);
    count.value = String(Math.max(1, r.count || 1));
    if (REG_TYPES.includes(r.type)) dtype.value = r.type;
    showDecimal();
  }
  return { box, setFrom };
}

// The probe answers raw registers and, per value offset, the decoding in each word order
// (ABCD, CDAB, BADC, DCBA), or bits for coils and discrete inputs.
function probeTable(data) {
  if (data.bits) {
    return table([t('modbus.address'), t('device.value')],
      data.bits.map((b, i) => h('tr', {}, h('td', {}, `${hex(data.address + i)} (${data.address + i})`), h('td', {}, b ? '1' : '0'))), { class: 'probe-table' });
  }
  const regs = data.registers || [];
  const raw = table([t('modbus.address'), t('modbus.hex'), t('device.value')],
    regs.map((r, i) => h('tr', {}, h('td', {}, `${hex(data.address + i)} (${data.address + i})`), h('td', {}, h('code', {}, hex(r))), h('td', {}, String(r)))));
  const rows = data.decoded || [];
  const orders = rows.length ? Object.keys(rows[0].orders) : [];
  // every decoding exactly as the device gives it: a wrong word order shows as a wild number
  const decoded = table([t('modbus.address'), ...orders],
    rows.map((row) => h('tr', {}, h('td', {}, `${hex(data.address + row.offset)} (${data.address + row.offset})`),
      orders.map((o) => h('td', { 'data-order': o }, typeof row.orders[o] === 'number' ? fmt().plain(row.orders[o], Number.isInteger(row.orders[o]) ? 0 : 4) : fmtValue(row.orders[o]))))),
    { class: 'probe-table' });
  return h('div', {}, h('p', {}, t('modbus.raw'), ' ', data.target || ''), raw, h('p', {}, t('modbus.decoded', { type: data.type })), decoded);
}
