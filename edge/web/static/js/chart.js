// A small SVG line chart for a point's local history (numbers; booleans as 0/1 steps). Axis
// labels come formatted by the caller (format.js), never by this file.
const NS = 'http://www.w3.org/2000/svg';

function el(tag, attrs) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}

// `ranges` ([min, max] per point, for bucketed history) draws the min–max band behind the line.
export function trendChart(points, { width = 1000, height = 220, fmtX = String, fmtY = String, ranges = null } = {}) {
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'trend', role: 'img' });
  const num = (v) => (typeof v === 'boolean' ? (v ? 1 : 0) : Number(v));
  const band = [];
  const data = [];
  points.forEach((p, i) => {
    if (p[1] === null || p[1] === undefined || !Number.isFinite(num(p[1]))) return;
    data.push([p[0], num(p[1])]);
    const r = ranges && ranges[i];
    if (r && Number.isFinite(num(r[0])) && Number.isFinite(num(r[1]))) band.push([p[0], num(r[0]), num(r[1])]);
  });
  svg.dataset.points = String(data.length);
  svg.dataset.band = String(band.length);
  if (data.length < 1) return svg;
  const pad = { l: 48, r: 8, t: 8, b: 22 };
  const x0 = data[0][0], x1 = Math.max(data[data.length - 1][0], x0 + 1);
  let y0 = Math.min(...data.map((p) => p[1]), ...band.map((b) => b[1]));
  let y1 = Math.max(...data.map((p) => p[1]), ...band.map((b) => b[2]));
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const sy = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    svg.append(el('line', { x1: pad.l, x2: width - pad.r, y1: sy(v), y2: sy(v), class: 'grid' }));
    const label = el('text', { x: pad.l - 4, y: sy(v) + 4, 'text-anchor': 'end', class: 'axis' });
    label.textContent = fmtY(v);
    svg.append(label);
  }
  for (const [x, anchor] of [[x0, 'start'], [x1, 'end']]) {
    const label = el('text', { x: sx(x), y: height - 6, 'text-anchor': anchor, class: 'axis' });
    label.textContent = fmtX(x);
    svg.append(label);
  }
  const xy = (x, y) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
  if (band.length > 1) {
    const upper = band.map((b, i) => `${i ? 'L' : 'M'}${xy(b[0], b[2])}`);
    const lower = band.slice().reverse().map((b) => `L${xy(b[0], b[1])}`);
    svg.append(el('path', { d: [...upper, ...lower, 'Z'].join(' '), class: 'band' }));
  }
  const d = data.map((p, i) => `${i ? 'L' : 'M'}${xy(p[0], p[1])}`).join(' ');
  svg.append(el('path', { d, class: 'line' }));
  return svg;
}

// Dry-run timeline: fired (red) and cleared (green) marks over the replayed period.
export function timeline(firings, from, to, { width = 1000, height = 60, fmtX = String } = {}) {
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'timeline', role: 'img' });
  const pad = 10;
  const sx = (x) => pad + ((x - from) / Math.max(1, to - from)) * (width - 2 * pad);
  svg.append(el('line', { x1: pad, x2: width - pad, y1: 24, y2: 24, class: 'axisline' }));
  for (const f of firings) {
    svg.append(el('rect', { x: sx(f.ts) - 2, y: f.kind === 'cleared' ? 26 : 8, width: 4, height: 14, class: `mark-${f.kind}` }));
  }
  for (const [x, anchor] of [[from, 'start'], [to, 'end']]) {
    const label = el('text', { x: sx(x), y: height - 4, 'text-anchor': anchor, class: 'axis' });
    label.textContent = fmtX(x);
    svg.append(label);
  }
  return svg;
}
