#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server on 127.0.0.1 for the studio's tests
# (installed from Debian if missing) and prints the URL to use. Idempotent:
# a server already answering on the port is reused.
set -euo pipefail
PORT="${LABELSCOPE_PG_PORT:-54329}"
DIR="${LABELSCOPE_PG_DIR:-/tmp/labelscope-pg}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
# PostgreSQL refuses to run as root: run it as the postgres user then.
AS=""; [ "$(id -u)" -eq 0 ] && AS="runuser -u postgres --"
if ! $AS "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  rm -rf "$DIR"
  mkdir -p "$DIR"
  [ -n "$AS" ] && chown postgres "$DIR"
  $AS "$BIN/initdb" -D "$DIR/data" -A trust -U labelscope >/dev/null
  $AS "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off" start >/dev/null
fi
echo "postgres://labelscope@127.0.0.1:$PORT/postgres"
