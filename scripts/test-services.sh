#!/usr/bin/env bash
# Makes PostgreSQL and Redis available for roomfeed's tests on loopback
# (and Chromium, nginx and Flask-SocketIO installed for the other tests):
# uses the running ones when reachable, else starts the installed ones, else
# installs them with apt-get (root only), else fails with a clear message.
# Tests isolate themselves (own schema, own Redis key prefix), so a shared
# server is fine. Prints the URLs the tests use.
set -euo pipefail

PGHOST=127.0.0.1 PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
PG_URL=${ROOMFEED_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:${PGPORT}/test?sslmode=disable}
REDIS_URL=${ROOMFEED_TEST_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT}/0}

say() { echo "test-services: $*" >&2; }
root() { [ "$(id -u)" = 0 ]; }

pg_up() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h "$PGHOST" -p "$PGPORT"
  else
    (exec 3<>"/dev/tcp/$PGHOST/$PGPORT") 2>/dev/null
  fi
}
redis_up() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null
  fi
}
wait_for() { # name check
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  say "$1 did not come up"; return 1
}
apt_install() {
  root || { say "cannot install $* without root; install them or set ROOMFEED_TEST_POSTGRES_URL / ROOMFEED_TEST_REDIS_URL"; exit 1; }
  say "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  pg_up && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  say "starting PostgreSQL $ver"
  if root; then
    # A freshly installed cluster asks for passwords on TCP; tests on this
    # throwaway machine connect over loopback with trust, as documented.
    local hba=/etc/postgresql/$ver/main/pg_hba.conf
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  else
    pg_ctlcluster "$ver" main start || true
  fi
  wait_for PostgreSQL pg_up
  if root && command -v psql >/dev/null; then
    su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 ||
      su postgres -c "createdb test"
  fi
}

ensure_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting Redis on 127.0.0.1:$REDIS_PORT (no persistence)"
  mkdir -p /tmp/roomfeed-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/roomfeed-redis --logfile /tmp/roomfeed-redis/redis.log
  wait_for Redis redis_up
}

# The browser tests' Chromium, the proxy test's nginx and the Socket.IO
# guide's Flask-SocketIO (web/scripts/guide-snippets.mjs): installed when
# missing and root, else the tests that need them say so.
ensure_tools() {
  local need=()
  command -v chromium >/dev/null || need+=(chromium)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  /usr/bin/python3 -c 'import flask_socketio' 2>/dev/null || need+=(python3-flask-socketio)
  if [ ${#need[@]} -gt 0 ]; then
    if root; then apt_install "${need[@]}"; else say "missing ${need[*]}: the tests that need them will fail; install them"; fi
  fi
}

ensure_tools
if [ -z "${ROOMFEED_TEST_POSTGRES_URL:-}" ]; then ensure_postgres; fi
if [ -z "${ROOMFEED_TEST_REDIS_URL:-}" ]; then ensure_redis; fi
echo "ROOMFEED_TEST_POSTGRES_URL=$PG_URL"
echo "ROOMFEED_TEST_REDIS_URL=$REDIS_URL"
