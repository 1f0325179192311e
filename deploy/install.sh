#!/bin/sh
# Install Community Edge as a systemd service on a Debian/Raspberry Pi OS gateway.
#   sudo deploy/install.sh                    # from a checkout, every driver (pip needs network)
#   sudo EXTRAS=modbus deploy/install.sh      # only the drivers this site uses (modbus, ble, camera)
#   sudo ./install.sh --from community-edge-VERSION-cpXY-ARCH.tar.gz   # offline, from `make dist`
# Installs to /opt/community-edge, a site file to /etc/community-edge/site.yaml (kept if present),
# data to /var/lib/community-edge, and the unit community-edge.service (enabled, not started
# until the site file checks clean as the service reads it: as its user, with the variables of
# /etc/community-edge/env, where every token_env: the site names must be set). Files already in
# /etc/community-edge keep their owner and mode.
#
# --from BUNDLE installs with no network (pip --no-index from the bundle's wheels) into its own
# venv, PREFIX/versions/VERSION-SUM/venv; PREFIX/current points at the one in use and
# PREFIX/.venv at current/venv, so the unit's paths never change. Upgrading a running gateway:
# back up its data (edge backup), switch `current`, restart, and wait for the health gate
# (`edge status`: /healthz answers for this site, and with HEALTH_TOKEN_FILE every device started
# and none crash-looping). A gateway that fails the gate is rolled back: `current` points at the
# previous version again, the backup is restored, the service restarted. The backup is taken
# whenever the site has a journal, the service running or stopped (a stopped one is started for
# the gate). The same bundle twice changes nothing ("unchanged", exit 0). The two newest versions
# are kept, and the KEEP_BACKUPS newest backups (each a copy of the whole journal, personal data
# included): older ones are deleted after a healthy upgrade. A version older than the installed
# one is refused (a newer version's data may not be readable by it) unless ALLOW_DOWNGRADE=1.
#
# Settings (environment): PREFIX, ETC (site file's folder), EXTRAS, and for a gateway without
# systemd (a container, a test) SERVICE=none with START_CMD / STOP_CMD (shell commands; the
# default is systemctl), HEALTH_TIMEOUT (seconds, default 90), HEALTH_TOKEN_FILE, KEEP_BACKUPS
# (pre-upgrade backups to keep, default 2), ALLOW_DOWNGRADE=1 to install an older version, and
# SITE_EXAMPLE=no to write no example site file when there is none (the Ansible role renders it).
set -eu
PREFIX=${PREFIX:-/opt/community-edge}
# the pip extras of the drivers to install: all, or a comma-separated list of modbus, ble, camera
EXTRAS=${EXTRAS:-all}
ETC=${ETC:-/etc/community-edge}
SERVICE=${SERVICE:-systemd}
START_CMD=${START_CMD:-systemctl restart community-edge.service}
STOP_CMD=${STOP_CMD:-systemctl stop community-edge.service}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-90}
HEALTH_TOKEN_FILE=${HEALTH_TOKEN_FILE:-}
# the pre-upgrade backups kept in PREFIX/backups (a journal's copy each: on an SD card they would
# fill it, and they would keep personal data past privacy.retention)
KEEP_BACKUPS=${KEEP_BACKUPS:-2}
ALLOW_DOWNGRADE=${ALLOW_DOWNGRADE:-0}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=
while [ $# -gt 0 ]; do
  case $1 in
    --from) [ $# -ge 2 ] || { echo "error: --from needs the bundle's path (a .tar.gz from make dist)" >&2; exit 2; }
            BUNDLE=$2; shift 2 ;;
    --from=*) BUNDLE=${1#--from=}; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (accepted: --from BUNDLE)" >&2; exit 2 ;;
  esac
done
case $KEEP_BACKUPS in
  *[!0-9]*) echo "error: KEEP_BACKUPS=$KEEP_BACKUPS: the number of pre-upgrade backups to keep is a whole number (0 or more; default 2)" >&2; exit 2 ;;
esac
case $ALLOW_DOWNGRADE in
  0|1) ;;
  *) echo "error: ALLOW_DOWNGRADE=$ALLOW_DOWNGRADE: 1 installs a version older than the installed one, 0 (the default) refuses it" >&2; exit 2 ;;
esac

log() { echo "install.sh: $*" >&2; }

system_setup() {
  # the service user, its groups, the unit: once per machine, only with systemd
  [ "$SERVICE" = systemd ] || return 0
  [ "$(id -u)" = 0 ] || { echo "run as root (sudo $0), or SERVICE=none for a prefix of your own" >&2; exit 1; }
  id community-edge >/dev/null 2>&1 || useradd --system --home-dir /var/lib/community-edge --shell /usr/sbin/nologin community-edge
  # the unit's SupplementaryGroups: a group that does not exist would stop the service from starting
  # (unindented: tests/core/test_deploy.py runs this line on its own)
for group in dialout video bluetooth; do getent group "$group" >/dev/null || groupadd --system "$group"; done
}

site_file() {
  # $1: the folder holding deploy/sites/example-site.yaml. Only what this makes gets its owner
  # and mode here: the folder and the example site file. The operator's files in it keep theirs
  # (a master key or token file given to the service user stays the service user's).
  mkdir -p "$ETC"
  if [ ! -f "$ETC/site.yaml" ] && [ "${SITE_EXAMPLE:-yes}" != no ]; then
    sed "s#path: .*edge.db#path: /var/lib/community-edge/edge.db#" "$1/deploy/sites/example-site.yaml" > "$ETC/site.yaml"
    if [ "$SERVICE" = systemd ]; then chown root:community-edge "$ETC/site.yaml"; chmod 0640 "$ETC/site.yaml"; fi
    echo "wrote $ETC/site.yaml — edit it, then: edge check -c $ETC/site.yaml"
  fi
  # the unit's EnvironmentFile: systemd reads it as root, the service user never does
  [ -f "$ETC/env" ] || { install -m 0600 /dev/null "$ETC/env"; echo "# EDGE_CENTRAL_TOKEN=..." > "$ETC/env"; }
  if [ "$SERVICE" = systemd ]; then chown root:community-edge "$ETC"; chmod 0750 "$ETC"; fi
}

as_service() (
  # run "$@" as the unit runs ExecStartPre: with the variables of $ETC/env (its EnvironmentFile:
  # NAME=value lines, the value quoted or not, # and ; comments), and with SERVICE=systemd as its
  # user, in an environment of that file alone (a root shell's variables and access would hide
  # what the service lacks)
  [ "$SERVICE" != systemd ] || set -- setpriv --reuid=community-edge --regid=community-edge --init-groups "$@"
  if [ -f "$ETC/env" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      line=$(printf '%s' "$line" | sed 's/^[[:space:]]*//')
      case $line in [A-Za-z_]*=*) ;; *) continue ;; esac
      name=$(printf '%s' "${line%%=*}" | sed 's/[[:space:]]*$//')
      value=$(printf '%s' "${line#*=}" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
      case $value in \"*\") value=${value#\"}; value=${value%\"} ;; \'*\') value=${value#\'}; value=${value%\'} ;; esac
      set -- "$name=$value" "$@"
    done < "$ETC/env"
  fi
  if [ "$SERVICE" = systemd ]; then
    # and the unit's own Environment= (its drop-ins too), before the file's, which win as in systemd
    units=$(systemctl show -p Environment --value community-edge.service 2>/dev/null | xargs -n1 2>/dev/null) || units=""
    if [ -n "$units" ]; then
      while IFS= read -r pair; do
        case $pair in [A-Za-z_]*=*) set -- "$pair" "$@" ;; esac
      done <<EOF_UNIT_ENV
$units
EOF_UNIT_ENV
    fi
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
  fi
  exec env "$@"
)

check_site() {
  # $1: the venv. `edge check` of the site file as the service will start; a variable the site
  # names for a secret (token_env: and the like) that the service's environment does not set is
  # an error here, for `edge run` would exit at every start
  as_service "$1/bin/edge" check -q -c "$ETC/site.yaml" || return 1
  as_service "$1/bin/python" -c 'import sys
from edge.commands import env_warnings
from edge.config import load_site
sys.exit(1 if env_warnings(load_site(sys.argv[1])) else 0)' "$ETC/site.yaml" 2>/dev/null && return 0
  echo "error: $ETC/site.yaml names environment variables (above) that the service's environment does not set: set them in $ETC/env (NAME=value, one a line)" >&2
  return 1
}

unit() {
  # $1: the folder holding deploy/systemd/community-edge.service
  [ "$SERVICE" = systemd ] || return 0
  install -m 0644 "$1/deploy/systemd/community-edge.service" /etc/systemd/system/community-edge.service
  ln -sf "$PREFIX/.venv/bin/edge" /usr/local/bin/edge
  systemctl daemon-reload
  systemctl enable community-edge.service
}

bytecode() {
  # $1: the venv. The unit runs the service with PYTHONOPTIMIZE=2 (docstrings and asserts left out
  # of the loaded code: 2.2 MB less resident on a small site) and PYTHONPYCACHEPREFIX=VENV/pycache;
  # under ProtectSystem=strict it cannot write bytecode, so every module it may import, the
  # standard library's too, is compiled at that level here, into the venv's own cache (a version
  # and its bytecode come and go together). A failure costs only memory: the service then
  # compiles in memory what it imports.
  stdlib=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # the standard library without the base interpreter's own site-packages (the venv has its own)
  { PYTHONPYCACHEPREFIX="$1/pycache" "$1/bin/python" -m compileall -q -j 0 -o 2 \
      -x '/(test|tests|idlelib|tkinter|turtledemo|lib2to3|ensurepip|site-packages|dist-packages)/' "$stdlib" &&
    PYTHONPYCACHEPREFIX="$1/pycache" "$1/bin/python" -m compileall -q -j 0 -o 2 -x '/(test|tests)/' "$site"
  } >/dev/null || log "compiling the bytecode for PYTHONOPTIMIZE=2 failed: the service will compile it in memory at each start"
}

# ---------------------------------------------------------------- from a checkout (needs network)
if [ -z "$BUNDLE" ]; then
  [ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
  command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  system_setup
  mkdir -p "$PREFIX"
  cp -a "$SRC/edge" "$SRC/drivers" "$SRC/rules" "$SRC/deploy" "$SRC/pyproject.toml" "$SRC/README.md" "$PREFIX/"
  sh "$SRC/scripts/bootstrap-venv.sh" "$PREFIX/.venv"
  "$PREFIX/.venv/bin/python" -m pip install --quiet --disable-pip-version-check "$PREFIX[$EXTRAS]"
  bytecode "$PREFIX/.venv"
  site_file "$SRC"
  unit "$SRC"
  if ! check_site "$PREFIX/.venv"; then
    echo "fix the site file or $ETC/env (above), then: systemctl start community-edge" >&2
    exit 0
  fi
  # Type=notify: the restart returns once the gateway is ready, or fails when it exits first
  if systemctl restart community-edge.service && systemctl is-active --quiet community-edge.service; then
    echo "community-edge is running: journalctl -u community-edge -f"
    exit 0
  fi
  echo "error: community-edge.service did not start: journalctl -u community-edge -n 50" >&2
  exit 1
fi

# ---------------------------------------------------------------- from an offline bundle
[ -f "$BUNDLE" ] || { echo "error: $BUNDLE: no such bundle (build one with make dist)" >&2; exit 2; }
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "error: $PY not found; the bundle needs the system's Python 3" >&2; exit 1; }
SUM=$(sha256sum "$BUNDLE" | cut -c1-12)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
tar -xzf "$BUNDLE" -C "$WORK" || { echo "error: $BUNDLE: not a readable .tar.gz" >&2; exit 2; }
STAGE=$(ls -d "$WORK"/community-edge-*/ 2>/dev/null | head -n 1)
[ -n "$STAGE" ] && [ -f "$STAGE/BUNDLE" ] || { echo "error: $BUNDLE: not a bundle from make dist (no BUNDLE file)" >&2; exit 2; }
STAGE=${STAGE%/}
(cd "$STAGE" && sha256sum --quiet -c SHA256SUMS) || { echo "error: $BUNDLE: a file does not match SHA256SUMS; the bundle is damaged" >&2; exit 2; }
VERSION=$(sed -n 's/^version=//p' "$STAGE/BUNDLE")
WANT_PY=$(sed -n 's/^python=//p' "$STAGE/BUNDLE")
WANT_ARCH=$(sed -n 's/^arch=//p' "$STAGE/BUNDLE")
HAVE_PY=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
[ "$HAVE_PY" = "$WANT_PY" ] || { echo "error: $BUNDLE is built for Python $WANT_PY; this gateway's $PY is $HAVE_PY (build the bundle with PYVER=$HAVE_PY)" >&2; exit 2; }
[ "$(uname -m)" = "$WANT_ARCH" ] || { echo "error: $BUNDLE is built for $WANT_ARCH; this gateway is $(uname -m)" >&2; exit 2; }

ID=$VERSION-$SUM
NEW=$PREFIX/versions/$ID
PREVIOUS=
[ -L "$PREFIX/current" ] && PREVIOUS=$(readlink "$PREFIX/current")
if [ "$PREVIOUS" = "versions/$ID" ] && [ -x "$NEW/venv/bin/edge" ]; then
  echo "unchanged: community-edge $ID is installed in $PREFIX"
  exit 0
fi

older() {
  # exit 0 when version $1 comes before $2 (PEP 440: 0.9.0 < 0.10.0, 1.0rc1 < 1.0 < 1.0.post1),
  # 1 when not, 3 when either is not a version
  "$PY" - "$1" "$2" <<'EOF'
import re
import sys

def key(text):
    m = re.fullmatch(
        r"v?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?"
        r"(?:[-_.]?(?:post|rev|r)[-_.]?(\d*))?(?:[-_.]?dev[-_.]?(\d*))?(?:\+[a-z0-9.]+)?",
        text.strip().lower(),
    )
    if m is None:
        sys.exit(3)
    release = [int(n) for n in m[1].split(".")]
    while release and release[-1] == 0:
        release.pop()
    kind = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}.get(m[2], m[2])
    post, dev = m[4], m[5]
    if kind:
        pre = (0, kind, int(m[3] or 0))
    elif dev is not None and post is None:
        pre = (-1, "", 0)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (1, "", 0)
    return (release, pre, -1 if post is None else int(post or 0), float("inf") if dev is None else int(dev or 0))

sys.exit(0 if key(sys.argv[1]) < key(sys.argv[2]) else 1)
EOF
}

if [ -n "$PREVIOUS" ]; then
  # a newer version's state DB or journal may have a schema the older one cannot read (it refuses
  # to start on a newer state schema, as `edge restore` refuses such an archive)
  PREV_ID=${PREVIOUS#versions/}
  PREV_VERSION=$(sed -n 's/^version=//p' "$PREFIX/$PREVIOUS/BUNDLE" 2>/dev/null) || PREV_VERSION=
  [ -n "$PREV_VERSION" ] || PREV_VERSION=${PREV_ID%-*}
  order=0
  older "$VERSION" "$PREV_VERSION" || order=$?
  if [ "$order" != 1 ] && [ "$ALLOW_DOWNGRADE" != 1 ]; then
    if [ "$order" = 0 ]; then
      echo "error: $BUNDLE holds community-edge $VERSION, older than the installed $PREV_VERSION ($PREFIX/$PREVIOUS); nothing changed" >&2
    else
      echo "error: cannot tell whether $BUNDLE's version $VERSION is older than the installed $PREV_VERSION ($PREFIX/$PREVIOUS); nothing changed" >&2
    fi
    echo "  An older version may not read the data a newer one wrote (a state DB of a newer schema is refused at start)." >&2
    if [ -f "$PREFIX/backups/before-$PREV_ID.tar.gz" ]; then
      echo "  To go back to the data as it was before $PREV_VERSION: stop the service, restore the backup taken before that upgrade," >&2
      echo "    $PREFIX/.venv/bin/edge restore -c $ETC/site.yaml $PREFIX/backups/before-$PREV_ID.tar.gz" >&2
      echo "  (the records journaled since are kept aside in *.pre-restore), then run this again with ALLOW_DOWNGRADE=1." >&2
    else
      echo "  No backup taken before $PREV_VERSION is kept in $PREFIX/backups to go back to." >&2
    fi
    echo "  ALLOW_DOWNGRADE=1 alone installs $VERSION on the current data; an upgrade that fails its health gate is rolled back." >&2
    exit 1
  fi
  [ "$order" = 1 ] || log "installing community-edge $VERSION over $PREV_VERSION (ALLOW_DOWNGRADE=1)"
fi

system_setup
mkdir -p "$PREFIX/versions" "$PREFIX/backups"
chmod 0700 "$PREFIX/backups"  # backups hold the site's personal data
rm -rf "$NEW"
"$PY" -m venv "$NEW/venv" || { echo "error: $PY -m venv failed (Debian: apt install python3-venv)" >&2; exit 1; }
REQ=community-edge
[ -z "$EXTRAS" ] || REQ="community-edge[$EXTRAS]"
if ! "$NEW/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
    --find-links "$STAGE/wheels" "$REQ"; then
  rm -rf "$NEW"
  echo "error: installing $REQ from the bundle failed; $PREFIX is unchanged" >&2
  exit 1
fi
bytecode "$NEW/venv"
cp -a "$STAGE/deploy" "$STAGE/BUNDLE" "$NEW/"
site_file "$NEW"

running() {
  # `edge status` exits 3 when nothing answers and the journal has no writer, 2 on bad input
  [ -n "$PREVIOUS" ] || return 1
  code=0
  "$NEW/venv/bin/edge" status -c "$ETC/site.yaml" >/dev/null 2>&1 || code=$?
  [ "$code" != 3 ] && [ "$code" != 2 ]
}

healthy() {
  # the health gate: `edge status` exits 0 once the gateway answers healthy for this site
  tokenarg=
  [ -z "$HEALTH_TOKEN_FILE" ] || tokenarg="--token-file $HEALTH_TOKEN_FILE"
  deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
  while :; do
    # shellcheck disable=SC2086
    if "$PREFIX/.venv/bin/edge" status -c "$ETC/site.yaml" --json $tokenarg > "$WORK/status.json" 2>&1; then
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$WORK/status.json" >&2; return 1; }
    sleep 1
  done
}

switch() {
  # point `current` (and the unit's .venv) at $1 atomically
  ln -sfn "$1" "$PREFIX/current.new" && mv -T "$PREFIX/current.new" "$PREFIX/current"
  [ -L "$PREFIX/.venv" ] || { rm -rf "$PREFIX/.venv"; ln -s current/venv "$PREFIX/.venv"; }
}

prune_backups() {
  # the newest KEEP_BACKUPS pre-upgrade backups stay; each is a copy of the whole journal
  n=0
  removed=
  for old in $(ls -1t "$PREFIX/backups"); do
    case $old in before-*.tar.gz) ;; *) continue ;; esac
    n=$((n + 1))
    [ "$n" -gt "$KEEP_BACKUPS" ] || continue
    if rm -f "$PREFIX/backups/$old"; then removed="$removed $old"; else log "could not remove $PREFIX/backups/$old"; fi
  done
  [ -z "$removed" ] || echo "removed the pre-upgrade backups older than the newest $KEEP_BACKUPS (KEEP_BACKUPS) from $PREFIX/backups:$removed"
}

BACKUP=
NO_BACKUP=
if check_site "$NEW/venv" 2>"$WORK/check.txt"; then CHECKED=yes; else CHECKED=no; fi
RUNNING=no
if running; then
  RUNNING=yes
  if [ "$CHECKED" = no ]; then
    cat "$WORK/check.txt" >&2
    rm -rf "$NEW"
    echo "error: community-edge $VERSION refuses the live site file (above); the running version is unchanged" >&2
    exit 1
  fi
elif [ -n "$PREVIOUS" ] && [ "$CHECKED" = yes ]; then
  log "the service is not running; it is started after the upgrade for the health gate"
fi
if [ -n "$PREVIOUS" ] && [ "$CHECKED" = yes ]; then
  # backed up running or stopped (`edge backup` reads a stopped site's files as well): a rollback
  # restores it
  JOURNAL=$("$NEW/venv/bin/python" -c 'import sys; from edge.config import load_site; print(load_site(sys.argv[1]).storage.path)' \
    "$ETC/site.yaml" 2>"$WORK/journal.txt") \
    || { cat "$WORK/journal.txt" >&2; rm -rf "$NEW"; echo "error: reading the journal's path from $ETC/site.yaml failed; nothing changed" >&2; exit 1; }
  if [ "$RUNNING" = yes ] || [ -e "$JOURNAL" ]; then
    BACKUP=$PREFIX/backups/before-$ID.tar.gz
    # the new version takes it (a previous version may predate `edge backup`); copying migrates nothing
    "$NEW/venv/bin/edge" backup -c "$ETC/site.yaml" --out "$BACKUP" >&2 \
      || { rm -rf "$NEW"; echo "error: the backup before the upgrade failed; nothing changed" >&2; exit 1; }
  else
    NO_BACKUP="no backup was taken (no journal yet: $JOURNAL does not exist)"
    log "$NO_BACKUP"
  fi
fi
switch "versions/$ID"
unit "$NEW"
if [ "$CHECKED" = no ]; then
  cat "$WORK/check.txt" >&2
  echo "installed community-edge $ID in $PREFIX; fix the site file or $ETC/env (above), then start the service" >&2
  exit 0
fi
sh -c "$STOP_CMD" >/dev/null 2>&1 || true
sh -c "$START_CMD"
if healthy; then
  # keep the previous version for a rollback by hand; older ones go
  for old in $(ls -1t "$PREFIX/versions"); do
    case "versions/$old" in "versions/$ID"|"$PREVIOUS") ;; *) rm -rf "${PREFIX:?}/versions/$old" ;; esac
  done
  prune_backups
  echo "installed community-edge $ID in $PREFIX${PREVIOUS:+ (previous: $PREVIOUS)}; it answers healthy"
  exit 0
fi

log "community-edge $ID failed its health check within ${HEALTH_TIMEOUT}s"
if [ -z "$PREVIOUS" ]; then
  echo "error: the first install does not answer healthy; see its log (journalctl -u community-edge)" >&2
  exit 1
fi
sh -c "$STOP_CMD" >/dev/null 2>&1 || true
switch "$PREVIOUS"
if [ -z "$BACKUP" ]; then
  DATA="the data as the failed version left it: $NO_BACKUP"
elif "$NEW/venv/bin/edge" restore -c "$ETC/site.yaml" "$BACKUP" >&2; then
  DATA="its data from $BACKUP"
else
  DATA="the data as the failed version left it: restoring $BACKUP failed (above)"
fi
sh -c "$START_CMD"
if healthy; then
  echo "error: rolled back to $PREVIOUS and $DATA; it answers healthy" >&2
else
  echo "error: rolled back to $PREVIOUS and $DATA; it does not answer healthy either" >&2
fi
exit 1
