// Operator KPIs (运营考核): the site's figures per day, the devices sorted by their worst figure,
// and an availability calendar (device × day), from GET /api/v1/kpi. A site without a `kpi:`
// section answers 404: the page then says how to turn the figures on, which is not an error.
import { api, errorBox, fmt, h, t, table } from '../core.js';

const NEAR = 0.05; // within 5 points below target: amber, not red

// YYYY-MM-DD `n` days before `day` (calendar arithmetic in UTC: days are labels, not instants).
function shift(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

export const share = (v) => fmt().share(v);

// Where a figure stands against its target: good, near (less than 5 points below), bad, none.
export function grade(value, target) {
  if (value === null || value === undefined) return 'none';
  if (target === null || target === undefined || value >= target) return 'good';
  return value >= target - NEAR ? 'near' : 'bad';
}

// Per device over the range: the lowest availability and completeness (with their day), the
// targets, and how many days were below one. `worst` is the lower of the two shortfalls.
export function deviceSummary(days) {
  const by = new Map();
  for (const day of days) {
    for (const d of day.devices || []) {
      const s = by.get(d.id) || { id: d.id, availability: null, availabilityDay: null, completeness: null, completenessDay: null, below: 0, targets: d.targets || {} };
      for (const k of ['availability', 'completeness']) {
        if (d[k] !== null && d[k] !== undefined && (s[k] === null || d[k] < s[k])) { s[k] = d[k]; s[`${k}Day`] = day.day; }
      }
      if ((d.below_target || []).length) s.below += 1;
      s.targets = d.targets || s.targets;
      by.set(d.id, s);
    }
  }
  for (const s of by.values()) {
    const gaps = ['availability', 'completeness']
      .filter((k) => s[k] !== null)
      .map((k) => s[k] - (s.targets[k] ?? 1));
    s.worst = gaps.length ? Math.min(...gaps) : null;
  }
  return [...by.values()];
}

const SORTS = {
  worst: (a, b) => (a.worst ?? Infinity) - (b.worst ?? Infinity) || a.id.localeCompare(b.id),
  availability: (a, b) => (a.availability ?? Infinity) - (b.availability ?? Infinity) || a.id.localeCompare(b.id),
  completeness: (a, b) => (a.completeness ?? Infinity) - (b.completeness ?? Infinity) || a.id.localeCompare(b.id),
  device: (a, b) => a.id.localeCompare(b.id),
};

function offBox() {
  return h('section', { class: 'card', id: 'kpi-off' },
    h('h2', {}, t('kpi.off.title')),
    h('p', {}, t('kpi.off.body')),
    h('pre', { translate: 'no' }, 'kpi:\n  availability: 99%\n  completeness: 98%\n  ack_within: {critical: 15m, warning: 4h}'),
    h('p', { class: 'hint' }, t('kpi.off.more')));
}

function siteTable(days, today) {
  const f = fmt();
  const rows = [...days].reverse().map((d) => {
    const a = d.alerts || {};
    const late = Object.values(a.not_acked_within_target || {}).reduce((x, y) => x + y, 0);
    const delivery = Object.entries(d.delivery || {});
    return h('tr', { 'data-day': d.day },
      h('td', { class: 'when' }, d.day, d.day === today ? h('div', { class: 'sub' }, t('kpi.today')) : null),
      h('td', { class: `figure g-${grade(d.site.availability, null)}`, 'data-k': 'availability' }, share(d.site.availability)),
      h('td', { 'data-k': 'completeness' }, share(d.site.completeness)),
      h('td', {}, d.gateway.down_s ? t('kpi.gatewayDown', { share: share(d.gateway.availability), d: f.duration(d.gateway.down_s) }) : share(d.gateway.availability)),
      h('td', { 'data-k': 'alerts' }, a.acknowledged
        ? t('kpi.alertsLine', { n: f.number(a.count ?? 0, 0), mean: f.duration(a.ack_mean_s), p90: f.duration(a.ack_p90_s) })
        : f.number(a.count ?? 0, 0),
        late ? h('div', { class: 'err-text' }, t('kpi.lateAcks', { n: f.number(late, 0) })) : null),
      h('td', { class: (d.rule_actions || {}).failed ? 'err-text' : '' },
        t('kpi.actionsLine', { ok: f.number((d.rule_actions || {}).executed ?? 0, 0), failed: f.number((d.rule_actions || {}).failed ?? 0, 0) })),
      h('td', {}, delivery.length
        ? delivery.map(([id, x]) => h('div', { translate: 'no' }, t('kpi.deliveryLine', { id, share: share(x.delivered_share), p95: f.duration(x.delay_p95_s) })))
        : '—'),
      h('td', { class: d.site.below_target ? 'err-text' : '', 'data-k': 'below' }, f.number(d.site.below_target ?? 0, 0)));
  });
  return table([t('kpi.day'), t('kpi.availability'), t('kpi.completeness'), t('kpi.gateway'), t('kpi.alerts'), t('kpi.actions'), t('kpi.delivery'), t('kpi.belowTarget')],
    rows, { id: 'kpi-days', class: 'kpi' });
}

function devicesTable(days) {
  const box = h('div', { id: 'kpi-devices-box' });
  const summary = deviceSummary(days);
  let sort = 'worst';
  const picker = h('div', { class: 'row sort', role: 'group', 'aria-label': t('kpi.sortBy') },
    h('span', { class: 'hint' }, t('kpi.sortBy')),
    ...[['worst', 'kpi.worst'], ['availability', 'kpi.worstAvailability'], ['completeness', 'kpi.worstCompleteness'], ['device', 'kpi.device']]
      .map(([key, label]) => h('button', { type: 'button', class: 'secondary small', 'data-sort': key, 'aria-pressed': String(key === sort), onclick: () => { sort = key; draw(); } }, t(label))));
  const holder = h('div');
  function cell(s, k) {
    const g = grade(s[k], s.targets[k]);
    return h('td', { class: `figure g-${g}`, 'data-k': k },
      s[k] === null ? '—' : t('kpi.onDay', { value: share(s[k]), day: s[`${k}Day`] }));
  }
  function draw() {
    for (const b of picker.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.sort === sort));
    const rows = [...summary].sort(SORTS[sort]).map((s) => h('tr', { 'data-device': s.id },
      h('td', { translate: 'no' }, h('a', { href: `/devices/${encodeURIComponent(s.id)}` }, s.id)),
      cell(s, 'availability'), cell(s, 'completeness'),
      h('td', {}, t('kpi.targets', { a: share(s.targets.availability), c: share(s.targets.completeness) })),
      h('td', { class: s.below ? 'err-text' : '', 'data-k': 'days-below' }, fmt().number(s.below, 0))));
    holder.replaceChildren(table([t('kpi.device'), t('kpi.worstAvailability'), t('kpi.worstCompleteness'), t('kpi.target'), t('kpi.daysBelow')],
      rows, { id: 'kpi-devices', class: 'kpi' }));
    holder.dataset.sort = sort;
  }
  draw();
  box.append(picker, holder);
  return box;
}

function calendar(matrix, days) {
  const targets = {};
  for (const day of days) for (const d of day.devices || []) targets[d.id] = (d.targets || {}).availability;
  const info = h('p', { class: 'cal-info', id: 'kpi-cell-info', 'aria-live': 'polite' }, t('kpi.calendarHint'));
  const cols = matrix.days.length;
  const grid = h('div', { class: 'cal', id: 'kpi-calendar', role: 'grid' },
    h('div', { class: 'cal-row cal-head', role: 'row' },
      h('span', { class: 'cal-name' }),
      matrix.days.map((day) => h('span', { class: 'cal-day', role: 'columnheader', title: day }, day.slice(8)))),
    Object.entries(matrix.devices).map(([id, values]) => h('div', { class: 'cal-row', role: 'row' },
      h('span', { class: 'cal-name', translate: 'no', title: id }, id),
      values.map((v, i) => {
        const day = matrix.days[i];
        const text = v === null ? t('kpi.cellNone', { device: id, day }) : t('kpi.cell', { device: id, day, value: share(v) });
        return h('button', {
          type: 'button', class: `cal-cell g-${grade(v, targets[id])}`, role: 'gridcell', title: text, 'aria-label': text,
          'data-device': id, 'data-day': day, 'data-value': v === null ? '' : String(v),
          onclick: () => { info.textContent = text; },
        });
      }))));
  grid.style.setProperty('--days', String(cols)); // through the CSSOM: the CSP refuses style attributes
  const legend = h('div', { class: 'cal-legend' }, ['good', 'near', 'bad', 'none'].map((g) => h('span', {},
    h('span', { class: `cal-swatch g-${g}`, 'aria-hidden': 'true' }), t(`kpi.legend.${g}`))));
  return h('div', {}, h('div', { class: 'cal-box' }, grid), info, legend);
}

export async function render(view, _params, query) {
  view.append(h('h1', {}, t('kpi.title')));
  const from = query && query.get('from');
  const to = query && query.get('to');
  const qs = new URLSearchParams();
  if (from) qs.set('from', from);
  if (to) qs.set('to', to);
  const res = await api('GET', `/api/v1/kpi?${qs}`, undefined, { allowError: true });
  if (res.status === 404) { view.append(offBox()); return; }
  if (!res.ok) { view.append(errorBox(res)); return; }
  const d = res.data;
  const go = (a, b) => import('../app.js').then((m) => m.navigate(`/kpi?from=${a}&to=${b}`));
  const fromIn = h('input', { type: 'date', name: 'from', value: d.from, max: d.today, required: true });
  const toIn = h('input', { type: 'date', name: 'to', value: d.to, max: d.today, required: true });
  const csv = new URLSearchParams({ from: d.from, to: d.to, format: 'csv' });
  const bad = h('p', { class: 'err-text', hidden: true }, t('kpi.badRange'));
  view.append(h('form', { class: 'row kpi-range', id: 'kpi-range', onsubmit: (ev) => {
    ev.preventDefault();
    if (fromIn.value > toIn.value) { bad.hidden = false; return; }
    go(fromIn.value, toIn.value);
  } },
  h('label', {}, t('kpi.from'), fromIn), h('label', {}, t('kpi.to'), toIn),
  h('button', { type: 'submit', class: 'primary' }, t('kpi.apply')),
  h('button', { type: 'button', class: 'secondary', onclick: () => go(shift(d.today, -6), d.today) }, t('kpi.last7')),
  h('button', { type: 'button', class: 'secondary', onclick: () => go(shift(d.today, -29), d.today) }, t('kpi.last30')),
  h('a', { class: 'button', id: 'kpi-csv', href: `/api/v1/kpi?${csv}`, download: `kpi-${d.from}-${d.to}.csv` }, t('kpi.csv'))),
  bad,
  h('p', { class: 'hint' }, t('kpi.range', { from: d.from, to: d.to, tz: d.timezone })));
  if (!d.days.length) { view.append(h('p', { class: 'hint none', id: 'kpi-none' }, t('kpi.noDays'))); return; }
  view.append(
    h('section', { class: 'card' }, h('h2', {}, t('kpi.calendar')), calendar(d.availability_matrix, d.days)),
    h('section', { class: 'card' }, h('h2', {}, t('kpi.devices')), devicesTable(d.days)),
    h('section', { class: 'card' }, h('h2', {}, t('kpi.site')), siteTable(d.days, d.today)));
}

// The overview's card: today so far (the site's day, in its zone); undefined when the site
// computes no KPIs (404), null when today cannot be read now.
export async function today() {
  const day = fmt().date(Date.now() / 1000);
  const res = await api('GET', `/api/v1/kpi?from=${day}&to=${day}`, undefined, { allowError: true });
  if (res.status === 404) return undefined;
  if (!res.ok) return null;
  return res.data.days.find((x) => x.day === res.data.today) || null;
}
