// Login and first-run setup (the admin account, guarded by the setup code from the log).
import { api, applyI18n, loadLang, pickLang, problemText, setLang, state, t } from './core.js';

function show(msg) {
  const box = document.getElementById('message');
  box.textContent = msg;
  box.hidden = !msg;
}

// The rule of safe_next() in edge/api/account_routes.py: a path on this gateway, else '/'.
// Browsers read //host and /\host as another site, and drop tabs and newlines before that
// (so /<tab>/host is //host); an encoded control character is refused as well.
const SAME_ORIGIN = /^\/(?![/\\])/;
const UNSAFE = /[\p{White_Space}\p{C}]/u;

function safeNext(n) {
  if (typeof n !== 'string' || n.length > 2048) return '/';
  const decoded = n.replace(/%([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  if (!SAME_ORIGIN.test(n) || !SAME_ORIGIN.test(decoded)) return '/';
  if (UNSAFE.test(n) || /[\x00-\x1f\x7f]/.test(decoded)) return '/';
  return n;
}

function failure(res) {
  // a 429 says how long to wait: the server's message (or its own text) carries the number
  const key = { 401: 'login.wrong', 403: 'setup.wrongCode', 409: 'setup.done' }[res.status];
  return key ? t(key) : problemText(res.data, res.status);
}

function holdButton(form, seconds) {
  const button = form.querySelector('button');
  button.disabled = true;
  setTimeout(() => { button.disabled = false; }, seconds * 1000);
}

async function main() {
  await loadLang(pickLang());
  applyI18n(document);
  const sel = document.getElementById('lang');
  sel.value = state.lang;
  sel.addEventListener('change', () => setLang(sel.value));
  const st = await api('GET', '/api/v1/auth/state', undefined, { noRedirect: true });
  document.getElementById('site-name').textContent = st.site.name || st.site.id;
  // a browser that still has a session must send its CSRF token, or logging in again is refused
  if (st.csrf) state.csrf = st.csrf;
  const setup = st.setup_required;
  const form = document.getElementById(setup ? 'setup-form' : 'login-form');
  form.hidden = false;
  document.title = `${t(setup ? 'setup.title' : 'login.title')} · ${t('app.title')}`;
  // a message is about what was sent: an edit clears it (the browser's own checks, a password
  // too short, stop the submit, and an old "the passwords differ" would stay beside them)
  form.addEventListener('input', () => show(''));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    show('');
    const v = Object.fromEntries(new FormData(form).entries());
    if (setup && v.password !== v.password2) { show(t('setup.mismatch')); return; }
    const wanted = safeNext(new URLSearchParams(location.search).get('next') || '/');
    const body = setup ? { code: v.code, name: v.name, password: v.password, next: wanted }
      : { name: v.name, password: v.password, next: wanted };
    const res = await api('POST', setup ? '/api/v1/auth/setup' : '/api/v1/auth/login', body, { allowError: true, noRedirect: true });
    // the server checked `next` too; checking its answer again costs nothing
    if (res.ok) { location.href = safeNext(res.data.next ?? wanted); return; }
    if (res.status === 429 && res.data.retry_after) holdButton(form, res.data.retry_after);
    show(res.status === 422 ? `${t('setup.invalid')}: ${problemText(res.data, res.status)}` : failure(res));
  });
}

main();
