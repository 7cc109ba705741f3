#!/usr/bin/env bash
# Benchmark cairn against restic on the same generated data, in the same run.
#
#   bash bench/run.sh [WORKDIR]        (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   BENCH_BIG=1      also generate a ~2 GiB file and report peak RSS while backing it up
#   BENCH_TOOLS      tools to run, default "cairn restic" (e.g. BENCH_TOOLS=restic)
#   BENCH_SEED       data seed (default 1)
#   BENCH_KEEP=1     keep the repositories instead of deleting them at the end
#   CAIRN_BIN        cairn binary (default target/release/cairn, built if missing)
#   RESTIC_BIN       restic binary (default: restic on PATH)
#
# Progress goes to stderr, the markdown report to stdout. Generated data is kept under
# WORKDIR/data for reruns (regenerated only if missing); tool logs are kept under WORKDIR/logs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
DATA=$WORK/data
RUN=$WORK/run
LOGS=$WORK/logs
STAGE=$WORK/stage
TOOLS=${BENCH_TOOLS:-"cairn restic"}
BIG=${BENCH_BIG:-0}
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
RESTIC=${RESTIC_BIN:-restic}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
repo_bytes() { du -sb "$1" | cut -f1; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }

cleanup() {
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$RUN"/*/ "$RUN/cairn-bin" "$STAGE" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Preconditions, binaries, data.

[[ -x $TIME ]] || die "$TIME (GNU time) is needed for peak RSS"
need_tools

mkdir -p "$WORK" "$LOGS"
log "data: $DATA (generated if missing)"
python3 "$ROOT/bench/gen_data.py" "$WORK" || die "data generation failed"
[[ -f $DATA/etcd/snapshot.db && -f $DATA/etcd-v2/snapshot.db && -d $DATA/etc ]] || die "data incomplete"
if [[ $BIG == 1 ]]; then [[ -f $DATA/big/big.bin ]] || die "big file missing"; fi

rm -rf "$RUN"
mkdir -p "$RUN"
: >"$RESULTS"

# Versions, taken now; cairn runs from a pinned copy.
pin_versions

# Paths backed up, absolute for both tools (as a host backs up /etc/kubernetes).
FIRST_PATHS=("$DATA/etc" "$DATA/etcd/snapshot.db")
INPUT_BYTES=$(find "${FIRST_PATHS[@]}" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
INPUT_FILES=$(find "${FIRST_PATHS[@]}" -type f | wc -l)
CONFIG_BYTES=$(find "$DATA/etc" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
SNAP_BYTES=$(stat -c %s "$DATA/etcd/snapshot.db")
CHANGED_PAGES=$(python3 -c '
import sys
a, b = (open(p, "rb") for p in sys.argv[1:3])
n = 0
while True:
    x, y = a.read(4096), b.read(4096)
    if not x and not y:
        break
    n += x != y
print(n)' "$DATA/etcd/snapshot.db" "$DATA/etcd-v2/snapshot.db")
record input_bytes "$INPUT_BYTES"
record input_files "$INPUT_FILES"
record config_bytes "$CONFIG_BYTES"
record snap_bytes "$SNAP_BYTES"
record changed_pages "$CHANGED_PAGES"
log "input: $INPUT_FILES files, $INPUT_BYTES bytes ($CONFIG_BYTES config tree + $SNAP_BYTES snapshot.db)"

# ---------------------------------------------------------------------------------------------
# Tool adapters. Each takes the tool's state dir ($RUN/<tool>) as first argument.

tool_init() {
    local tool=$1 dir=$2
    case $tool in
    cairn)
        local out recipient
        out=$("$CAIRN" key generate -o "$dir/identity.txt" 2>>"$LOGS/$tool-init.log") \
            || die "cairn key generate (see $LOGS/$tool-init.log)"
        recipient=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
        [[ -n $recipient ]] || die "cairn key generate printed no age1 recipient: $out"
        "$CAIRN" init --repo "$dir/repo" --recipient "$recipient" >>"$LOGS/$tool-init.log" 2>&1 \
            || die "cairn init (see $LOGS/$tool-init.log)"
        "$CAIRN" key write-key --repo "$dir/repo" --identity "$dir/identity.txt" -o "$dir/write.key" \
            >>"$LOGS/$tool-init.log" 2>&1 || die "cairn key write-key (see $LOGS/$tool-init.log)"
        ;;
    restic)
        restic_env "$dir"
        "$RESTIC" init >>"$LOGS/$tool-init.log" 2>&1 || die "restic init (see $LOGS/$tool-init.log)"
        ;;
    esac
}

restic_env() {
    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$1/repo RESTIC_CACHE_DIR=$1/cache
}

# The command lines, as arrays in CMD.
backup_cmd() {
    local tool=$1 dir=$2
    shift 2
    case $tool in
    cairn) CMD=("$CAIRN" backup --repo "$dir/repo" --key "$dir/write.key" --host bench "$@") ;;
    restic) restic_env "$dir"; CMD=("$RESTIC" backup --host bench "$@") ;;
    esac
}
restore_cmd() {
    local tool=$1 dir=$2 target=$3
    case $tool in
    cairn) CMD=("$CAIRN" restore --repo "$dir/repo" --identity "$dir/identity.txt" latest --target "$target") ;;
    restic) restic_env "$dir"; CMD=("$RESTIC" restore latest --target "$target") ;;
    esac
}

# timed NAME: run "${CMD[@]}" with output to $LOGS/NAME.log; sets WALL (s) and RSS_KB.
timed() {
    local name=$1 t0 t1
    printf '$ %s\n' "${CMD[*]}" >"$LOGS/$name.log"
    sync # write back earlier steps' dirty pages (restores, repositories) outside the timing
    t0=$(now)
    if ! "$TIME" -f '%e %M' -o "$RUN/$name.time" "${CMD[@]}" >>"$LOGS/$name.log" 2>&1; then
        tail -n 20 "$LOGS/$name.log" >&2
        die "$name: ${CMD[*]} (full log: $LOGS/$name.log)"
    fi
    t1=$(now)
    WALL=$(elapsed "$t0" "$t1")
    RSS_KB=$(awk 'END { print $2 }' "$RUN/$name.time")
}

# Where a source path ended up below a restore target (restic: TARGET/<absolute path>).
locate() {
    local target=$1 src=$2 c
    for c in "$target$src" "$target/$(basename "$src")" "$target/${src#"$DATA"/}"; do
        if [[ -e $c ]]; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    find "$target" -path "*/$(basename "$DATA")/${src#"$DATA"/}" -print -quit
}

verify_restore() {
    local tool=$1 target=$2 r_etc r_snap
    r_etc=$(locate "$target" "$DATA/etc")
    r_snap=$(locate "$target" "$DATA/etcd/snapshot.db")
    [[ -n $r_etc && -d $r_etc ]] || die "$tool restore: config tree not found below $target"
    [[ -n $r_snap && -f $r_snap ]] || die "$tool restore: snapshot.db not found below $target"
    diff -r -q "$DATA/etc" "$r_etc" >"$LOGS/$tool-verify.log" 2>&1 \
        || { head -n 20 "$LOGS/$tool-verify.log" >&2; die "$tool restore differs from the source config tree ($r_etc)"; }
    cmp "$DATA/etcd/snapshot.db" "$r_snap" >>"$LOGS/$tool-verify.log" 2>&1 \
        || die "$tool restore: $r_snap differs from the source snapshot.db"
    local n
    n=$(find "$r_etc" "$r_snap" -type f | wc -l)
    [[ $n == "$INPUT_FILES" ]] || die "$tool restore: $n files restored, expected $INPUT_FILES"
    log "$tool: restore verified ($n files identical, found at $r_etc, $r_snap)"
}

# ---------------------------------------------------------------------------------------------

bench_tool() {
    local tool=$1 dir=$RUN/$1 first_wall before after
    rm -rf "$dir"
    mkdir -p "$dir"
    log "$tool: init repository $dir/repo"
    tool_init "$tool" "$dir"

    log "$tool: first backup (config tree + etcd/snapshot.db)"
    backup_cmd "$tool" "$dir" "${FIRST_PATHS[@]}"
    timed "$tool-backup-first"
    first_wall=$WALL
    record "$tool.first_wall" "$WALL"
    record "$tool.first_rss_kb" "$RSS_KB"
    record "$tool.first_repo_bytes" "$(repo_bytes "$dir/repo")"
    log "$tool: first backup ${WALL}s, peak RSS ${RSS_KB} KB"

    log "$tool: restore latest (= the first snapshot) into an empty dir"
    mkdir -p "$dir/restore"
    restore_cmd "$tool" "$dir" "$dir/restore"
    timed "$tool-restore"
    record "$tool.restore_wall" "$WALL"
    record "$tool.restore_rss_kb" "$RSS_KB"
    log "$tool: restore ${WALL}s"
    verify_restore "$tool" "$dir/restore"
    rm -rf "$dir/restore"

    log "$tool: re-backup of the unchanged paths"
    backup_cmd "$tool" "$dir" "${FIRST_PATHS[@]}"
    timed "$tool-backup-unchanged"
    record "$tool.rebackup_wall" "$WALL"
    log "$tool: unchanged re-backup ${WALL}s (first was ${first_wall}s)"

    log "$tool: stage/snapshot.db holding v1, backed up"
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    cp "$DATA/etcd/snapshot.db" "$STAGE/snapshot.db"
    backup_cmd "$tool" "$dir" "$STAGE/snapshot.db"
    timed "$tool-backup-stage-v1"
    record "$tool.stage_v1_wall" "$WALL"
    before=$(repo_bytes "$dir/repo")

    log "$tool: stage/snapshot.db overwritten with v2 (2% of pages changed), backed up"
    cp "$DATA/etcd-v2/snapshot.db" "$STAGE/snapshot.db" # in place: same inode, new content
    touch "$STAGE/snapshot.db"
    backup_cmd "$tool" "$dir" "$STAGE/snapshot.db"
    timed "$tool-backup-stage-v2"
    after=$(repo_bytes "$dir/repo")
    record "$tool.v2_wall" "$WALL"
    record "$tool.v2_added_bytes" "$((after - before))"
    log "$tool: v2 backup ${WALL}s, repository grew by $((after - before)) bytes"

    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$dir/repo" "$dir/cache"; fi

    if [[ $BIG == 1 ]]; then
        local bdir=$RUN/$tool-big
        rm -rf "$bdir"
        mkdir -p "$bdir"
        log "$tool: backup of the 2 GiB file into a fresh repository"
        tool_init "$tool" "$bdir"
        backup_cmd "$tool" "$bdir" "$DATA/big/big.bin"
        timed "$tool-backup-big"
        record "$tool.big_wall" "$WALL"
        record "$tool.big_rss_kb" "$RSS_KB"
        record "$tool.big_repo_bytes" "$(repo_bytes "$bdir/repo")"
        log "$tool: 2 GiB backup ${WALL}s, peak RSS ${RSS_KB} KB"
        if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$bdir"; fi
    fi
}

for tool in $TOOLS; do
    bench_tool "$tool"
done
rm -rf "$STAGE"

# ---------------------------------------------------------------------------------------------
# Report.

big_size=0
[[ $BIG == 1 ]] && big_size=$(stat -c %s "$DATA/big/big.bin")

TOOLS="$TOOLS" BIG="$BIG" BIG_SIZE="$big_size" \
    NPROC=$(nproc) CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
    MEM=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) \
    KERNEL=$(uname -r) FSTYPE=$(df --output=fstype "$WORK" | tail -n1) \
    CAIRN_VERSION="$cairn_version" RESTIC_VERSION="$restic_version" \
    python3 - "$RESULTS" <<'PY'
import os, sys

r = {}
for line in open(sys.argv[1]):
    k, v = line.split(None, 1)
    r[k] = float(v)
tools = os.environ["TOOLS"].split()
e = os.environ
inp = r["input_bytes"]
MB = 1e6


def get(tool, key):
    return r.get(f"{tool}.{key}")


rows = []  # (label, {tool: value}, format)
def row(label, fn, fmt):
    vals = {}
    for t in tools:
        try:
            vals[t] = fn(t)
        except (TypeError, ZeroDivisionError):
            vals[t] = None
    rows.append((label, vals, fmt))


row("first backup throughput, MB/s (higher is better)", lambda t: inp / MB / get(t, "first_wall"), "{:.1f}")
row("first backup wall time, s", lambda t: get(t, "first_wall"), "{:.2f}")
row("unchanged re-backup wall time, s", lambda t: get(t, "rebackup_wall"), "{:.2f}")
row("unchanged re-backup: x faster than first backup", lambda t: get(t, "first_wall") / get(t, "rebackup_wall"), "{:.1f}x")
row("added bytes, 2%-changed snapshot.db (v1 -> v2)", lambda t: get(t, "v2_added_bytes"), "{:,.0f}")
row("backup of the 2%-changed snapshot.db, s", lambda t: get(t, "v2_wall"), "{:.2f}")
row("restore throughput, MB/s (higher is better)", lambda t: inp / MB / get(t, "restore_wall"), "{:.1f}")
row("peak RSS, first backup, MiB", lambda t: get(t, "first_rss_kb") / 1024, "{:.0f}")
row("repository bytes after first backup", lambda t: get(t, "first_repo_bytes"), "{:,.0f}")
row("  (input bytes / repository bytes)", lambda t: inp / get(t, "first_repo_bytes"), "{:.2f}x")
if e["BIG"] == "1":
    gib = float(e["BIG_SIZE"]) / 2**30
    row(f"peak RSS, backup of a {gib:.1f} GiB file, MiB", lambda t: get(t, "big_rss_kb") / 1024, "{:.0f}")
    row(f"backup throughput, {gib:.1f} GiB file, MB/s", lambda t: float(e["BIG_SIZE"]) / MB / get(t, "big_wall"), "{:.1f}")

print("## cairn vs restic benchmark\n")
print(f"- machine: {e['NPROC']} CPUs ({e['CPU']}), {e['MEM']} RAM, Linux {e['KERNEL']}, work dir on {e['FSTYPE']}")
print(f"- cairn: {e['CAIRN_VERSION']}")
print(f"- restic: {e['RESTIC_VERSION']} (default compression: auto)")
print(f"- input: {int(r['input_files']):,} files, {inp / MB:.1f} MB = config tree {r['config_bytes'] / MB:.1f} MB "
      f"+ etcd/snapshot.db {r['snap_bytes'] / MB:.1f} MB; v2 differs in {int(r['changed_pages'])} of "
      f"{int(r['snap_bytes'] // 4096)} 4 KiB pages")
print("- page cache warm for both tools (data just generated or read; caches are not dropped); "
      "each tool has its own fresh repository on the same disk; one run each, no repetitions")
print("- MB = 10^6 bytes; throughput = input bytes / wall seconds; RSS from /usr/bin/time %M\n")
hdr = ["metric"] + tools + (["cairn/restic"] if set(tools) >= {"cairn", "restic"} else [])
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
for label, vals, fmt in rows:
    cells = [label] + [fmt.format(vals[t]) if vals[t] is not None else "n/a" for t in tools]
    if len(hdr) > len(tools) + 1:
        c, s = vals.get("cairn"), vals.get("restic")
        cells.append(f"{c / s:.3g}" if c is not None and s else "n/a")
    print("| " + " | ".join(cells) + " |")
PY
log "done; logs in $LOGS"
