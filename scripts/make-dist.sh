#!/bin/sh
# Build the offline bundle: one tarball with the project's wheel, a wheel of every dependency (all
# driver extras) for one Python and one architecture, and deploy/install.sh to install it with no
# network:  deploy/install.sh --from community-edge-VERSION-cpXY-ARCH.tar.gz
#
#   scripts/make-dist.sh                         # this machine's Python and architecture
#   PLATFORM=manylinux2014_aarch64 PYVER=3.11 scripts/make-dist.sh   # another architecture
#
# The build needs the package registry (pip's index); the gateway that installs it does not.
# For another architecture only binary wheels can be used (nothing is compiled for it here): a
# dependency without one is named and the build fails.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=${DIST:-$ROOT/build/dist}
EXTRAS=${EXTRAS:-all}
PLATFORM=${PLATFORM:-}
PYVER=${PYVER:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}

VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("'"$ROOT"'/pyproject.toml", "rb"))["project"]["version"])')
TAG=cp$(echo "$PYVER" | tr -d .)
if [ -n "$PLATFORM" ]; then
  ARCH=$(echo "$PLATFORM" | sed 's/^[a-z]*[0-9_]*_\(x86_64\|aarch64\|armv7l\)$/\1/')
else
  ARCH=$(uname -m)
fi
NAME=community-edge-$VERSION-$TAG-$ARCH
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/$NAME
mkdir -p "$STAGE/wheels" "$OUT"

# the project's own wheel (pure Python: the same for every architecture)
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/project" "$ROOT"
WHEEL=$(ls "$WORK"/project/community_edge-*.whl)
cp "$WHEEL" "$STAGE/wheels/"
REQ="$WHEEL[$EXTRAS]"
[ -n "$EXTRAS" ] || REQ=$WHEEL

if [ -z "$PLATFORM" ]; then
  # binary wheels where the registry has them; a pure-Python sdist is built into a wheel here
  "$PY" -m pip wheel --quiet --prefer-binary --wheel-dir "$STAGE/wheels" "$REQ"
else
  if ! "$PY" -m pip download --quiet --only-binary=:all: --platform "$PLATFORM" \
      --python-version "$PYVER" --implementation cp --dest "$STAGE/wheels" "$REQ" 2>"$WORK/err"; then
    cat "$WORK/err" >&2
    echo "error: the registry has no $PLATFORM wheel for Python $PYVER of the dependency named above" >&2
    exit 1
  fi
fi

install -m 0755 "$ROOT/deploy/install.sh" "$STAGE/install.sh"
mkdir -p "$STAGE/deploy"
cp -a "$ROOT/deploy/systemd" "$ROOT/deploy/sites" "$STAGE/deploy/"
cat > "$STAGE/BUNDLE" <<EOF
version=$VERSION
python=$PYVER
arch=$ARCH
extras=$EXTRAS
EOF
(cd "$STAGE" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS)
tar -C "$WORK" -czf "$OUT/$NAME.tar.gz.partial" "$NAME"
mv "$OUT/$NAME.tar.gz.partial" "$OUT/$NAME.tar.gz"
echo "$OUT/$NAME.tar.gz: $(ls "$STAGE/wheels" | wc -l) wheels, $(du -h "$OUT/$NAME.tar.gz" | cut -f1)"
