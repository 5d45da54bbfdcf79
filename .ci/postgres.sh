#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with a database
# named test, and prints the DSN the tests use (WARDEN_TEST_POSTGRES_DSN).
# Idempotent: on a machine where the server runs it only checks. Where the
# cluster is stopped it starts it, where PostgreSQL is missing it installs
# it (Debian), and where TCP logins need a password it sets a known one for
# the postgres role through the local socket. Progress goes to stderr.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PGCONNECT_TIMEOUT=5

# The port and cluster name can be changed to try this script on a spare
# cluster; CI uses the defaults.
host=127.0.0.1 port=${WARDEN_PG_PORT:-5432} cluster=${WARDEN_PG_CLUSTER:-main}
user=postgres password=warden-ci
log() { echo "postgres: $*" >&2; }

can_login() { # [password]
  PGPASSWORD="${1:-}" psql "host=$host port=$port user=$user dbname=postgres sslmode=disable" -Atqc 'SELECT 1' >/dev/null 2>&1
}

if ! command -v psql >/dev/null || ! command -v pg_ctlcluster >/dev/null; then
  log "installing PostgreSQL"
  apt-get update -qq >&2 || true
  apt-get install -y -qq postgresql >&2
fi

if ! pg_isready -q -h "$host" -p "$port"; then
  version=""
  for v in $(ls /etc/postgresql 2>/dev/null | sort -V); do
    [ -d "/etc/postgresql/$v/$cluster" ] && version=$v
  done
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    log "creating cluster $version/$cluster on port $port"
    pg_createcluster "$version" "$cluster" -p "$port" >&2
  fi
  log "starting cluster $version/$cluster"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >&2 || true
  for _ in $(seq 1 60); do
    pg_isready -q -h "$host" -p "$port" && break
    sleep 0.5
  done
  pg_isready -h "$host" -p "$port" >&2 || { log "server does not answer on $host:$port"; exit 1; }
fi

pass=""
if ! can_login; then
  if ! can_login "$password"; then
    # Debian's default pg_hba asks TCP clients for a password: give the
    # postgres role a known one, as the postgres OS user over the socket.
    log "setting a password for role $user"
    runuser -u postgres -- psql -p "$port" -Atqc "ALTER ROLE $user PASSWORD '$password'" >&2
  fi
  can_login "$password" || { log "cannot log in to $host:$port as $user"; exit 1; }
  pass=":$password"
fi

export PGPASSWORD="${pass#:}"
base="host=$host port=$port user=$user sslmode=disable"
if [ "$(psql "$base dbname=postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
  log "creating database test"
  psql "$base dbname=postgres" -Atqc 'CREATE DATABASE test' >&2
fi
psql "$base dbname=test" -Atqc 'SELECT 1' >/dev/null
log "ready on $host:$port, database test"
echo "postgres://$user$pass@$host:$port/test?sslmode=disable"
