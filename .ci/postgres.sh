# shellcheck shell=bash
# Start/stop a throwaway PostgreSQL cluster on 127.0.0.1:55432 for the persistence tests.
# initdb and postgres refuse to run as root, so they run as the 'postgres' system user.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${PG_PORT:-55432}
PG_DIR=${PG_DIR:-/tmp/himari-l3-ci-pg}

start_postgres() {
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  chown postgres "$PG_DIR"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust \
    --no-sync >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off" start >/dev/null
  runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres himari_l3
  export HIMARI_L3_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/himari_l3"
  echo "== PostgreSQL up at 127.0.0.1:$PG_PORT"
}

stop_postgres() {
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
}
