#!/bin/sh
# Create a virtualenv with pip, on a fresh Debian/Ubuntu too (where `python3 -m venv` needs the
# python3-venv package): installs it as root (or with passwordless sudo); otherwise builds the
# venv without pip and bootstraps pip from its wheel on PyPI.
set -eu
VENV=${1:-.venv}
PY=${PYTHON:-python3}

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: $PY not found; install Python 3.11 or newer" >&2; exit 1
fi
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "error: Python 3.11+ is required ($("$PY" --version 2>&1) found)" >&2; exit 1; }

[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1 && exit 0
rm -rf "$VENV"
if "$PY" -m venv "$VENV" 2>/dev/null; then exit 0; fi
rm -rf "$VENV"

ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing python$ver-venv with apt-get" >&2
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "python$ver-venv" >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
  if "$PY" -m venv "$VENV" 2>/dev/null; then exit 0; fi
  rm -rf "$VENV"
fi

echo "python3-venv is not available; creating the venv without pip and bootstrapping pip from PyPI" >&2
"$PY" -m venv --without-pip "$VENV"
"$VENV/bin/python" - <<'PYEOF'
import json, os, subprocess, sys, tempfile, urllib.request
meta = json.load(urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60))
wheel = next(f for f in meta["urls"] if f["filename"].endswith(".whl"))
path = os.path.join(tempfile.mkdtemp(), wheel["filename"])
urllib.request.urlretrieve(wheel["url"], path)
subprocess.check_call([sys.executable, path + "/pip", "install", "--quiet", path])
PYEOF
