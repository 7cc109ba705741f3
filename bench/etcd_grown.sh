#!/usr/bin/env bash
# A real etcd database of a given size, made once and kept: a real etcd (Debian's) in a
# temporary data directory is grown with `bench/etcd_series.py grow` and saved with
# `etcdctl snapshot save` (with its sha256 trailer). Used by drill.sh and memory_large.sh.
#
#   bash bench/etcd_grown.sh DB MB SEED LOG
#
# DB is written only when complete (DB.tmp first); if it exists already nothing is done.
# Progress and etcd's own log go to LOG. Takes minutes per GB.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DB=$1 MB=$2 SEED=$3 LOG=$4
[[ -s $DB ]] && exit 0
[[ $MB =~ ^[0-9]+$ && $MB -ge 10 ]] || { echo "etcd_grown.sh: MB must be a number of MB (at least 10)" >&2; exit 2; }
for b in python3 curl etcd etcdctl; do command -v "$b" >/dev/null || { echo "etcd_grown.sh: $b not found" >&2; exit 2; }; done
export ETCDCTL_API=3
unset ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DATADIR=$(mktemp -d "$(dirname "$DB")/etcd-grow.XXXXXX")
ETCD_PID=""
cleanup() {
    [[ -z $ETCD_PID ]] || { kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; }
    rm -rf "$DATADIR" "$DB.tmp"
}
trap cleanup EXIT
cp=$(free_port)
pp=$(free_port)
etcd --name grow --data-dir "$DATADIR/etcd" --logger zap --log-level warn --quota-backend-bytes 8000000000 \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "grow=http://127.0.0.1:$pp" >>"$LOG" 2>&1 &
ETCD_PID=$!
for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$cp/health" 2>/dev/null | grep -q '"health":"true"' && break
    sleep 0.2
done
python3 "$ROOT/bench/etcd_series.py" grow --endpoint "http://127.0.0.1:$cp" \
    --target-bytes "${MB}e6" --seed "$SEED" >/dev/null 2>>"$LOG"
etcdctl --endpoints "http://127.0.0.1:$cp" snapshot save "$DB.tmp" >>"$LOG" 2>&1
mv "$DB.tmp" "$DB"
