#!/usr/bin/env bash
# Peak RSS and CPU seconds of cairn's backup, restore, copy and check (structure) for large etcd
# databases and for a repository of more than a million blobs (issue 16, goal 2: flat memory).
#
#   bash bench/memory_large.sh [WORKDIR]      (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   CAIRN_BIN        cairn binary (default target/release/cairn, built if missing)
#   MEMORY_DB_MB     sizes of the etcd databases in MB (default "1000"; e.g. "1000 2000"; ""
#                    for none: only etcd day 1 into the million-blob repository)
#   MEMORY_DB_DIR    where the grown databases are kept (default WORKDIR/data/drill, shared with
#                    drill.sh: made once by bench/etcd_grown.sh, a real etcd, minutes per GB)
#   BENCH_SEED       data seed (default 1)
#   MEMORY_FILL_SLICES  256 MiB slices of the 2 GiB file in the million-blob repository
#                    (default 8: ~1.5M blobs; 4: ~750,000 and ~1.05M after the etcd backups)
#
# Sets (each command's peak RSS from GNU time %M, CPU = user + system seconds):
#   etcd-N       the N MB etcd database backed up into a fresh repository, then again (`again`:
#                the second backup, written against the first's lists); restore of it
#                (--layout cluster-backup), check, copy of it into a new repository
#   million      a repository of more than a million blobs: the ~2 GiB file of
#                `gen_data.py --big` backed up with --chunk-size 1 (1 KiB average chunks, ~1.4M
#                blobs, as 8 slices by `backup stdin`; the fastest realistic way to that many blobs: growing 4 GB of distinct
#                etcd pages takes half an hour), then the etcd day 1 of the series and the
#                first database of MEMORY_DB_MB backed up into it (measured), restored,
#                checked and copied
# Markdown table on stdout, progress on stderr. The repositories are deleted at the end
# (BENCH_KEEP=1 keeps them); a million-blob repository needs a few GB of disk: each step
# first checks the free space and stops cleanly if it is short.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
DATA=$WORK/data
DBDIR=${MEMORY_DB_DIR:-$DATA/drill}
RUN=$WORK/memory-large-run
LOGS=$WORK/logs
TOOLS=cairn
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
SIZES=${MEMORY_DB_MB-1000}
SEED=${BENCH_SEED:-1}
SLICES=${MEMORY_FILL_SLICES:-8}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt

unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE CAIRN_S3_ENDPOINT CAIRN_CACHE_DIR

log() { printf '[bench-memory-large %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }
cleanup() { [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$RUN/repos" "$RUN/out" "$RUN/stage"; }
trap cleanup EXIT

need_tools
mkdir -p "$WORK" "$LOGS" "$DBDIR"
rm -rf "$RUN"
mkdir -p "$RUN/repos" "$RUN/stage"
: >"$RESULTS"
pin_versions
python3 "$ROOT/bench/gen_data.py" "$WORK" --big >&2 || die "data generation failed"
SERIES=$(python3 "$ROOT/bench/etcd_series.py" series "$WORK") || die "etcd series generation failed"
for mb in $SIZES; do
    db=$DBDIR/etcd-${mb}MB-seed$SEED.db
    [[ -s $db ]] || log "generating a $mb MB etcd database (bench/etcd_grown.sh; minutes per GB)"
    bash "$ROOT/bench/etcd_grown.sh" "$db" "$mb" "$SEED" "$LOGS/memory-large-etcd.log" || die "growing etcd to $mb MB"
done

# measure NAME CMD...: peak RSS (KiB), wall and CPU seconds of CMD.
measure() {
    local name=$1
    shift
    "$TIME" -f '%e %U %S %M' -o "$RUN/$name.time" "$@" >"$LOGS/memory-large-$name.log" 2>&1 \
        || { tail -n 20 "$LOGS/memory-large-$name.log" >&2; die "$name: $*"; }
    local wall user sys rss
    read -r wall user sys rss <"$RUN/$name.time"
    record "$name.rss_kb" "$rss"
    record "$name.wall" "$wall"
    record "$name.cpu" "$(python3 -c "print($user + $sys)")"
    log "$name: ${wall}s, ${user}u ${sys}s, peak RSS $((rss / 1024)) MiB"
}

out=$("$CAIRN" key generate -o "$RUN/identity.txt" 2>/dev/null)
RECIPIENT=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
[[ -n $RECIPIENT ]] || die "cairn key generate printed no recipient"
ID=(-i "$RUN/identity.txt")
new_repo() { # REPO [init options]
    local repo=$1
    shift
    "$CAIRN" init -r "$repo" --recipient "$RECIPIENT" "$@" >>"$LOGS/memory-large-init.log" 2>&1 || die "init $repo"
}
# need_space MB: stop (cleanly) unless the work directory's file system has MB free.
need_space() {
    local free
    free=$(df -Pm "$RUN" | awk 'NR == 2 {print $4}')
    ((free >= $1)) || die "only $free MB free on $(df -P "$RUN" | awk 'NR == 2 {print $6}'), $1 MB needed"
}
blobs() { "$CAIRN" check -r "$1" "${ID[@]}" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("blobs", 0))' || echo 0; }
# set NAME REPO DB: back DB up into REPO as an etcd snapshot, restore it, check, copy it.
set_of() {
    local name=$1 repo=$2 db=$3
    need_space $(($(stat -c %s "$db") * 3 / 1000000 + 500))
    ln -sfn "$db" "$RUN/stage/snapshot.db"
    record "$name.before_blobs" "$(blobs "$repo")"
    measure "$name.backup" "$CAIRN" backup etcd --snapshot-file "$RUN/stage/snapshot.db" -r "$repo" "${ID[@]}" --host bench
    # The same database again: a backup whose base is the one just written (its content
    # lists read one at a time, each reused unchanged).
    measure "$name.again" "$CAIRN" backup etcd --snapshot-file "$RUN/stage/snapshot.db" -r "$repo" "${ID[@]}" --host bench
    rm -f "$RUN/stage/snapshot.db"
    record "$name.bytes" "$(stat -c %s "$db")"
    record "$name.blobs" "$(blobs "$repo")"
    rm -rf "$RUN/out"
    measure "$name.restore" "$CAIRN" restore latest -r "$repo" "${ID[@]}" --layout cluster-backup --target "$RUN/out"
    rm -rf "$RUN/out"
    measure "$name.check" "$CAIRN" check -r "$repo" "${ID[@]}"
    "$CAIRN" init --like "$repo" -r "$repo-copy" "${ID[@]}" >>"$LOGS/memory-large-init.log" 2>&1 || die "init --like"
    measure "$name.copy" "$CAIRN" copy --from "$repo" --to "$repo-copy" "${ID[@]}" latest
    rm -rf "$repo-copy"
}

names=()
for mb in $SIZES; do
    log "etcd-$mb: a $mb MB etcd database into a fresh repository"
    new_repo "$RUN/repos/etcd-$mb"
    set_of "etcd-$mb" "$RUN/repos/etcd-$mb" "$DBDIR/etcd-${mb}MB-seed$SEED.db"
    rm -rf "$RUN/repos/etcd-$mb"
    names+=("etcd-$mb|etcd $mb MB, fresh repository")
done

log "million: the 2 GiB file with 1 KiB chunks, then etcd databases into the same repository"
new_repo "$RUN/repos/million" --chunk-size 1
# The file goes in as 8 slices of 256 MiB, each one snapshot of `backup stdin` (~180,000 ids
# each), as it did when one file's ids were bounded by the tree blob limit (before content
# lists of at most 65,536 ids): the same repository shape as earlier runs.
need_space $((SLICES * 400 + 500))
for i in $(seq 0 $((SLICES - 1))); do
    "$TIME" -f '%e %U %S %M' -a -o "$RUN/million.fill.time" "$CAIRN" backup stdin --filename "big-$i.bin" -r "$RUN/repos/million" "${ID[@]}" --host filler \
        < <(dd if="$DATA/big/big.bin" bs=1M skip=$((i * 256)) count=256 status=none) \
        >>"$LOGS/memory-large-million-fill.log" 2>&1 || die "filling the million-blob repository (slice $i)"
done
log "filled: $(tr '\n' ' ' <"$RUN/million.fill.time")"
set_of million-day1 "$RUN/repos/million" "$SERIES/day-1.db"
names+=("million-day1|etcd day 1 (~190 MB) into/out of a repository of 1M+ blobs")
first=${SIZES%% *}
if [[ -n $first ]]; then
    set_of "million-etcd-$first" "$RUN/repos/million" "$DBDIR/etcd-${first}MB-seed$SEED.db"
    names+=("million-etcd-$first|etcd $first MB into/out of a repository of 1M+ blobs")
fi

CAIRN_VERSION=$cairn_version NPROC=$(nproc) NAMES=$(printf '%s\n' "${names[@]}") python3 - "$RESULTS" <<'PY'
import os, sys
v = {}
for line in open(sys.argv[1]):
    k, x = line.split()
    v[k] = float(x)
print("## Peak RSS (MiB) and CPU seconds by command: large etcd databases, million-blob repository\n")
print(f"- cairn: {os.environ['CAIRN_VERSION']}; {os.environ['NPROC']} CPUs; GNU time %M, %U + %S\n")
cmds = ("backup", "again", "restore", "check", "copy")
print("| data | blobs before → after | " + " | ".join(f"{c} MiB" for c in cmds) + " | " + " | ".join(f"{c} CPU s" for c in cmds) + " |")
print("|---|---:|" + "---:|" * (2 * len(cmds)))
for line in os.environ["NAMES"].splitlines():
    s, label = line.split("|", 1)
    if f"{s}.backup.rss_kb" not in v:
        continue
    rss = " | ".join(f"{v[f'{s}.{c}.rss_kb'] / 1024:.0f}" for c in cmds)
    cpu = " | ".join(f"{v[f'{s}.{c}.cpu']:.2f}" for c in cmds)
    print(f"| {label} | {v.get(f'{s}.before_blobs', 0):,.0f} → {v.get(f'{s}.blobs', 0):,.0f} | {rss} | {cpu} |")
PY
