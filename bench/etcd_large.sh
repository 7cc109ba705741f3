#!/usr/bin/env bash
# Large etcd databases against a small one: peak RSS and wall time of cairn's backup (first,
# then the same database again), restore, check, check --read-data and copy, and of restic's
# backup (twice) and restore, on the same real etcd databases in the same run (issue 16,
# goal 2: memory flat in the database's size; an etcd database over 2 GiB, which cairn before
# tree version 3 could not back up).
#
#   bash bench/etcd_large.sh [WORKDIR]      (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   CAIRN_BIN      cairn binary (default target/release/cairn, built if missing)
#   RESTIC         restic binary (default restic)
#   ETCD_LARGE_MB  database sizes in MB (default "200 2300"), each made once by
#                  bench/etcd_grown.sh (a real etcd, minutes per GB) and kept in WORKDIR/data/drill
#   BENCH_SEED     data seed (default 1)
#
# Markdown table on stdout (MiB from GNU time %M; seconds of wall time; restores until the file
# is on disk, restic's followed by `sync -f`), progress on stderr.
# restic keeps a cache of file metadata: its second backup of an unchanged file reads nothing,
# while cairn reads and hashes an etcd database every time (its sha256 trailer is checked).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
DBDIR=$WORK/data/drill
RUN=$WORK/etcd-large-run
LOGS=$WORK/logs
TOOLS="cairn restic"
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
RESTIC=${RESTIC:-restic}
SIZES=${ETCD_LARGE_MB:-200 2300}
SEED=${BENCH_SEED:-1}

unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE CAIRN_S3_ENDPOINT CAIRN_CACHE_DIR
export RESTIC_PASSWORD=bench

log() { printf '[bench-etcd-large %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
cleanup() { rm -rf "$RUN/repos" "$RUN/out"; }
trap cleanup EXIT

need_tools
mkdir -p "$WORK" "$LOGS" "$DBDIR"
rm -rf "$RUN"
mkdir -p "$RUN/repos"
pin_versions

# m NAME CMD...: run CMD, print "wall s | MiB".
m() {
    local name=$1
    shift
    /usr/bin/time -f '%e %M' -o "$RUN/time" "$@" >"$LOGS/etcd-large-$name.log" 2>&1 \
        || { tail -n 20 "$LOGS/etcd-large-$name.log" >&2; die "$name: $*"; }
    awk '{printf "%.2f | %.1f", $1, $2 / 1024}' "$RUN/time"
}

out=$("$CAIRN" key generate -o "$RUN/identity.txt" 2>/dev/null)
RECIPIENT=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
[[ -n $RECIPIENT ]] || die "cairn key generate printed no recipient"
ID=(-i "$RUN/identity.txt")

echo "## Large etcd databases: peak RSS and wall time"
echo
echo "- cairn: $cairn_version; restic: $restic_version; $(nproc) CPUs"
echo
echo "| database | command | cairn s | cairn MiB | restic s | restic MiB |"
echo "|---|---|--:|--:|--:|--:|"
for mb in $SIZES; do
    db=$DBDIR/etcd-${mb}MB-seed$SEED.db
    [[ -s $db ]] || log "generating a $mb MB etcd database (bench/etcd_grown.sh; minutes per GB)"
    bash "$ROOT/bench/etcd_grown.sh" "$db" "$mb" "$SEED" "$LOGS/etcd-large-grow.log" || die "growing etcd to $mb MB"
    # Both tools read the database itself (restic stores a symlink as a symlink).
    db=$(realpath "$db")
    name="$mb MB ($(($(stat -c %s "$db") / 4096)) pages)"
    repo=$RUN/repos/cairn rrepo=$RUN/repos/restic
    rm -rf "$RUN/repos"/*
    "$CAIRN" init -r "$repo" --recipient "$RECIPIENT" >"$LOGS/etcd-large-init.log" 2>&1 || die "init"
    "$RESTIC" init -q -r "$rrepo" >"$LOGS/etcd-large-restic-init.log" 2>&1 || die "restic init"
    log "$name: backups"
    c1=$(m backup "$CAIRN" -q -r "$repo" "${ID[@]}" backup etcd --snapshot-file "$db" --host bench)
    r1=$(m restic-backup "$RESTIC" -q -r "$rrepo" backup "$db")
    c2=$(m again "$CAIRN" -q -r "$repo" "${ID[@]}" backup etcd --snapshot-file "$db" --host bench)
    r2=$(m restic-again "$RESTIC" -q -r "$rrepo" backup "$db")
    log "$name: restores"
    # Each starts with nothing dirty in the page cache, and ends with the file on disk: cairn
    # flushes what it restored before it reports success, restic does not (sync -f after it).
    rm -rf "$RUN/out"
    sync
    c3=$(m restore "$CAIRN" -q -r "$repo" "${ID[@]}" restore latest --target "$RUN/out")
    cmp -s "$(find "$RUN/out" -name '*.db' | head -n1)" "$db" || die "cairn's restore of $db differs"
    rm -rf "$RUN/out"
    sync
    r3=$(m restic-restore sh -c '"$0" -q -r "$1" restore latest --target "$2" && sync -f "$2"' "$RESTIC" "$rrepo" "$RUN/out")
    rm -rf "$RUN/out"
    log "$name: check and copy"
    c4=$(m check "$CAIRN" -q -r "$repo" "${ID[@]}" check)
    c5=$(m check-data "$CAIRN" -q -r "$repo" "${ID[@]}" check --read-data)
    "$CAIRN" init --like "$repo" -r "$repo-copy" "${ID[@]}" >>"$LOGS/etcd-large-init.log" 2>&1 || die "init --like"
    c6=$(m copy "$CAIRN" -q -r "$repo" "${ID[@]}" copy --to "$repo-copy")
    echo "| $name | backup | $c1 | $r1 |"
    echo "| $name | backup again (same file) | $c2 | $r2 |"
    echo "| $name | restore | $c3 | $r3 |"
    echo "| $name | check | $c4 | | |"
    echo "| $name | check --read-data | $c5 | | |"
    echo "| $name | copy | $c6 | | |"
done
