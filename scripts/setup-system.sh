#!/bin/sh
# System tools the test suite uses. Installs the missing ones with apt-get when it can (root, or
# passwordless sudo); otherwise says which are missing — those tests then skip (or fail under CI=true).
set -u
# tool:debian-package
TOOLS="socat:socat influxd:influxdb chromium:chromium mbpoll:mbpoll systemd-analyze:systemd openssl:openssl dbus-daemon:dbus ffmpeg:ffmpeg promtool:prometheus mosquitto:mosquitto mosquitto_passwd:mosquitto mosquitto_sub:mosquitto-clients"
# BLE tests run python-dbusmock's bluez5 template with the system Python, beside the venv
PYMODULES="dbusmock:python3-dbusmock gi:python3-gi"
# RTSP camera tests serve video with GStreamer's RTSP server from the system Python (PyGObject)
TYPELIBS="GstRtspServer-1.0:gir1.2-gst-rtsp-server-1.0"
GST_ELEMENTS="videotestsrc:gstreamer1.0-plugins-base rtph264pay:gstreamer1.0-plugins-good x264enc:gstreamer1.0-plugins-ugly"
FONTS_PKG=fonts-noto-cjk   # zh-CN screenshots need CJK glyphs

missing=""
for pair in $TOOLS; do
  tool=${pair%%:*}; pkg=${pair#*:}
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $pkg"
done
for pair in $PYMODULES; do
  mod=${pair%%:*}; pkg=${pair#*:}
  /usr/bin/python3 -c "import $mod" >/dev/null 2>&1 || missing="$missing $pkg"
done
for pair in $TYPELIBS; do
  lib=${pair%%:*}; pkg=${pair#*:}
  /usr/bin/python3 -c "import gi; gi.require_version('${lib%-*}', '${lib##*-}'); from gi.repository import ${lib%-*}" \
    >/dev/null 2>&1 || missing="$missing $pkg"
done
for pair in $GST_ELEMENTS; do
  element=${pair%%:*}; pkg=${pair#*:}
  /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('$element')" \
    >/dev/null 2>&1 || missing="$missing $pkg"
done
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${Status}' "$FONTS_PKG" 2>/dev/null | grep -q "ok installed" || missing="$missing $FONTS_PKG"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: missing system packages:$missing — tests that need them will skip (fail under CI=true)." >&2
  echo "      install them with: sudo apt-get install$missing" >&2
  exit 0
fi
echo "installing system packages for the tests:$missing" >&2
$SUDO apt-get update -qq >/dev/null 2>&1 || true
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 || {
  # one unavailable package must not stop the others
  for pkg in $missing; do
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 \
      || echo "note: could not install $pkg" >&2
  done
}
exit 0
