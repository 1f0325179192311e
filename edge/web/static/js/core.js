// Shared plumbing of the UI: translations (the UI's catalogue and the server messages'), the API
// client (with the session's CSRF token), problem responses in the reader's language, DOM helpers.
// Formatting is format.js's; the fmt* names here are kept for the pages that import them.
// No framework, no build step.
import { createFormat } from './format.js';

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

// The UI's catalogue and the server messages' (problem+json `message_key`s), in one lookup; a
// key both define keeps the UI's text. A messages file that does not load leaves the problem's
// own `detail` to be shown.
export async function loadLang(lang) {
  const [ui, messages] = await Promise.all([
    fetch(`/static/i18n/${lang}.json`).then((r) => r.json()),
    fetch(`/static/i18n/messages.${lang}.json`).then((r) => (r.ok ? r.json() : {})).catch(() => ({})),
  ]);
  state.cat = { ...messages, ...ui };
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
    super(problemText(body, status));
    this.status = status;
    this.body = body || {};
  }
}

// A page's own periodic refresh is not the user's activity: the server does not count it toward
// keeping the session alive (a tab left open still ends at the idle timeout). `api(..., {background:
// true})` marks one call; `inBackground(fn)` marks every call `fn` starts before its first await.
let backgroundDepth = 0;

export function inBackground(fn) {
  backgroundDepth += 1;
  try { return fn(); } finally { backgroundDepth -= 1; }
}

export async function api(method, path, body, opts = {}) {
  const headers = {};
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  if (method === 'GET' && (opts.background || backgroundDepth > 0)) headers['X-Edge-Background'] = '1';
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

let formatCache = null;

// The formatter of the page's language and the site's timezone (times are UTC epoch seconds on
// the wire and shown in the site's zone, not the laptop's).
export function fmt() {
  if (!formatCache || formatCache.lang !== state.lang || formatCache.timeZone !== state.site.timezone) {
    formatCache = createFormat({ lang: state.lang, timeZone: state.site.timezone || 'UTC', t });
  }
  return formatCache;
}

export const fmtTime = (ts) => fmt().dateTime(ts);
export const fmtClock = (ts) => fmt().clock(ts);
// how long ago, from a number of seconds elapsed
export const fmtAge = (seconds) => (seconds === null || seconds === undefined ? '—' : fmt().fromNow(-Math.max(0, seconds)));
export const fmtBytes = (n) => fmt().bytes(n);
export const fmtValue = (v, point) => fmt().value(v, point);

// A problem+json answer in the reader's language: its `message_key` and `args` from the
// catalogue, else the server's own title and detail.
export function problemText(body, status) {
  const b = body || {};
  if (typeof b.message_key === 'string' && state.cat[b.message_key] !== undefined) {
    return t(b.message_key, b.args && typeof b.args === 'object' ? b.args : undefined);
  }
  const text = [b.title, b.detail].filter(Boolean).join(': ');
  return text || (status ? t('common.httpError', { status }) : t('common.error'));
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

// The signed-in user's own password, changed with the current one: this session stays (with the
// CSRF token the answer gives), the user's other sessions end. The answer ({ok, status, data}),
// or null when the dialog was cancelled.
export async function changeOwnPassword() {
  const v = await dialog(t('password.title'), h('div', {},
    h('label', {}, t('password.old'), h('input', { name: 'old', type: 'password', required: true, autocomplete: 'current-password' })),
    h('label', {}, t('password.new'), h('input', { name: 'new', type: 'password', required: true, minlength: 10, autocomplete: 'new-password' }))),
  t('password.submit'));
  if (!v) return null;
  const res = await api('POST', '/api/v1/auth/password', v, { allowError: true });
  if (res.ok) state.csrf = res.data.csrf;
  return res;
}

// An error box for an ApiError, a problem body ({status, data} of an allowError call) or anything else.
export function errorBox(err) {
  let msg;
  if (err instanceof ApiError) msg = problemText(err.body, err.status);
  else if (err && typeof err === 'object' && 'status' in err && 'data' in err) msg = problemText(typeof err.data === 'object' ? err.data : { detail: err.data }, err.status);
  else msg = String(err && err.message ? err.message : err);
  return h('div', { class: 'error', role: 'alert' }, msg || t('common.error'));
}

// A table whose cells carry their column's header (data-label): on a narrow screen the CSS
// turns each row into a card that labels its values.
export function table(headers, rows, attrs) {
  const body = h('tbody', {}, rows);
  for (const tr of body.children) {
    [...tr.children].forEach((td, i) => { if (headers[i] && !td.dataset.label) td.dataset.label = headers[i]; });
  }
  return h('table', { ...(attrs || {}), class: `${(attrs && attrs.class) || ''} cards`.trim() },
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    body);
}

// The page's "nothing here" line, in place of an empty table.
export function tableOrNone(headers, rows, noneText, attrs) {
  return rows.length ? table(headers, rows, attrs) : h('p', { class: 'hint none' }, noneText);
}
