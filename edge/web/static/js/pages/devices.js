// Devices: every device with its state, how long it has been in it, restarts and last error.
import { api, badge, fmt, h, inBackground, t, table } from '../core.js';

const CLS = { online: 'ok', degraded: 'warn', offline: 'bad', starting: 'info', stopped: 'muted' };

export async function render(view) {
  view.append(h('h1', {}, t('devices.title')));
  const holder = h('div');
  view.append(holder);
  async function refresh() {
    const { devices } = await api('GET', '/api/v1/devices');
    const now = Date.now() / 1000;
    holder.replaceChildren(table(
      [t('devices.device'), t('devices.driver'), t('devices.state'), t('devices.since'), t('devices.restarts'), t('devices.lastError')],
      devices.map((d) => h('tr', { 'data-device': d.id },
        h('td', {}, h('a', { href: `/devices/${encodeURIComponent(d.id)}` }, d.id), d.name ? h('div', { class: 'sub' }, d.name) : null),
        h('td', { translate: 'no' }, d.driver + (d.profile ? ` / ${d.profile}` : '')),
        h('td', {}, badge(CLS[d.health.state] || 'muted', t('state.' + d.health.state))),
        h('td', { class: 'duration', title: fmt().dateTime(d.health.since) }, fmt().duration(now - d.health.since)),
        h('td', {}, fmt().number(d.restarts, 0)),
        h('td', { class: 'err-text' }, d.last_error || ''))),
      { class: 'devices' }));
  }
  await refresh();
  const timer = setInterval(() => inBackground(refresh).catch(() => {}), 5000);
  return () => clearInterval(timer);
}
