// Users and API tokens (admins): roles, passwords, lockouts; tokens are shown once, at creation.
// A user's role is changed from its row's selector: that ends the user's sessions, so their next
// request is made with the new role once they logged in again; the gateway's refusal (the last
// admin) is said next to the selector, which shows the role kept.
// The pull consumers the site file declares (their token is a file or variable on the gateway,
// not one of the API's tokens) are listed with the tokens, since they reach the same API.
// A role change, disabling or deletion revokes API tokens the user made (those holding a scope
// the new role lacks; all of them): the answer's count is said, and the tokens are drawn again.
import { api, changeOwnPassword, dialog, errorBox, fmt, fmtTime, h, state, t, table } from '../core.js';

const ROLES = ['admin', 'technician', 'viewer'];
const SCOPES = ['read', 'write', 'rules', 'admin', 'pull'];

export async function render(view) {
  view.append(h('h1', {}, t('admin.title')));
  const users = h('section', { class: 'card', id: 'users' });
  const tokens = h('section', { class: 'card', id: 'tokens' });
  const sessions = h('section', { class: 'card', id: 'sessions' });
  view.append(users, sessions, tokens);
  // a user disabled, deleted or given a new password loses their sessions, and a demoted,
  // disabled or deleted one their API tokens: both tables are drawn again after every change
  const userChanged = () => Promise.all([drawSessions(sessions), drawTokens(tokens)]);
  await Promise.all([drawUsers(users, userChanged), drawSessions(sessions), drawTokens(tokens)]);
}

// An earlier refusal goes once the reader edits the form again, or submits it and the browser
// refuses a field (no request is sent then, so nothing else would replace it). A new token shown
// once stays.
function clearOnEdit(form, msg) {
  const clear = () => { for (const e of msg.querySelectorAll('.error')) e.remove(); };
  form.addEventListener('input', clear);
  form.addEventListener('invalid', clear, true);
}

// "N API tokens revoked" after a change of a user that revoked any (`tokens_revoked`), else nothing
function revokedNote(answer) {
  const n = (answer && answer.tokens_revoked) || 0;
  return n > 0 ? h('p', { 'data-tokens-revoked': n }, fmt().count(n, 'admin.tokensRevoked')) : null;
}

async function drawUsers(box, userChanged) {
  const { users } = await api('GET', '/api/v1/users');
  const msg = h('div', { id: 'user-msg' });
  // after a change the users are drawn again: its note goes into the new table's message box
  const said = (...notes) => {
    const shown = notes.filter(Boolean);
    if (shown.length) box.querySelector('#user-msg').replaceChildren(h('div', { class: 'ok-box', role: 'status' }, shown));
  };
  const act = async (name, body) => {
    try {
      const r = await api('PATCH', `/api/v1/users/${encodeURIComponent(name)}`, body);
      await Promise.all([drawUsers(box, userChanged), userChanged()]);
      said(revokedNote(r));
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  };
  // One's own password goes as the header's dialog sends it (with the current one): this
  // session stays, with its new CSRF token; the user's other sessions end. Set as another
  // user's, it would end this session too and leave the page at the login without a word.
  const ownPassword = async () => {
    const res = await changeOwnPassword();
    if (!res) return;
    if (!res.ok) { msg.replaceChildren(errorBox(res)); return; }
    await Promise.all([drawUsers(box, userChanged), userChanged()]);
    box.querySelector('#user-msg').replaceChildren(h('div', { class: 'ok-box', role: 'status' }, t('password.done')));
  };
  // One's own role too (another admin may remain): it ends this session, so it is asked first
  // and the page then goes to the login.
  const roleCell = (u) => {
    const refusal = h('span', { class: 'role-refusal', 'data-role-refusal': u.name });
    const select = h('select', { 'data-role-of': u.name, 'aria-label': t('admin.roleOf', { name: u.name }) },
      ROLES.map((r) => h('option', { value: r, selected: r === u.role }, t('role.' + r))));
    select.addEventListener('change', async () => {
      const role = select.value;
      const own = u.name === state.user.name;
      refusal.replaceChildren();
      if (own && !confirm(t('admin.ownRoleConfirm', { role: t('role.' + role) }))) { select.value = u.role; return; }
      const r = await api('PATCH', `/api/v1/users/${encodeURIComponent(u.name)}`, { role }, { allowError: true, noRedirect: own });
      if (!r.ok) { select.value = u.role; refusal.replaceChildren(errorBox(r)); return; }
      if (own) { location.href = '/login'; return; }
      await Promise.all([drawUsers(box, userChanged), userChanged()]);
      said(t('admin.roleChanged', { name: u.name, role: t('role.' + role) }), revokedNote(r.data));
    });
    return h('td', {}, select, refusal);
  };
  const rows = users.map((u) => h('tr', { 'data-user': u.name },
    h('td', { translate: 'no' }, u.name), roleCell(u),
    h('td', {}, u.disabled ? t('admin.disabled') : u.locked ? t('admin.locked') : t('admin.active')),
    h('td', {}, u.last_login ? fmtTime(u.last_login) : t('admin.never')),
    h('td', {},
      h('button', { class: 'secondary small', onclick: async () => {
        if (u.name === state.user.name) { await ownPassword(); return; }
        const v = await dialog(t('admin.resetTitle', { name: u.name }), h('label', {}, t('login.password'), h('input', { name: 'password', type: 'password', minlength: 10, required: true })));
        if (v) await act(u.name, { password: v.password });
      } }, t('admin.resetPassword')),
      u.locked ? h('button', { class: 'secondary small', onclick: () => act(u.name, { unlock: true }) }, t('admin.unlock')) : null,
      u.name !== state.user.name ? h('button', { class: 'secondary small', onclick: () => act(u.name, { disabled: !u.disabled }) }, u.disabled ? t('admin.enable') : t('admin.disable')) : null,
      u.name !== state.user.name ? h('button', { class: 'danger small', onclick: async () => {
        if (!confirm(t('admin.confirmDelete', { name: u.name }))) return;
        try {
          const r = await api('DELETE', `/api/v1/users/${encodeURIComponent(u.name)}`);
          await Promise.all([drawUsers(box, userChanged), userChanged()]);
          said(revokedNote(r));
        } catch (e) { msg.replaceChildren(errorBox(e)); }
      } }, t('admin.delete')) : null)));
  const form = h('form', { class: 'row', id: 'add-user' },
    h('input', { name: 'name', placeholder: t('login.name'), required: true }),
    h('select', { name: 'role' }, ROLES.map((r) => h('option', { value: r, selected: r === 'technician' }, t('role.' + r)))),
    h('input', { name: 'password', type: 'password', placeholder: t('login.password'), minlength: 10, required: true }),
    h('button', { class: 'primary' }, t('admin.addUser')));
  clearOnEdit(form, msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await api('POST', '/api/v1/users', Object.fromEntries(new FormData(form).entries())); await drawUsers(box, userChanged); } catch (e) { msg.replaceChildren(errorBox(e)); }
  });
  box.replaceChildren(h('h2', {}, t('admin.users')),
    table([t('login.name'), t('admin.role'), t('admin.status'), t('admin.lastLogin'), ''], rows), form, msg);
}

// Live sessions (everyone's for an admin): who, since when, last seen, from where; end any but this one.
async function drawSessions(box) {
  const { sessions } = await api('GET', '/api/v1/sessions');
  const msg = h('div');
  const rows = sessions.map((s) => h('tr', { 'data-session': s.id, 'data-session-user': s.user },
    h('td', { translate: 'no' }, s.user), h('td', {}, fmtTime(s.created)), h('td', {}, fmtTime(s.last_seen)), h('td', {}, s.address),
    h('td', {}, s.current ? t('admin.thisSession') : h('button', { class: 'danger small', onclick: async () => {
      // a session that ended meanwhile (its user disabled, logged out, expired) leaves the list too
      try { await api('DELETE', `/api/v1/sessions/${encodeURIComponent(s.id)}`); await drawSessions(box); } catch (e) { await drawSessions(box); box.append(errorBox(e)); }
    } }, t('admin.endSession')))));
  box.replaceChildren(h('h2', {}, t('admin.sessions')),
    table([t('login.name'), t('admin.created'), t('admin.lastSeen'), t('admin.address'), ''], rows), msg);
}

async function drawTokens(box) {
  const [{ tokens, consumers }, sync] = await Promise.all([
    api('GET', '/api/v1/tokens'),
    api('GET', '/api/v1/sync', undefined, { allowError: true }).then((r) => (r.ok ? r.data : null)),
  ]);
  const msg = h('div', { id: 'token-msg' });
  const rows = tokens.map((k) => h('tr', { 'data-token': k.id, class: k.revoked ? 'revoked' : '' },
    h('td', { translate: 'no' }, k.name), h('td', {}, k.scopes.map((x) => t('scope.' + x)).join(' ')), h('td', {}, k.consumer || ''),
    h('td', {}, fmtTime(k.created)), h('td', {}, k.last_used ? fmtTime(k.last_used) : t('admin.never')),
    h('td', {}, k.revoked ? t('admin.revoked') : h('button', { class: 'danger small', onclick: async () => {
      try { await api('DELETE', `/api/v1/tokens/${k.id}`); await drawTokens(box); } catch (e) { msg.replaceChildren(errorBox(e)); }
    } }, t('admin.revoke')))));
  // the consumers the site file declares hold the token their entry points at (a file or a
  // variable on the gateway); their last use is their last acknowledgement
  const lastAck = new Map(((sync && sync.consumers) || []).map((c) => [c.id, c.last_ack]));
  for (const c of consumers || []) {
    const acked = lastAck.get(c.id);
    rows.push(h('tr', { 'data-site-consumer': c.id },
      h('td', {}, c.id, h('div', { class: 'sub' }, t('admin.siteConsumer'))), h('td', {}, c.scopes.map((x) => t('scope.' + x)).join(' ')), h('td', {}, c.id),
      h('td', {}, '—'), h('td', {}, acked ? fmtTime(acked) : t('admin.never')),
      h('td', {}, h('span', { class: 'sub' }, t('admin.siteConsumerHow')))));
  }
  const form = h('form', { class: 'row', id: 'add-token' },
    h('input', { name: 'name', placeholder: t('admin.tokenName'), required: true }),
    SCOPES.map((s) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'scope', value: s, checked: s === 'read' }), t('scope.' + s))),
    h('input', { name: 'consumer', placeholder: t('admin.consumer') }),
    h('button', { class: 'primary' }, t('admin.createToken')));
  clearOnEdit(form, msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const fd = new FormData(form);
    try {
      const r = await api('POST', '/api/v1/tokens', { name: fd.get('name'), scopes: fd.getAll('scope'), consumer: fd.get('consumer') || null });
      await drawTokens(box);
      box.querySelector('#token-msg').replaceChildren(h('div', { class: 'ok-box' }, h('p', {}, t('admin.tokenOnce')), h('code', { id: 'new-token' }, r.token)));
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  });
  box.replaceChildren(h('h2', {}, t('admin.tokens')),
    table([t('admin.tokenName'), t('admin.scopes'), t('admin.consumer'), t('admin.created'), t('admin.lastUsed'), ''], rows), form, msg);
}
