// The application shell: session state, navigation (server paths, history.pushState), language
// switch, logout, and the page modules. Each page module exports `render(view, params)` and may
// return a cleanup function (to close its live stream or timers).
import { api, applyI18n, can, changeOwnPassword, fmt, h, loadLang, pickLang, problemText, setLang, state, t } from './core.js';

const ROUTES = [
  [/^\/$/, () => import('./pages/overview.js'), 'nav.overview'],
  [/^\/devices$/, () => import('./pages/devices.js'), 'nav.devices'],
  [/^\/devices\/([^/]+)$/, () => import('./pages/device.js'), 'nav.devices'],
  [/^\/rules$/, () => import('./pages/rules.js'), 'nav.rules'],
  [/^\/rules\/([^/]+)$/, () => import('./pages/rule_editor.js'), 'nav.rules'],
  [/^\/alerts$/, () => import('./pages/alerts.js'), 'nav.alerts'],
  [/^\/sync$/, () => import('./pages/sync.js'), 'nav.sync'],
  [/^\/kpi$/, () => import('./pages/kpi.js'), 'nav.kpi'],
  [/^\/privacy$/, () => import('./pages/privacy.js'), 'nav.privacy'],
  [/^\/audit$/, () => import('./pages/audit.js'), 'nav.audit'],
  [/^\/admin$/, () => import('./pages/admin.js'), 'nav.admin'],
];

let cleanup = null;

export async function navigate(path, push = true) {
  if (push) history.pushState({}, '', path);
  if (typeof cleanup === 'function') { try { cleanup(); } catch (e) { /* page already gone */ } }
  cleanup = null;
  const url = new URL(path, location.origin);
  const view = document.getElementById('view');
  setMenu(false);
  for (const a of document.querySelectorAll('#nav a')) {
    const href = a.getAttribute('href');
    a.classList.toggle('active', href === '/' ? url.pathname === '/' : url.pathname.startsWith(href));
  }
  for (const [re, load, title] of ROUTES) {
    const m = url.pathname.match(re);
    if (!m) continue;
    view.replaceChildren(h('p', { class: 'loading' }, t('common.loading')));
    const started = performance.now();
    const mod = await load();
    view.replaceChildren();
    document.title = `${t(title)} · ${state.site.name || t('app.title')}`;
    try {
      cleanup = await mod.render(view, m.slice(1).map(decodeURIComponent), url.searchParams);
    } catch (err) {
      view.append(h('div', { class: 'error', role: 'alert' }, String(err.message || err)));
    }
    view.dataset.renderMs = String(Math.round(performance.now() - started));
    view.dataset.ready = url.pathname;
    return;
  }
  view.replaceChildren(h('h1', {}, t('common.notFound')));
}

async function changePassword() {
  const res = await changeOwnPassword();
  if (res) alert(res.ok ? t('password.done') : problemText(res.data, res.status));
}

// On a narrow screen the navigation folds behind a menu button.
function setMenu(open) {
  const header = document.querySelector('header.top');
  const button = document.getElementById('menu');
  if (!header || !button) return;
  header.classList.toggle('menu-open', open);
  button.setAttribute('aria-expanded', String(open));
}

async function main() {
  await loadLang(pickLang());
  const st = await api('GET', '/api/v1/auth/state', undefined, { noRedirect: true });
  if (!st.user) { location.href = '/login?next=' + encodeURIComponent(location.pathname); return; }
  state.user = st.user;
  state.csrf = st.csrf;
  state.site = st.site;
  applyI18n(document);
  document.getElementById('site-name').textContent = st.site.name || st.site.id;
  document.getElementById('tz').textContent = `${st.site.timezone} (${fmt().zone()})`;
  document.getElementById('menu').addEventListener('click', () => setMenu(!document.querySelector('header.top').classList.contains('menu-open')));
  const who = document.getElementById('user');
  who.replaceChildren(h('span', { translate: 'no' }, st.user.name), ` (${t('role.' + st.user.role)})`);
  if (st.user.kind === 'user') {
    who.classList.add('clickable');
    who.title = t('password.title');
    who.addEventListener('click', changePassword);
  }
  for (const a of document.querySelectorAll('#nav a[data-scope]')) {
    if (!can(a.dataset.scope)) a.remove();
  }
  const sel = document.getElementById('lang');
  sel.value = state.lang;
  sel.addEventListener('change', () => setLang(sel.value));
  document.getElementById('logout').addEventListener('click', async () => {
    await api('POST', '/api/v1/auth/logout', {});
    location.href = '/login';
  });
  // Same-origin links navigate inside the app without reloading it.
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || a.target || a.hasAttribute('download') || ev.ctrlKey || ev.metaKey || ev.button !== 0) return;
    const href = a.getAttribute('href');
    if (!href || !href.startsWith('/') || href.startsWith('/api/') || href.startsWith('/static/')) return;
    ev.preventDefault();
    navigate(href);
  });
  window.addEventListener('popstate', () => navigate(location.pathname + location.search, false));
  navigate(location.pathname + location.search, false);
}

main();
