// Privacy (admins): the record of processing (GET /api/v1/privacy/report, what `edge privacy
// report --json` prints) and a resident's rights: a copy of their records as JSON lines and their
// erasure, after a confirmation that says what erasing does. Every call is audited server-side.
import { ApiError, api, can, dialog, errorBox, fmt, h, problemText, state, t, table } from '../core.js';

const FIRST = 40; // items listed before "show all": a site has hundreds of points

function cls(c) {
  return h('span', { class: `badge badge-${c === 'sensitive' ? 'bad' : c === 'personal' ? 'warn' : 'muted'}`, 'data-class': c }, t(`privacy.class.${c}`));
}

function retention(s) {
  return s === null || s === undefined ? t('privacy.keepForever') : fmt().duration(s);
}

function classesTable(report) {
  return table([t('privacy.class'), t('privacy.retention'), t('privacy.encrypted'), t('privacy.held')],
    Object.entries(report.classes).map(([c, x]) => h('tr', { 'data-class': c },
      h('td', {}, cls(c)), h('td', {}, retention(x.retention_s)),
      h('td', { 'data-k': 'encrypted' }, x.encrypted_at_rest ? t('privacy.yes') : t('privacy.no')),
      h('td', { 'data-k': 'held' }, fmt().number(x.held, 0)))),
    { id: 'privacy-classes' });
}

function recipientsTable(report) {
  if (!report.recipients.length) return h('p', { class: 'hint none' }, t('privacy.noRecipients'));
  return table([t('sync.id'), t('sync.type'), t('privacy.maxPrivacy'), t('privacy.pseudonymise')],
    report.recipients.map((r) => h('tr', { 'data-recipient': r.id },
      h('td', { translate: 'no' }, r.id),
      h('td', {}, t(`privacy.kind.${r.kind}`), ' ', h('span', { class: 'sub', translate: 'no' }, r.type)),
      h('td', {}, cls(r.max_privacy)),
      h('td', {}, r.pseudonymise ? t('privacy.pseudonymOn') : t('privacy.pseudonymOff')))),
    { id: 'privacy-recipients' });
}

// The report's reasons (English, for the command line's --json) in the reader's words; a reason
// this page does not know shows as the report words it.
const WHY = [
  [/^disabled$/, 'privacy.why.disabled'],
  [/^not in its include lists$/, 'privacy.why.notIncluded'],
  [/^above its max_privacy (\w+): served as no value$/, 'privacy.why.aboveServedEmpty'],
  [/^above its max_privacy (\w+)$/, 'privacy.why.above'],
  [/^no pseudonymise: key/, 'privacy.why.noPseudonymKey'],
  [/^a register map serves points only$/, 'privacy.why.pointsOnly'],
  [/^not in its map$/, 'privacy.why.notInMap'],
];

export function whyText(v) {
  if (v.why) {
    for (const [re, key] of WHY) {
      const m = re.exec(v.why);
      if (m) return t(key, { max: m[1] ? t('privacy.class.' + m[1]) : '', fields: v.withheld_fields || '' });
    }
    return v.why;
  }
  if (v.fields) return t('privacy.why.pseudonymised', { fields: v.fields });
  return '';
}

function receives(item) {
  const entries = Object.entries(item.recipients || {});
  const sent = entries.filter(([, v]) => v.receives !== 'withheld');
  if (!sent.length) return h('span', { class: 'sub' }, t('privacy.onlyHere'));
  return entries.map(([id, v]) => h('div', { title: whyText(v) },
    h('span', { translate: 'no' }, id), ': ', t(`privacy.verdict.${v.receives}`)));
}

function itemsTable(items, key, id) {
  const holder = h('div');
  function draw(all) {
    const shown = all ? items : items.slice(0, FIRST);
    holder.replaceChildren(table([t('privacy.item'), t('privacy.class'), t('privacy.retention'), t('privacy.encrypted'), t('privacy.receives')],
      shown.map((x) => h('tr', { 'data-item': x[key] },
        h('td', { translate: 'no', class: 'desc' }, x[key], x.source && key === 'kind' ? h('div', { class: 'sub' }, x.source) : null),
        h('td', {}, cls(x.privacy)), h('td', {}, retention(x.retention_s)),
        h('td', {}, x.encrypted_at_rest ? t('privacy.yes') : t('privacy.no')),
        h('td', {}, receives(x)))),
      { id }),
    ...(items.length > shown.length
      ? [h('button', { type: 'button', class: 'secondary', onclick: () => draw(true) }, t('privacy.showAll', { n: fmt().number(items.length, 0) }))]
      : []));
  }
  draw(false);
  return holder;
}

// The most private first: what an auditor reads for.
const RANK = { sensitive: 0, personal: 1, public: 2 };
const byClass = (a, b) => RANK[a.privacy] - RANK[b.privacy];

async function exportSubject(subject, out) {
  const r = await fetch('/api/v1/privacy/subjects/export', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': state.csrf },
    body: JSON.stringify({ subject }),
  });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => ({})));
  const blob = await r.blob();
  const name = (/filename="([^"]+)"/.exec(r.headers.get('Content-Disposition') || '') || [])[1] || 'subject.jsonl';
  const a = h('a', { href: URL.createObjectURL(blob), download: name, hidden: true });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  out.replaceChildren(h('div', { class: 'ok-box', id: 'privacy-done' }, t('privacy.exported', { n: fmt().number(Number(r.headers.get('X-Records') || 0), 0), file: name })));
}

async function forgetSubject(subject, out) {
  const v = await dialog(t('privacy.forgetTitle', { subject }), h('div', { class: 'forget-what' },
    h('p', {}, t('privacy.forgetWhat1')), h('p', {}, t('privacy.forgetWhat2')), h('p', {}, t('privacy.forgetWhat3')),
    h('p', { class: 'err-text' }, t('privacy.forgetWhat4')),
    h('label', {}, t('privacy.forgetConfirm'), h('input', { name: 'again', autocomplete: 'off', required: true }))),
  t('privacy.forgetDo'));
  if (!v) return;
  if (v.again.trim() !== subject) { out.replaceChildren(h('div', { class: 'error', role: 'status' }, t('privacy.forgetMismatch'))); return; }
  const res = await api('POST', '/api/v1/privacy/subjects/forget', { subject }, { allowError: true });
  if (!res.ok) { out.replaceChildren(errorBox(res)); return; }
  const d = res.data;
  out.replaceChildren(h('div', { class: 'ok-box', id: 'privacy-done' },
    d.had_key ? t('privacy.forgotten', { subject: d.subject, kept: fmt().number(d.kept_in_clear, 0), recipients: fmt().number(d.recipients, 0) }) : t('privacy.noKey')));
}

function subjectsCard() {
  const input = h('input', { name: 'subject', id: 'privacy-subject', autocomplete: 'off', maxlength: 200 });
  const out = h('div', { id: 'privacy-out', 'aria-live': 'polite' });
  const run = (fn) => async () => {
    const subject = input.value.trim();
    if (!subject) { out.replaceChildren(h('div', { class: 'error', role: 'status' }, t('privacy.needSubject'))); return; }
    try { await fn(subject, out); } catch (err) {
      out.replaceChildren(h('div', { class: 'error', role: 'status' }, err instanceof ApiError ? problemText(err.body, err.status) : String(err)));
    }
  };
  return h('section', { class: 'card', id: 'privacy-subjects' },
    h('h2', {}, t('privacy.subjects')), h('p', { class: 'hint' }, t('privacy.subjectsHint')),
    h('div', { class: 'row' }, h('label', {}, t('privacy.subject'), input),
      h('button', { type: 'button', class: 'primary', id: 'privacy-export', onclick: run(exportSubject) }, t('privacy.export')),
      h('button', { type: 'button', class: 'danger', id: 'privacy-forget', onclick: run(forgetSubject) }, t('privacy.forget'))),
    out);
}

export async function render(view) {
  view.append(h('h1', {}, t('privacy.title')));
  if (!can('admin')) { view.append(h('p', { class: 'hint' }, t('privacy.adminOnly'))); return; }
  const res = await api('GET', '/api/v1/privacy/report', undefined, { allowError: true });
  view.append(subjectsCard());
  if (!res.ok) { view.append(errorBox(res)); return; }
  const report = res.data;
  view.append(
    h('section', { class: 'card', id: 'privacy-record' }, h('h2', {}, t('privacy.record')), h('p', { class: 'hint' }, t('privacy.recordHint')),
      classesTable(report), h('h3', {}, t('privacy.recipients')), recipientsTable(report)),
    h('section', { class: 'card' }, h('h2', {}, t('privacy.events')), itemsTable([...report.events].sort(byClass), 'kind', 'privacy-events')),
    h('section', { class: 'card' }, h('h2', {}, t('privacy.points')), itemsTable([...report.points].sort(byClass), 'point', 'privacy-points')));
}
