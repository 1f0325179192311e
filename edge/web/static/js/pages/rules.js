// Rules: list with state and last firing, enable/disable, pack import/export (rules API).
// An import that would replace stored rules (a rule tuned or disabled here since) first lists
// them, with those it would enable or disable, and imports only once that is confirmed, made
// against what the list showed: a rule changed meanwhile is listed again before anything is stored.
// Enable/disable is made against the version its row shows (If-Match): a rule a colleague changed
// since is not touched, and its row shows it as it is now, with who changed it and when.
import { api, badge, can, dialog, errorBox, fmtTime, h, state, t, table } from '../core.js';

// a rule state's badge colour, the same in the list and the editor: an active rule has an alert on
export const STATE_BADGE = { ok: 'ok', pending: 'warn', active: 'bad', error: 'bad', disabled: 'muted' };

// A server message (a problem, or one validation error of it) in the reader's language: its
// `message_key` and `args` from the catalogue, else the server's English.
export function said(m) {
  const key = m && m.message_key;
  if (key) { const s = t(key, m.args || undefined); if (s !== key) return s; }
  return (m && (m.message || [m.title, m.detail].filter(Boolean).join(': '))) || '';
}

// A pack the gateway refused: the count, then its problems (each `file:line: text`) with their
// line in the reader's words, the first ones listed (the rest counted).
const PACK_PROBLEMS_SHOWN = 10;
function packRefused(data) {
  const box = h('div', { class: 'error', role: 'alert' }, said(data));
  const errors = Array.isArray(data && data.errors) ? data.errors : data && data.args && data.args.first ? [data.args.first] : [];
  if (!errors.length) return box;
  const line = (p) => {
    const m = /^[^\n]*?:(\d+): (.*)$/s.exec(String(p));
    return m ? `${t('rules.packLine', { line: m[1] })} ${m[2]}` : String(p);
  };
  const list = h('ul', { class: 'pack-problems' }, errors.slice(0, PACK_PROBLEMS_SHOWN).map((p) => h('li', {}, line(p))));
  if (errors.length > PACK_PROBLEMS_SHOWN) list.append(h('li', { class: 'hint' }, t('editor.more', { n: errors.length - PACK_PROBLEMS_SHOWN })));
  box.append(list);
  return box;
}

// What an import would do (`?dry_run=1`), for its author to confirm: each rule it replaces, with
// the enabling or disabling that comes with it and who changed the stored one last; true to import.
// how the stored rule was last changed (the audit's words: "disabled a rule"), else its action name
function actionSaid(action) {
  const key = `action.rule_${action}`;
  const said = t(key);
  return said === key ? action : said;
}

function confirmImport(changes, moved) {
  const replaced = changes.filter((c) => c.change === 'replaced');
  const rows = replaced.map((c) => h('tr', { 'data-rule': c.id },
    h('td', {}, c.id),
    h('td', {}, c.enabled_before === c.enabled_after ? ''
      : h('strong', { 'data-k': c.enabled_after ? 'will-enable' : 'will-disable' }, t(c.enabled_after ? 'rules.importWillEnable' : 'rules.importWillDisable'))),
    h('td', {}, t('rules.importLastChange', { version: c.version, by: c.updated_by || '?', action: actionSaid(c.action), when: c.updated ? fmtTime(c.updated) : '' }))));
  const counted = ['new', 'unchanged'].map((k) => [k, changes.filter((c) => c.change === k).length]).filter(([, n]) => n);
  const body = h('div', { id: 'import-preview' },
    moved ? h('p', { class: 'error', id: 'import-moved' }, t('rules.importMoved')) : null,
    h('p', {}, t('rules.importAsk')),
    table([t('rules.id'), t('rules.importEnabled'), t('rules.importStored')], rows, { class: 'import-changes' }),
    counted.length ? h('p', { class: 'hint' }, counted.map(([k, n]) => t(k === 'new' ? 'rules.importNew' : 'rules.importUnchanged', { n })).join(' · ')) : null);
  return dialog(t('rules.import'), body, t('rules.importConfirm')).then((v) => v !== null);
}

const asPack = { raw: true, contentType: 'application/yaml', allowError: true };

// The import itself, made against the dry run's ETag (If-Match: core.js's api() sends no header of
// its caller's): refused (409) when a rule of the pack changed since the list was shown.
async function storePack(text, etag) {
  const headers = { 'Content-Type': 'application/yaml' };
  if (state.csrf) headers['X-CSRF-Token'] = state.csrf;
  if (etag) headers['If-Match'] = `"${etag}"`;
  const r = await fetch('/api/v1/rules/import', { method: 'POST', headers, body: text, credentials: 'same-origin' });
  const type = r.headers.get('Content-Type') || '';
  return { status: r.status, ok: r.ok, data: type.includes('json') ? await r.json() : await r.text() };
}

// Import `text`: what it would do first (a dry run), asked when it replaces stored rules, then
// stored against what was shown; shown again when a rule changed meanwhile.
async function importPack(text, msg, moved = 0) {
  const preview = await api('POST', '/api/v1/rules/import?dry_run=1', text, asPack);
  if (!preview.ok) { msg.replaceChildren(packRefused(preview.data)); return; }
  const changes = Array.isArray(preview.data.changes) ? preview.data.changes : [];
  if ((moved || changes.some((c) => c.change === 'replaced')) && !(await confirmImport(changes, moved > 0))) {
    msg.replaceChildren(h('div', { class: 'hint', id: 'import-cancelled' }, t('rules.importCancelled')));
    return;
  }
  const r = await storePack(text, preview.data.etag);
  if (r.status === 401) { location.href = '/login?next=' + encodeURIComponent(location.pathname); return; }
  if (r.status === 409 && r.data && Array.isArray(r.data.changes) && moved < 3) { await importPack(text, msg, moved + 1); return; }
  msg.replaceChildren(r.ok ? h('div', { class: 'ok-box' }, t('rules.imported')) : packRefused(r.data));
  if (r.ok) setTimeout(() => location.reload(), 600);
}

// Enable or disable rule `r` as its row shows it (its version as If-Match). Answers the response.
async function setEnabled(r) {
  const headers = { 'If-Match': `"${r.version}"` };
  if (state.csrf) headers['X-CSRF-Token'] = state.csrf;
  const resp = await fetch(`/api/v1/rules/${encodeURIComponent(r.id)}/${r.enabled ? 'disable' : 'enable'}`, { method: 'POST', headers, credentials: 'same-origin' });
  const type = resp.headers.get('Content-Type') || '';
  return { status: resp.status, ok: resp.ok, data: type.includes('json') ? await resp.json() : await resp.text() };
}

export async function render(view) {
  view.append(h('h1', {}, t('rules.title')));
  const res = await api('GET', '/api/v1/rules', undefined, { allowError: true });
  if (res.status === 404) {
    view.append(h('div', { class: 'error', id: 'rules-missing' }, t('rules.apiMissing')));
    return;
  }
  if (!res.ok) { view.append(errorBox({ toString: () => said(res.data) })); return; }
  const msg = h('div', { id: 'rules-msg' });
  const tools = h('div', { class: 'row' });
  if (can('rules')) {
    const file = h('input', { type: 'file', accept: '.yaml,.yml', id: 'pack-file', hidden: true, onchange: async () => {
      const text = await file.files[0].text();
      file.value = ''; // choosing the same file again is a change again
      await importPack(text, msg);
    } });
    tools.append(h('a', { href: '/rules/new', class: 'button primary', id: 'new-rule' }, t('rules.new')),
      h('button', { class: 'secondary', onclick: () => file.click() }, t('rules.import')), file);
  }
  tools.append(h('a', { href: '/api/v1/rules/export', class: 'button secondary', download: 'rules.yaml' }, t('rules.export')));
  view.append(tools, msg);
  const rowOf = (r) => {
    const toggle = can('rules') ? h('button', { class: 'secondary small', 'data-act': 'toggle', onclick: async () => {
      msg.replaceChildren();
      const done = await setEnabled(r);
      if (done.status === 401) { location.href = '/login?next=' + encodeURIComponent(location.pathname); return; }
      if (done.status === 409 && done.data && 'your_version' in done.data) { await changedMeanwhile(r, done.data); return; }
      if (!done.ok) { msg.replaceChildren(h('div', { class: 'error', role: 'alert' }, said(done.data))); return; }
      location.reload();
    } }, r.enabled ? t('rules.disable') : t('rules.enable')) : null;
    return h('tr', { 'data-rule': r.id },
      h('td', {}, h('a', { href: `/rules/${encodeURIComponent(r.id)}` }, r.id)),
      h('td', {}, r.name || ''),
      h('td', {}, badge(STATE_BADGE[r.state] || 'muted', t('ruleState.' + r.state)), r.error ? h('div', { class: 'err-text' }, r.error) : null),
      h('td', {}, r.redacted ? t('ruleState.redacted') : r.last_fired ? fmtTime(r.last_fired) : t('rules.never')),
      h('td', {}, String(r.version ?? '')),
      h('td', {}, toggle));
  };
  // refused: a colleague changed (or deleted) the rule since this list was drawn; nothing changed,
  // its row is drawn again as the rule is now, and a click is then made against that version
  async function changedMeanwhile(r, p) {
    const tr = view.querySelector(`tr[data-rule="${CSS.escape(r.id)}"]`);
    const gone = p.current_version === null || p.current_version === undefined;
    const now = gone ? null : await api('GET', `/api/v1/rules/${encodeURIComponent(r.id)}`, undefined, { allowError: true });
    if (tr) {
      if (now && now.ok) {
        const fresh = rowOf(now.data);
        [...fresh.children].forEach((td, i) => { td.dataset.label = tr.children[i]?.dataset.label || ''; }); // as table() labels them
        tr.replaceWith(fresh);
      }
      else if (gone || (now && now.status === 404)) tr.remove();
    }
    msg.replaceChildren(h('div', { class: 'error', id: 'rule-conflict', role: 'alert' }, gone
      ? t('rules.actionDeleted', { id: r.id, version: p.your_version })
      : t('rules.actionConflict', { id: r.id, by: p.updated_by || '?', when: p.updated ? fmtTime(p.updated) : '', from: p.your_version, to: p.current_version })));
  }
  const rows = res.data.rules.map(rowOf);
  view.append(rows.length
    ? table([t('rules.id'), t('rules.name'), t('rules.state'), t('rules.lastFired'), t('rules.version'), ''], rows, { class: 'rules' })
    : h('p', { class: 'hint' }, t('rules.none')));
}
