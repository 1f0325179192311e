#!/bin/sh
# Install Community Edge as a systemd service on a Debian/Raspberry Pi OS gateway.
#   sudo deploy/install.sh                    # from a checkout, every driver
#   sudo EXTRAS=modbus deploy/install.sh      # only the drivers this site uses (modbus, ble, camera)
# Installs to /opt/community-edge, a site file to /etc/community-edge/site.yaml (kept if present),
# data to /var/lib/community-edge, and the unit community-edge.service (enabled, not started
# until the site file checks clean).
set -eu
PREFIX=${PREFIX:-/opt/community-edge}
# the pip extras of the drivers to install: all, or a comma-separated list of modbus, ble, camera
EXTRAS=${EXTRAS:-all}
ETC=/etc/community-edge
SRC=$(cd "$(dirname "$0")/.." && pwd)

[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null

id community-edge >/dev/null 2>&1 || useradd --system --home-dir /var/lib/community-edge --shell /usr/sbin/nologin community-edge
# the unit's SupplementaryGroups: a group that does not exist would stop the service from starting
for group in dialout video bluetooth; do getent group "$group" >/dev/null || groupadd --system "$group"; done
mkdir -p "$PREFIX" "$ETC"
cp -a "$SRC/edge" "$SRC/drivers" "$SRC/rules" "$SRC/deploy" "$SRC/pyproject.toml" "$SRC/README.md" "$PREFIX/"
sh "$SRC/scripts/bootstrap-venv.sh" "$PREFIX/.venv"
"$PREFIX/.venv/bin/python" -m pip install --quiet --disable-pip-version-check "$PREFIX[$EXTRAS]"

if [ ! -f "$ETC/site.yaml" ]; then
  sed "s#path: .*edge.db#path: /var/lib/community-edge/edge.db#" "$SRC/deploy/sites/example-site.yaml" > "$ETC/site.yaml"
  echo "wrote $ETC/site.yaml — edit it, then: edge check -c $ETC/site.yaml"
fi
[ -f "$ETC/env" ] || { install -m 0600 /dev/null "$ETC/env"; echo "# EDGE_CENTRAL_TOKEN=..." > "$ETC/env"; }
chown -R root:community-edge "$ETC"; chmod 0750 "$ETC"

install -m 0644 "$SRC/deploy/systemd/community-edge.service" /etc/systemd/system/community-edge.service
ln -sf "$PREFIX/.venv/bin/edge" /usr/local/bin/edge
systemctl daemon-reload
systemctl enable community-edge.service
if "$PREFIX/.venv/bin/edge" check -q -c "$ETC/site.yaml"; then
  systemctl restart community-edge.service && echo "community-edge is running: journalctl -u community-edge -f"
else
  echo "fix the site file above, then: systemctl start community-edge" >&2
fi
