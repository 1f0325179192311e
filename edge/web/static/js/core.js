// Shared plumbing of the UI: translations, the API client (with the session's CSRF token),
// DOM helpers and time formatting in the site's timezone. No framework, no build step.

export const state = { user: null, csrf: null, site: { timezone: 'UTC', name: '', id: '' }, lang: 'en', cat: {} };

const LANGS = ['zh-CN', 'en'];

export function pickLang() {
  const saved = localStorage.getItem('edge.lang');
  if (LANGS.includes(saved)) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    if (l.toLowerCase().startsWith('zh')) return 'zh-CN';
    if (l.toLowerCase().startsWith('en')) return 'en';
  }
  return 'en';
}

export async function loadLang(lang) {
  const r = await fetch(`/static/i18n/${lang}.json`);
  state.cat = await r.json();
  state.lang = lang;
  document.documentElement.lang = lang;
}

export function setLang(lang) {
  localStorage.setItem('edge.lang', lang);
  location.reload();
}

// t(KEY, {n: 3}) → the catalogue's text with {n} filled in; a missing key shows itself
// (and a test fails), never an empty string.
export function t(key, params) {
  let s = state.cat[key];
  if (s === undefined) s = key;
  if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (params[k] !== undefined ? String(params[k]) : m));
  return s;
}

export function applyI18n(root) {
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of root.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
}

// h('div', {class: 'x', onclick: fn}, child, 'text') — tiny element builder; text is never HTML.
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export async function api(method, path, body, opts = {}) {
  const headers = {};
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  let payload;
  if (body !== undefined) {
    if (opts.raw) { payload = body; headers['Content-Type'] = opts.contentType || 'text/plain'; }
    else { payload = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (r.status === 401 && !opts.noRedirect) {
    location.href = '/login?next=' + encodeURIComponent(location.pathname);
    throw new ApiError(401, {});
  }
  const type = r.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await r.json() : await r.text();
  if (!r.ok && !opts.allowError) throw new ApiError(r.status, typeof data === 'object' ? data : { detail: data });
  return opts.allowError ? { status: r.status, ok: r.ok, data } : data;
}

export function can(scope) {
  return !!(state.user && state.user.scopes && state.user.scopes.includes(scope));
}

let fmtCache = null;
function fmt() {
  if (!fmtCache || fmtCache.lang !== state.lang) {
    const opts = { timeZone: state.site.timezone, year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
    const short = { timeZone: state.site.timezone, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
    const loc = state.lang === 'zh-CN' ? 'zh-CN' : 'en-GB';
    fmtCache = { lang: state.lang, full: new Intl.DateTimeFormat(loc, opts), short: new Intl.DateTimeFormat(loc, short) };
  }
  return fmtCache;
}

// Times are UTC epoch seconds on the wire and shown in the site's timezone, not the laptop's.
export function fmtTime(ts) {
  if (ts === null || ts === undefined) return '—';
  return fmt().full.format(new Date(ts * 1000));
}

export function fmtClock(ts) {
  return ts ? fmt().short.format(new Date(ts * 1000)) : '—';
}

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, seconds);
  if (s < 90) return t('age.s', { n: Math.round(s) });
  if (s < 5400) return t('age.m', { n: Math.round(s / 60) });
  if (s < 172800) return t('age.h', { n: Math.round(s / 3600) });
  return t('age.d', { n: Math.round(s / 86400) });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'boolean') return v ? t('value.true') : t('value.false');
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000);
  return String(v);
}

export function badge(kind, text) {
  return h('span', { class: `badge badge-${kind}` }, text);
}

// A modal confirmation built on <dialog>; resolves to the form's values or null when cancelled.
export function dialog(title, body, okLabel) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h3', {}, title), body,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', 'data-act': 'cancel', onclick: () => { dlg.close(); } }, t('common.cancel')),
        h('button', { type: 'submit', class: 'primary', 'data-act': 'ok', value: 'ok' }, okLabel || t('common.ok'))));
    const dlg = h('dialog', { class: 'dialog' }, form);
    document.body.append(dlg);
    dlg.addEventListener('close', () => {
      const ok = dlg.returnValue === 'ok';
      const values = Object.fromEntries(new FormData(form).entries());
      dlg.remove();
      resolve(ok ? values : null);
    });
    dlg.showModal();
  });
}

export function errorBox(err) {
  const msg = err instanceof ApiError ? `${err.body.title || ''}${err.body.detail ? ': ' + err.body.detail : ''}` : String(err);
  return h('div', { class: 'error', role: 'alert' }, msg || t('common.error'));
}

export function table(headers, rows, attrs) {
  return h('table', attrs || {},
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows));
}
