#!/usr/bin/env bash
# Project export: cairn against the shell loop the platform's guides give
# (`kubectl api-resources --namespaced --verbs=list -o name` + one `kubectl get -o yaml` per
# type), on the same test API server (tests/src/kube.rs) in the same run.
#
#   bash bench/project.sh            (N=10000 objects: ConfigMaps and Secrets, 400 Deployments,
#                                     200 Services)
#
# Environment: N (objects), CAIRN_BIN, KUBE_TEST_SERVER (default: $CARGO_TARGET_DIR or
# target, debug/…; build them with `cargo build -p cairn -p cairn-e2e --bin kube-test-server`).
# Prints a markdown table on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-10000}
T=${CARGO_TARGET_DIR:-$ROOT/target}
CAIRN=${CAIRN_BIN:-$T/debug/cairn}
SERVER=${KUBE_TEST_SERVER:-$T/debug/kube-test-server}
W=$(mktemp -d)
SPID=
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
log() { printf '[project bench %s] %s\n' "$(date +%T)" "$*" >&2; }

cd "$W"
"$SERVER" --objects "$N" --namespace bench >url &
SPID=$!
for _ in $(seq 100); do [ -s url ] && break; sleep 0.1; done
URL=$(cat url)
export KUBECONFIG=$W/kubeconfig
requests() { curl -s "$URL/_stats" | sed 's/.*"requests":\([0-9]*\).*/\1/'; }
# measure NAME CMD…: wall seconds, peak RSS (KiB) and requests of one run.
measure() {
  local name=$1; shift
  local r0; r0=$(requests)
  /usr/bin/time -f '%e %M' -o "$W/$name.time" "$@" >"$W/$name.log" 2>&1
  echo "$(cat "$W/$name.time") $(( $(requests) - r0 - 0 ))" >"$W/$name.m"
}
field() { cut -d' ' -f"$2" "$W/$1.m"; }

log "kubectl loop, run 1"
loop='mkdir -p "$1"; for t in $(kubectl api-resources --namespaced --verbs=list -o name); do kubectl get "$t" -n bench -o yaml >"$1/$t.yaml"; done'
measure loop1 bash -c "$loop" _ "$W/loop1"
measure loop2 bash -c "$loop" _ "$W/loop2"
loop_bytes=$(du -sb "$W/loop1" | cut -f1)
tar -czf "$W/loop1.tar.gz" -C "$W" loop1
loop_gz=$(stat -c %s "$W/loop1.tar.gz")

log "cairn, runs 1 and 2"
"$CAIRN" key generate -o "$W/id.txt" >/dev/null 2>&1
"$CAIRN" init -r "$W/repo" --recipients-file <(grep -o 'age1.*' "$W/id.txt") >/dev/null
export CAIRN_REPO=$W/repo CAIRN_IDENTITY=$W/id.txt
b0=$(du -sb "$W/repo" | cut -f1)
measure cairn1 "$CAIRN" backup project bench
b1=$(( $(du -sb "$W/repo" | cut -f1) - b0 ))
measure cairn2 "$CAIRN" backup project bench
b2=$(( $(du -sb "$W/repo" | cut -f1) - b0 ))
objects=$(grep -o 'saved: [0-9]* files\?' "$W/cairn1.log" | grep -o '[0-9]*')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
echo "Project export, $N objects served ($objects stored by cairn), test API server on 127.0.0.1"
echo
echo "| metric | cairn | kubectl loop | cairn/loop |"
echo "|---|---:|---:|---:|"
echo "| first run wall time, s | $(field cairn1 1) | $(field loop1 1) | $(ratio "$(field cairn1 1)" "$(field loop1 1)") |"
echo "| unchanged second run wall time, s | $(field cairn2 1) | $(field loop2 1) | $(ratio "$(field cairn2 1)" "$(field loop2 1)") |"
echo "| API requests per run | $(field cairn1 3) | $(field loop1 3) | $(ratio "$(field cairn1 3)" "$(field loop1 3)") |"
echo "| bytes stored, first run | $b1 (encrypted repository) | $loop_bytes YAML ($loop_gz as tar.gz) | $(ratio "$b1" "$loop_gz") of tar.gz |"
echo "| bytes added, unchanged second run | $((b2 - b1)) | $loop_bytes ($loop_gz) | $(ratio "$((b2 - b1))" "$loop_gz") |"
echo "| peak RSS, MiB | $(( $(field cairn1 2) / 1024 )) | $(( $(field loop1 2) / 1024 )) (largest kubectl) | $(ratio "$(field cairn1 2)" "$(field loop1 2)") |"
