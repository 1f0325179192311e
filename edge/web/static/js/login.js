// Login and first-run setup (the admin account, guarded by the setup code from the log).
import { api, applyI18n, loadLang, pickLang, setLang, state, t } from './core.js';

function show(msg) {
  const box = document.getElementById('message');
  box.textContent = msg;
  box.hidden = !msg;
}

function next() {
  const n = new URLSearchParams(location.search).get('next') || '/';
  // only a path on this gateway: not //host or /\host, which browsers treat as another site
  return /^\/(?![/\\])/.test(n) ? n : '/';
}

function problemText(res) {
  const key = { 401: 'login.wrong', 403: 'setup.wrongCode', 423: 'login.locked', 429: 'login.tooMany', 409: 'setup.done' }[res.status];
  return key ? t(key) : `${res.data.title || ''}: ${res.data.detail || ''}`;
}

async function main() {
  await loadLang(pickLang());
  applyI18n(document);
  const sel = document.getElementById('lang');
  sel.value = state.lang;
  sel.addEventListener('change', () => setLang(sel.value));
  const st = await api('GET', '/api/v1/auth/state', undefined, { noRedirect: true });
  document.getElementById('site-name').textContent = st.site.name || st.site.id;
  const setup = st.setup_required;
  const form = document.getElementById(setup ? 'setup-form' : 'login-form');
  form.hidden = false;
  document.title = `${t(setup ? 'setup.title' : 'login.title')} · ${t('app.title')}`;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    show('');
    const v = Object.fromEntries(new FormData(form).entries());
    if (setup && v.password !== v.password2) { show(t('setup.mismatch')); return; }
    const body = setup ? { code: v.code, name: v.name, password: v.password } : { name: v.name, password: v.password };
    const res = await api('POST', setup ? '/api/v1/auth/setup' : '/api/v1/auth/login', body, { allowError: true, noRedirect: true });
    if (res.ok) { location.href = next(); return; }
    show(res.status === 422 ? `${t('setup.invalid')}: ${res.data.detail}` : problemText(res));
  });
}

main();
