# shellcheck shell=bash
# Start/stop a throwaway redis-server on 127.0.0.1:<a free port> for the stream tests.
# The tests that restart or kill Redis start servers of their own (tests/redis_support.py).
REDIS_DIR=${REDIS_DIR:-/tmp/himari-l3-ci-redis}

start_redis() {
  rm -rf "$REDIS_DIR"
  mkdir -p "$REDIS_DIR"
  REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" --save "" \
    --appendonly no --daemonize yes --pidfile "$REDIS_DIR/redis.pid" \
    --logfile "$REDIS_DIR/redis.log"
  for _ in $(seq 100); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null
  export HIMARI_L3_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  echo "== Redis up at 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
  if [ -f "$REDIS_DIR/redis.pid" ]; then
    kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null || true
  fi
}
