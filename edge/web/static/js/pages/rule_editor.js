// The rule editor: YAML text, validated as you type with the error shown at its line and column,
// dry-run over the buffered history with a timeline, save, enable/disable, versions with diff and
// restore. YAML is parsed by the gateway (/api/v1/ui/yaml): there is no YAML parser in a browser.
// Validating and dry runs need the `rules` scope: a role without it reads the rule and nothing more
// (and is told that a new rule needs that scope instead of an empty editor).
// A dry-run firing that quotes data above the user's privacy class comes without its message; the
// list says which class it was.
// A save is made against the version the editor loaded (If-Match): when a colleague saved since,
// the gateway refuses it (409) and the editor shows what they changed, to load theirs or to save
// this text over theirs knowingly. When the session ends, nothing jumps to the login page: the
// text stays, and this tab keeps it to put back once its author logged in again.
// Delete, enable/disable and restore are made against the version the page shows (If-Match) too:
// a colleague's change since is said (who, when, enabled or not now), the page shows the rule as
// it is now, and the same button does it again, knowingly, against that version.
import { api, badge, can, fmtClock, fmtTime, h, state, t } from '../core.js';
import { timeline } from '../chart.js';
import { STATE_BADGE, said } from './rules.js';

const TEMPLATE = `id: bin-full-east
name: 东区垃圾桶满 Bin full (east)
enabled: true
when: bin-east-*.fill_pct
if: value > 85
for: 1m
clear_if: value < 70
notify: toggle
severity: warning
then:
  - alert: "{device}: {value:.0f}% full"
`;

// Where a validation error about `field` (its own line/column) sits in the YAML text.
export function locate(text, field, line, column) {
  const lines = text.split('\n');
  const key = String(field || '').split(/[.[]/)[0];
  const idx = key ? lines.findIndex((l) => new RegExp(`^${key.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&')}\\s*:`).test(l)) : -1;
  if (idx < 0) return { line: line || 1, column: column || 1 };
  const after = lines[idx].slice(lines[idx].indexOf(':') + 1);
  const lead = after.length - after.trimStart().length;
  const rest = after.trimStart();
  if (rest === '' || rest.startsWith('|') || rest.startsWith('>')) {
    const bodyLine = idx + (line || 1);
    const indent = (lines[bodyLine] || '').length - (lines[bodyLine] || '').trimStart().length;
    return { line: bodyLine + 1, column: indent + (column || 1) };
  }
  const quote = rest.startsWith('"') || rest.startsWith("'") ? 1 : 0;
  return { line: idx + 1 + ((line || 1) - 1), column: lines[idx].indexOf(':') + 1 + lead + quote + (column || 1) };
}

function diffLines(a, b) {
  // LCS line diff: small texts, so the O(n·m) table is fine. A changed line reads - then +.
  const x = a.split('\n'), y = b.split('\n');
  const n = x.length, m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push([' ', x[i]]); i++; j++; }
    else if (j < m && (i >= n || L[i][j + 1] > L[i + 1][j])) { out.push(['+', y[j]]); j++; }
    else { out.push(['-', x[i]]); i++; }
  }
  return out;
}

function stateBadge(state) { return badge(STATE_BADGE[state] || 'muted', t('ruleState.' + state)); }

async function toYaml(data) { return (await api('POST', '/api/v1/ui/yaml', { data })).text; }

// A request of the editor's own: core.js's api() sends no header of its caller's (If-Match), and
// answers a 401 by leaving for the login page, which would throw the text being edited away.
async function send(method, path, body, headers = {}) {
  const hdrs = { ...headers };
  if (state.csrf) hdrs['X-CSRF-Token'] = state.csrf;
  if (body !== undefined) hdrs['Content-Type'] = 'application/yaml';
  const r = await fetch(path, { method, headers: hdrs, body, credentials: 'same-origin' });
  const type = r.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await r.json() : await r.text();
  return { status: r.status, ok: r.ok, data };
}

// where this tab keeps a rule's unsaved text while its author logs in again; given back to that
// author only (another user logging in at this browser does not get it)
const draftKey = (ruleId) => `edge.ruleDraft:${ruleId}`;
const me = () => (state.user && state.user.name) || '';

export async function render(view, [ruleId]) {
  const isNew = ruleId === 'new';
  let current = null;
  if (isNew && !can('rules')) {
    // nothing to read in an empty editor: a role without the rules scope is told so instead
    view.append(h('p', {}, h('a', { href: '/rules' }, '← ' + t('nav.rules'))),
      h('h1', {}, t('editor.newTitle')), h('div', { class: 'error', id: 'new-needs-rules' }, t('editor.newNeedsRules')));
    return;
  }
  if (!isNew) {
    const res = await api('GET', `/api/v1/rules/${encodeURIComponent(ruleId)}`, undefined, { allowError: true });
    if (res.status === 404 && res.data && res.data.title !== 'Not Found') { view.append(h('div', { class: 'error' }, res.data.detail || res.data.title)); return; }
    if (!res.ok) { view.append(h('div', { class: 'error', id: 'rules-missing' }, t('rules.apiMissing'))); return; }
    current = res.data;
  }
  const editable = can('rules');
  view.append(h('p', {}, h('a', { href: '/rules' }, '← ' + t('nav.rules'))),
    h('h1', {}, isNew ? t('editor.newTitle') : t('editor.title', { id: ruleId }), ' ',
      current ? h('span', { id: 'rule-state' }, stateBadge(current.state || (current.enabled ? 'ok' : 'disabled'))) : null));
  const text = h('textarea', { id: 'rule-text', spellcheck: 'false', rows: 16, readonly: !editable });
  // the text the author wrote (comments, key order, shorthand), as the rule keeps it
  text.value = current ? (current.text ?? await toYaml(current.rule)) : TEMPLATE;
  const status = h('div', { id: 'rule-status', class: 'status-line', role: 'status' });
  const where = h('pre', { id: 'rule-error-where', class: 'where', hidden: true });
  // what the rule names that this site does not have (a point, a writable point): valid, but said
  const warnings = h('ul', { id: 'rule-warnings', class: 'warnings', role: 'status', hidden: true });
  Object.assign(warnings.style, { background: '#fff8c5', color: '#7d4e00', borderRadius: '6px', padding: '6px 8px 6px 24px', marginTop: '6px' });
  const example = h('pre', { id: 'rule-help-text' }, t('editor.helpText'));
  // a YAML example wrapped mid-line reads as different YAML: it scrolls sideways instead
  example.style.whiteSpace = 'pre';
  example.style.overflowX = 'auto';
  const help = h('details', { class: 'help' }, h('summary', {}, t('editor.help')), example);
  const notice = h('div', { id: 'editor-notice' });
  view.append(h('div', { class: 'editor' }, h('div', {}, notice, text, status, where, warnings), help));

  // the version (and its text) this editor's changes are made against: a save sends it
  let base = { version: current ? current.version : null, text: text.value };
  // the version and the enabling the page shows: delete, enable/disable and restore send it
  let shown = current ? { version: current.version, enabled: !!current.enabled } : null;
  let restoreVersion = null; // set below for an editable rule: the versions card's Restore
  let redrawVersions = async () => {}; // the versions card again, with those saved since
  let ended = false;
  if (editable) {
    let draft = null;
    try { draft = JSON.parse(sessionStorage.getItem(draftKey(ruleId)) || 'null'); } catch { draft = null; }
    if (draft && typeof draft.text === 'string' && draft.user === me()) {
      sessionStorage.removeItem(draftKey(ruleId));
      text.value = draft.text;
      if (draft.base) base = draft.base;
      notice.replaceChildren(h('div', { class: 'hint', id: 'draft-restored', role: 'status' },
        base.version ? t('editor.draftRestored', { version: base.version }) : t('editor.draftRestoredNew')));
    }
  }
  // the session ended (an admin ended it, a password reset, idle): the text stays where it is,
  // this tab keeps it for after the login, and the author is told, instead of being sent away
  function sessionEnded() {
    clearTimeout(timer);
    try { sessionStorage.setItem(draftKey(ruleId), JSON.stringify({ user: me(), text: text.value, base })); } catch { /* private mode: the text stays on the page */ }
    status.className = 'status-line bad';
    status.textContent = t('editor.sessionEnded');
    if (ended) return;
    ended = true;
    notice.replaceChildren(h('div', { class: 'error', id: 'session-ended', role: 'alert' }, t('editor.sessionEnded'), ' ',
      // target: a page load of the login page, not a route of this app
      h('a', { href: '/login?next=' + encodeURIComponent(location.pathname), id: 'session-login', target: '_self' }, t('editor.logInAgain'))));
  }

  let parsed = null;
  let parsedText = null; // the text `parsed` was parsed from
  let seq = 0;
  async function validate() {
    if (!editable) return false;
    const mine = ++seq;
    const sent = text.value;
    where.hidden = true;
    showWarnings([]);
    const y = await api('POST', '/api/v1/ui/yaml', { text: sent }, { allowError: true, noRedirect: true });
    if (mine !== seq) return false;
    if (y.status === 401) { sessionEnded(); return false; }
    if (!y.ok) {
      const e = y.data.error || {};
      showError(e.line, e.column, t('editor.yamlError', { message: e.message || said(y.data) }));
      parsed = parsedText = null;
      return false;
    }
    parsed = y.data.data;
    parsedText = sent;
    const v = await api('POST', '/api/v1/rules/validate', parsed, { allowError: true, noRedirect: true });
    if (mine !== seq) return false;
    if (v.status === 401) { sessionEnded(); return false; }
    if (v.ok) {
      status.className = 'status-line ok';
      status.textContent = t('editor.valid');
      showWarnings(v.data.warnings);
      return true;
    }
    const errs = v.data.errors || [];
    if (!errs.length) { showError(null, null, said(v.data)); return false; }
    const e = errs[0];
    const pos = locate(text.value, e.field, e.line, e.column);
    // an unknown key's message names the key already
    const named = e.args && e.args.key !== undefined && String(e.field || '').endsWith(String(e.args.key));
    showError(pos.line, pos.column, `${e.field && !named ? e.field + ': ' : ''}${said(e)}`, errs.length - 1);
    return false;
  }
  // each warning on its line, as an error is placed, in the server's words
  function showWarnings(list) {
    const items = Array.isArray(list) ? list : [];
    warnings.replaceChildren(...items.map((w) => {
      const pos = locate(text.value, w.field, w.line, w.column);
      return h('li', { class: 'warn', 'data-field': w.field || '', 'data-line': pos.line },
        `⚠ ${t('editor.at', { line: pos.line, column: pos.column })} ${w.field ? w.field + ': ' : ''}${said(w)}`);
    }));
    warnings.hidden = !items.length;
  }
  function showError(line, column, message, more = 0) {
    status.className = 'status-line bad';
    status.textContent = (line ? t('editor.at', { line, column }) + ' ' : '') + message + (more ? ' ' + t('editor.more', { n: more }) : '');
    status.dataset.line = line || '';
    status.dataset.column = column || '';
    if (line) {
      const src = text.value.split('\n')[line - 1] || '';
      where.textContent = `${String(line).padStart(3)} | ${src}\n    | ${' '.repeat(Math.max(0, column - 1))}^`;
      where.hidden = false;
    }
  }
  let timer = null;
  text.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(validate, 350); });

  // Dry-run
  // a dry-run checks the text as it is now (a check still waiting for the typing to stop would
  // void this one), and never runs what was parsed from an earlier text
  const checkNow = () => { clearTimeout(timer); return validate(); };
  if (editable) view.append(dryRunCard(checkNow, () => (parsedText === text.value ? parsed : null), sessionEnded));
  else view.append(h('p', { class: 'hint', id: 'dry-run-needs-rules' }, t('editor.needsRules')));

  if (editable) {
    const saveMsg = h('div', { id: 'save-msg' });
    // the text itself is saved, so the rule keeps every line the author did not change; made
    // against `version` (If-Match): none for a new rule, or to re-create one deleted meanwhile
    async function store(version) {
      const url = isNew ? '/api/v1/rules' : `/api/v1/rules/${encodeURIComponent(ruleId)}`;
      const r = await send(isNew ? 'POST' : 'PUT', url, text.value, version ? { 'If-Match': `"${version}"` } : {});
      if (r.status === 401) { sessionEnded(); return; }
      if (r.status === 409 && !isNew && r.data && 'your_version' in r.data) { conflict(r.data); return; }
      if (!r.ok) { saveMsg.replaceChildren(h('div', { class: 'error' }, said(r.data))); return; }
      base = { version: r.data.version, text: text.value };
      if (shown) { shown = { version: r.data.version, enabled: !!r.data.enabled }; drawShown(r.data.state); }
      saveMsg.replaceChildren(h('div', { class: 'ok-box' }, t('editor.saved')));
      if (r.data && r.data.warnings) showWarnings(r.data.warnings);
      if (isNew && r.data && r.data.id) location.href = `/rules/${encodeURIComponent(r.data.id)}`;
    }
    // a colleague saved (or deleted) the rule since this editor loaded it: what they changed,
    // what saving this text would change in theirs, and the two ways on
    function conflict(p) {
      const mineEnabled = !(parsed && parsed.enabled === false);
      const lines = (a, b) => diffLines(a, b).map(([k, l]) => h('span', { class: k === '+' ? 'add' : k === '-' ? 'del' : '' }, `${k} ${l}\n`));
      const gone = p.current_version === null || p.current_version === undefined;
      const box = h('div', { class: 'error', id: 'save-conflict', role: 'alert' },
        h('p', { 'data-k': 'conflict-what' }, gone
          ? t('editor.conflictDeleted', { version: p.your_version })
          : t('editor.conflictChanged', { by: p.updated_by || '?', when: p.updated ? fmtTime(p.updated) : '', from: p.your_version, to: p.current_version })));
      if (!gone && p.enabled !== mineEnabled) {
        box.append(h('p', { 'data-k': 'conflict-enabled' }, t(p.enabled ? 'editor.conflictWouldDisable' : 'editor.conflictWouldEnable')));
      }
      if (!gone) {
        box.append(h('p', {}, t('editor.conflictTheirs')), h('pre', { class: 'diff', id: 'conflict-theirs' }, lines(base.text, p.text || '')),
          h('p', {}, t('editor.conflictMine')), h('pre', { class: 'diff', id: 'conflict-mine' }, lines(p.text || '', text.value)));
      }
      box.append(h('div', { class: 'row' },
        gone ? null : h('button', { class: 'secondary', id: 'conflict-reload', type: 'button', onclick: () => location.reload() }, t('editor.conflictReload')),
        h('button', { class: 'danger', id: 'conflict-overwrite', type: 'button', onclick: () => {
          // knowingly over what is stored now: a change after it is told the same way
          if (!gone) base = { version: p.current_version, text: p.text || '' };
          return store(gone ? null : p.current_version);
        } }, t('editor.conflictOverwrite'))));
      saveMsg.replaceChildren(box);
    }
    const save = h('button', { class: 'primary', id: 'save-rule', type: 'button', onclick: async () => {
      clearTimeout(timer); // a check still waiting for the typing to stop would void this one
      saveMsg.replaceChildren(); // what an earlier save said is not this one's answer
      if (!(await validate())) return;
      await store(base.version);
    } }, t('editor.save'));
    const row = h('div', { class: 'row' }, save);
    const actMsg = h('div', { id: 'action-msg' });
    const rulePath = `/api/v1/rules/${encodeURIComponent(ruleId)}`;
    // a change of the rule as the page shows it (its version as If-Match); `done` once it went through
    async function act(method, path, done) {
      actMsg.replaceChildren();
      const r = await send(method, path, undefined, shown && shown.version ? { 'If-Match': `"${shown.version}"` } : {});
      if (r.status === 401) { sessionEnded(); return; }
      if (r.status === 409 && r.data && 'your_version' in r.data) { await changedMeanwhile(r.data); return; }
      if (!r.ok) { actMsg.replaceChildren(h('div', { class: 'error', role: 'alert' }, said(r.data))); return; }
      done();
    }
    // refused: a colleague changed (or deleted) the rule since the version shown. Nothing changed;
    // the page shows the rule as it is now, and the next click is made against that version
    async function changedMeanwhile(p) {
      const gone = p.current_version === null || p.current_version === undefined;
      if (gone) {
        actMsg.replaceChildren(h('div', { class: 'error', id: 'action-conflict', role: 'alert' }, t('editor.actionDeleted', { version: p.your_version })));
        actMsg.scrollIntoView({ block: 'nearest' });
        return;
      }
      shown = { version: p.current_version, enabled: !!p.enabled };
      // a text not edited here is the stored one: it becomes theirs; an edited one stays, and its
      // save is told what they changed
      if (text.value === base.text && typeof p.text === 'string') {
        text.value = p.text;
        base = { version: p.current_version, text: p.text };
        checkNow();
      }
      const now = await api('GET', rulePath, undefined, { allowError: true, noRedirect: true });
      drawShown(now.ok && now.data.version === shown.version ? now.data.state : null);
      await redrawVersions();
      actMsg.replaceChildren(h('div', { class: 'error', id: 'action-conflict', role: 'alert' },
        t('editor.actionConflict', { by: p.updated_by || '?', when: p.updated ? fmtTime(p.updated) : '', from: p.your_version, to: p.current_version }),
        ' ', h('strong', { 'data-k': 'action-now' }, t(p.enabled ? 'editor.actionNowEnabled' : 'editor.actionNowDisabled'))));
      actMsg.scrollIntoView({ block: 'nearest' });
    }
    const toggle = h('button', { class: 'secondary', id: 'toggle-rule', type: 'button', onclick: () =>
      act('POST', `${rulePath}/${shown.enabled ? 'disable' : 'enable'}`, () => location.reload()) });
    // the toggle's words and the state badge, for the rule as `shown` (state: its engine state, if known)
    function drawShown(ruleState) {
      if (!shown) return;
      toggle.textContent = shown.enabled ? t('rules.disable') : t('rules.enable');
      const badgeAt = document.getElementById('rule-state');
      if (badgeAt) badgeAt.replaceChildren(stateBadge(ruleState || (shown.enabled ? 'ok' : 'disabled')));
    }
    if (current) {
      drawShown(current.state);
      row.append(toggle,
        h('button', { class: 'danger', id: 'delete-rule', type: 'button', onclick: () => {
          if (!confirm(t('editor.confirmDelete', { id: ruleId }))) return;
          return act('DELETE', rulePath, () => { location.href = '/rules'; });
        } }, t('editor.delete')));
      restoreVersion = (v) => act('POST', `${rulePath}/versions/${v}/restore`, () => location.reload());
    }
    view.append(row, actMsg, saveMsg);
  }
  if (current) {
    let card = await versions(ruleId, text, restoreVersion);
    view.append(card);
    redrawVersions = async () => { const fresh = await versions(ruleId, text, restoreVersion); card.replaceWith(fresh); card = fresh; };
  }
  await validate();
}

function firingLine(x) {
  const what = x.redacted
    ? h('span', { class: 'redacted', 'data-privacy': x.privacy }, t('editor.firingRedacted', { privacy: t('privacy.' + x.privacy) }))
    : (x.message || '');
  return h('li', { class: `k-${x.kind}` }, `${fmtTime(x.ts)} · ${t('firing.' + x.kind)} · `, what);
}

function dryRunCard(validate, parsed, sessionEnded) {
  const hours = h('select', { id: 'dry-hours' }, [1, 6, 24, 72].map((x) => h('option', { value: x, selected: x === 6 }, t('editor.hours', { n: x }))));
  const dryOut = h('div', { id: 'dry-result' });
  const dryBtn = h('button', { class: 'secondary', id: 'dry-run', type: 'button', onclick: async () => {
    // a rule that parses but does not validate still runs: the dry-run names its errors
    if (!(await validate()) && !parsed()) {
      dryOut.replaceChildren(h('div', { class: 'error', 'data-k': 'dry-needs-valid' }, t('editor.dryNeedsValid')));
      return;
    }
    dryOut.replaceChildren(h('p', { class: 'loading' }, t('editor.dryRunning')));
    const n = Number(hours.value);
    const r = await api('POST', '/api/v1/rules/dry-run', { rule: parsed(), hours: n }, { allowError: true, noRedirect: true });
    if (r.status === 401) { dryOut.replaceChildren(); sessionEnded(); return; }
    if (!r.ok) { dryOut.replaceChildren(h('div', { class: 'error' }, said(r.data))); return; }
    const to = Date.now() / 1000, from = to - n * 3600;
    const f = r.data.firings || [];
    const hidden = f.filter((x) => x.redacted).length;
    dryOut.replaceChildren(
      h('p', { 'data-k': 'dry-summary' }, t('editor.drySummary', { evaluated: r.data.evaluated ?? 0, fired: f.filter((x) => x.kind === 'fired').length, cleared: f.filter((x) => x.kind === 'cleared').length })),
      // replaceChildren writes a null as the text "null": the hint is left out, not passed as null
      ...(hidden ? [h('p', { class: 'hint', 'data-k': 'dry-redacted' }, t('editor.dryRedacted', { n: hidden }))] : []),
      timeline(f, from, to, { fmtX: fmtClock }),
      h('ol', { class: 'firings' }, f.slice(0, 200).map(firingLine)));
  } }, t('editor.dryRun'));
  return h('section', { class: 'card' }, h('h2', {}, t('editor.dryTitle')), h('div', { class: 'row' }, hours, dryBtn), dryOut);
}

// `restore(version)`: restores it (made against the version the page shows); none: read only
async function versions(ruleId, text, restore) {
  const box = h('section', { class: 'card', id: 'rule-versions' }, h('h2', {}, t('editor.versions')));
  const res = await api('GET', `/api/v1/rules/${encodeURIComponent(ruleId)}/versions`, undefined, { allowError: true });
  if (!res.ok) { box.append(h('p', { class: 'hint' }, t('editor.noVersions'))); return box; }
  const diff = h('pre', { class: 'diff', id: 'version-diff', hidden: true }); // shown once a diff is asked for
  const list = h('ul', { class: 'versions' });
  for (const v of res.data.versions || []) {
    list.append(h('li', {}, `v${v.version} · ${fmtTime(v.ts)} · ${v.actor || ''} `,
      h('button', { class: 'secondary small', type: 'button', onclick: async () => {
        const old = v.text ?? await toYaml(v.rule);
        diff.hidden = false;
        diff.replaceChildren(...diffLines(old, text.value).map(([k, l]) => h('span', { class: k === '+' ? 'add' : k === '-' ? 'del' : '' }, `${k} ${l}\n`)));
      } }, t('editor.diff')),
      restore ? h('button', { class: 'secondary small', type: 'button', 'data-restore': v.version, onclick: () => restore(v.version) }, t('editor.restore')) : null));
  }
  box.append(list, diff);
  return box;
}
