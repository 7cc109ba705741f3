#!/usr/bin/env bash
# Peak RSS of cairn's backup, restore, copy and check (structure) across data sizes.
#
#   bash bench/memory.sh [WORKDIR]        (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   CAIRN_BIN     cairn binary (default target/release/cairn, built if missing)
#
# Repositories (etcd backups chunk at 4 KiB pages, so blobs = pages):
#   small   etcd day 1 of bench/etcd_series.py (~190 MB, ~46,000 blobs)
#   big     the ~2 GiB file of `gen_data.py --big`, backed up as a plain file (content-defined
#           chunks; it is not a valid bbolt database, so not as an etcd snapshot)
#   month   30 daily etcd snapshots (days 1..7 of the series in turn); the measured backup,
#           restore and copy are of day 7 into / out of it
# The index's own cost per blob is fixed by its layout (44 bytes per blob, see format/SPEC.md
# §8); a 2 GB etcd database would need `etcd_series.py grow` (minutes) and is not made here.
# Each command's peak RSS comes from GNU time (-f %M). Markdown table on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
DATA=$WORK/data
SERIES=$DATA/etcd-series
RUN=$WORK/memory-run
LOGS=$WORK/logs
TOOLS=cairn
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt

unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE CAIRN_S3_ENDPOINT CAIRN_CACHE_DIR

log() { printf '[bench-memory %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }
cleanup() { [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$RUN/repos" "$RUN/out" "$RUN/stage"; }
trap cleanup EXIT

need_tools
mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN"
mkdir -p "$RUN/repos" "$RUN/stage"
: >"$RESULTS"
pin_versions
python3 "$ROOT/bench/gen_data.py" "$WORK" --big >&2 || die "data generation failed"
python3 "$ROOT/bench/etcd_series.py" series "$WORK" >/dev/null || die "etcd series generation failed"

# measure NAME CMD...: peak RSS (KB) and wall time of CMD.
measure() {
    local name=$1
    shift
    "$TIME" -f '%e %M' -o "$RUN/$name.time" "$@" >"$LOGS/memory-$name.log" 2>&1 \
        || { tail -n 20 "$LOGS/memory-$name.log" >&2; die "$name: $*"; }
    local wall rss
    read -r wall rss <"$RUN/$name.time"
    record "$name.rss_kb" "$rss"
    record "$name.wall" "$wall"
    log "$name: ${wall}s, peak RSS $((rss / 1024)) MiB"
}

out=$("$CAIRN" key generate -o "$RUN/identity.txt" 2>/dev/null)
RECIPIENT=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
[[ -n $RECIPIENT ]] || die "cairn key generate printed no recipient"
new_repo() {
    "$CAIRN" init -r "$1" --recipient "$RECIPIENT" >>"$LOGS/memory-init.log" 2>&1 || die "init $1"
}
backup_etcd() { # REPO FILE [NAME]: back FILE up as an etcd snapshot, measured if NAME is given
    local cmd=("$CAIRN" backup etcd --snapshot-file "$2" -r "$1" -i "$RUN/identity.txt" --host bench)
    if [[ -n ${3:-} ]]; then measure "$3" "${cmd[@]}"; else "${cmd[@]}" >>"$LOGS/memory-untimed.log" 2>&1 || die "backup of $2"; fi
}
stage_day() { # DAY: the day's etcd snapshot at one staging path
    cp "$SERIES/day-$1.db" "$RUN/stage/snapshot.db"
    touch "$RUN/stage/snapshot.db"
}
# the rest of a set: restore of the latest snapshot, check, copy of the latest snapshot.
rest() {
    local set=$1 repo=$RUN/repos/$1 layout=()
    [[ $set == big ]] || layout=(--layout cluster-backup)
    rm -rf "$RUN/out"
    measure "$set.restore" "$CAIRN" restore latest -r "$repo" -i "$RUN/identity.txt" "${layout[@]}" --target "$RUN/out"
    rm -rf "$RUN/out"
    measure "$set.check" "$CAIRN" check -r "$repo" -i "$RUN/identity.txt"
    "$CAIRN" init --like "$repo" -r "$repo-copy" -i "$RUN/identity.txt" >>"$LOGS/memory-init.log" 2>&1 || die "init --like"
    measure "$set.copy" "$CAIRN" copy --from "$repo" --to "$repo-copy" -i "$RUN/identity.txt" latest
    rm -rf "$repo-copy"
    record "$set.blobs" "$("$CAIRN" check -r "$repo" -i "$RUN/identity.txt" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("blobs", 0))' || echo 0)"
}

log "small: etcd day 1"
new_repo "$RUN/repos/small"
stage_day 1
backup_etcd "$RUN/repos/small" "$RUN/stage/snapshot.db" small.backup
record small.bytes "$(stat -c %s "$RUN/stage/snapshot.db")"
rest small
rm -rf "$RUN/repos/small"

log "big: 2 GiB file"
new_repo "$RUN/repos/big"
measure big.backup "$CAIRN" backup "$DATA/big/big.bin" -r "$RUN/repos/big" -i "$RUN/identity.txt" --host bench
record big.bytes "$(stat -c %s "$DATA/big/big.bin")"
rest big
rm -rf "$RUN/repos/big"

log "month: 30 daily etcd snapshots"
new_repo "$RUN/repos/month"
for d in $(seq 1 29); do
    stage_day $(((d - 1) % 7 + 1))
    backup_etcd "$RUN/repos/month" "$RUN/stage/snapshot.db"
done
stage_day 7
backup_etcd "$RUN/repos/month" "$RUN/stage/snapshot.db" month.backup
record month.bytes "$(stat -c %s "$RUN/stage/snapshot.db")"
rest month

CAIRN_VERSION=$cairn_version NPROC=$(nproc) python3 - "$RESULTS" <<'PY'
import os, sys
v = {}
for line in open(sys.argv[1]):
    k, x = line.split()
    v[k] = float(x)
sets = [("small", "etcd day 1, ~190 MB, fresh repository"), ("big", "2 GiB file, fresh repository"),
        ("month", "etcd day 7 into/out of a repository of 30 daily snapshots")]
print("## Peak RSS (MiB) by command and size\n")
print(f"- cairn: {os.environ['CAIRN_VERSION']}; {os.environ['NPROC']} CPUs; GNU time %M\n")
print("| data | blobs in repository | backup | restore | check | copy (latest) |")
print("|---|---:|---:|---:|---:|---:|")
for s, label in sets:
    if f"{s}.backup.rss_kb" not in v:
        continue
    cells = " | ".join(f"{v[f'{s}.{c}.rss_kb'] / 1024:.0f}" for c in ("backup", "restore", "check", "copy"))
    print(f"| {label} | {v.get(f'{s}.blobs', 0):,.0f} | {cells} |")
PY
