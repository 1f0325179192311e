// The UI's one formatting module: every date, number, unit and duration a page shows goes
// through here, so both languages read the same way on every page. Pure functions of a context
// ({lang, timeZone, t}); no DOM, so node runs its unit tests as they are.

const UNIT_DECIMALS = {
  W: 0, kW: 2, MW: 3, Wh: 0, kWh: 2, MWh: 3, var: 0, kvar: 2, VA: 0, kVA: 2,
  V: 1, kV: 2, A: 2, mA: 0, Hz: 2, '°C': 1, '°F': 1, K: 1, '%': 1, '%RH': 1,
  'm³': 3, 'm³/h': 2, 'L': 1, 'L/min': 1, Pa: 0, kPa: 1, hPa: 1, bar: 2,
  mmHg: 0, bpm: 0, kg: 1, g: 0, fps: 1, s: 1, ms: 0, dB: 1, dBm: 0, ppm: 0, lx: 0,
};

// Decimals a point's numbers are shown with: the profile's `precision:` or `decimals:`, else
// what its unit usually needs, else by type (an integer has none).
export function decimalsFor(point) {
  if (!point) return null;
  for (const k of ['precision', 'decimals']) {
    if (Number.isInteger(point[k]) && point[k] >= 0 && point[k] <= 10) return point[k];
  }
  if (point.type === 'int') return 0;
  if (point.unit && UNIT_DECIMALS[point.unit] !== undefined) return UNIT_DECIMALS[point.unit];
  return null;
}

// Without a declared precision: three significant digits after the point at most, fewer for
// large numbers (22443.858 → 22444, 0.9512 → 0.951).
function autoDecimals(v) {
  const a = Math.abs(v);
  if (Number.isInteger(v) || a >= 1000) return 0;
  if (a >= 100) return 1;
  if (a >= 1) return 2;
  return 3;
}

// A duration in one unit, rounded: under 45 s in seconds, under 45 min in minutes, under 22 h
// in hours, else days (the thresholds people read relative times by).
function durationParts(seconds) {
  const s = Math.abs(seconds);
  if (s < 44.5) return ['s', Math.round(s)];
  if (s < 2670) return ['m', Math.max(1, Math.round(s / 60))];
  if (s < 79200) return ['h', Math.max(1, Math.round(s / 3600))];
  return ['d', Math.max(1, Math.round(s / 86400))];
}

export function createFormat({ lang = 'en', timeZone = 'UTC', t }) {
  const loc = lang === 'zh-CN' ? 'zh-CN' : 'en';
  const plural = new Intl.PluralRules(loc);
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    second: '2-digit', hourCycle: 'h23',
  });
  const zoneName = new Intl.DateTimeFormat('en', { timeZone, timeZoneName: 'shortOffset' });
  const numbers = new Map();
  const numberFormat = (d) => {
    if (!numbers.has(d)) numbers.set(d, new Intl.NumberFormat(loc, { minimumFractionDigits: d, maximumFractionDigits: d }));
    return numbers.get(d);
  };
  const fields = (ts) => {
    const out = {};
    for (const p of parts.formatToParts(new Date(ts * 1000))) out[p.type] = p.value;
    return out;
  };
  const missing = (v) => v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v));

  const f = {
    lang,
    timeZone,
    // ISO-like and the same in both languages: 2026-12-06 14:03:07 (the site's zone)
    dateTime(ts) {
      if (missing(ts)) return '—';
      const p = fields(ts);
      return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
    },
    date(ts) {
      if (missing(ts)) return '—';
      const p = fields(ts);
      return `${p.year}-${p.month}-${p.day}`;
    },
    clock(ts) {
      if (missing(ts)) return '—';
      const p = fields(ts);
      return `${p.hour}:${p.minute}:${p.second}`;
    },
    // The site zone's offset at `ts`, e.g. "UTC+8" (for a footer or a tooltip).
    zone(ts) {
      const z = zoneName.formatToParts(new Date((ts ?? Date.now() / 1000) * 1000)).find((p) => p.type === 'timeZoneName');
      return z ? z.value.replace(/^GMT/, 'UTC') || 'UTC' : timeZone;
    },
    // A plain length of time: "3 minutes" / "3 分钟".
    duration(seconds) {
      if (missing(seconds)) return '—';
      const [unit, n] = durationParts(seconds);
      return t(`dur.${unit}.${plural.select(n)}`, { n });
    },
    // Time from now to `ts`, past or future: "3 minutes ago" / "in 8 days", "3 分钟前" / "8 天后".
    relative(ts, now = Date.now() / 1000) {
      if (missing(ts)) return '—';
      return f.fromNow(ts - now);
    },
    // The same from a signed number of seconds (negative: past).
    fromNow(delta) {
      if (missing(delta)) return '—';
      if (Math.abs(delta) < 1) return t('rel.now');
      return t(delta < 0 ? 'rel.ago' : 'rel.in', { d: f.duration(delta) });
    },
    number(v, decimals) {
      if (missing(v)) return '—';
      if (typeof v !== 'number') return String(v);
      const d = Number.isInteger(decimals) ? decimals : autoDecimals(v);
      const out = numberFormat(d).format(v);
      return out === '-0' || /^-0[.,]0+$/.test(out) ? out.slice(1) : out;
    },
    // A number without grouping, for a value a technician copies into a form.
    plain(v, decimals) {
      if (missing(v)) return '—';
      const d = Number.isInteger(decimals) ? decimals : autoDecimals(v);
      return String(Number(v.toFixed(d)));
    },
    // A point's value: rounded to the point's precision; booleans and strings in words.
    value(v, point) {
      if (v === null || v === undefined) return '—';
      if (typeof v === 'boolean') return v ? t('value.true') : t('value.false');
      if (typeof v === 'number') return f.number(v, decimalsFor(point));
      if (typeof v === 'object') return JSON.stringify(v);
      return String(v);
    },
    // The value and its unit: "22,444 W", "21.5 °C", "55.2%".
    quantity(v, point) {
      const s = f.value(v, point);
      const unit = point && point.unit;
      if (!unit || s === '—') return s;
      return unit === '%' ? `${s}%` : `${s} ${unit}`;
    },
    // A share (0..1) as a percentage: 0.99512 → "99.5%"; one decimal, two under 1 point short
    // of whole, so 99.95% does not read as 100.0%.
    share(v, decimals) {
      if (missing(v)) return '—';
      const pct = v * 100;
      const d = Number.isInteger(decimals) ? decimals : (pct < 100 && pct >= 99 ? 2 : 1);
      return `${f.number(pct, d)}%`;
    },
    bytes(n) {
      if (missing(n)) return '—';
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      let x = n;
      while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
      return `${f.number(x, i ? 1 : 0)} ${units[i]}`;
    },
    // A count with its noun in the right form: count(1, 'unit.device') → "1 device".
    count(n, key) {
      return t(`${key}.${plural.select(n)}`, { n: f.number(n, 0) });
    },
  };
  return f;
}
