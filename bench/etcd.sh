#!/usr/bin/env bash
# Benchmark cairn against restic on a week of daily snapshots of a real etcd, in the same run.
#
#   bash bench/etcd.sh [WORKDIR]       (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   BENCH_BIG=1      also grow the live etcd to ~1 GB and take another live backup (peak RSS)
#   BENCH_TOOLS      tools to run, default "cairn restic" (e.g. BENCH_TOOLS=cairn, or
#                    "cairn restic rustic borg": rustic and borg back up into repositories of
#                    their own; borg with repokey-blake2 and zstd 3)
#   BENCH_SEED       data seed (default 1)
#   BENCH_KEEP=1     keep the repositories instead of deleting them at the end
#   CAIRN_BIN        cairn binary (default target/release/cairn, built if missing)
#   RESTIC_BIN       restic binary (default: restic on PATH)
#   RUSTIC_BIN       rustic binary (default: rustic on PATH, else /tmp/rustic/bin/rustic)
#   BORG_BIN         borg binary (default: borg on PATH; Debian's borgbackup)
#
# The series (WORKDIR/data/etcd-series/day-1.db .. day-7.db) is made by bench/etcd_series.py
# with a real etcd and reused by later runs. Per tool, into its own fresh repository: day 1..7
# are copied in turn to one staging path (same file, new mtime) and backed up; then the latest
# snapshot (day 7) is restored and compared with day-7.db. cairn also takes live backups
# (`cairn backup etcd --endpoints`) from an etcd started on day-7.db (and grown to ~1 GB with
# BENCH_BIG=1). Progress goes to stderr, the markdown report to stdout; tool output is kept in
# WORKDIR/logs/etcd-*.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
SERIES=$WORK/data/etcd-series
RUN=$WORK/etcd-run
LOGS=$WORK/logs
STAGE=$RUN/stage
TOOLS=${BENCH_TOOLS:-"cairn restic"}
BIG=${BENCH_BIG:-0}
DAYS=7
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
RESTIC=${RESTIC_BIN:-restic}
RUSTIC=${RUSTIC_BIN:-$(command -v rustic || echo /tmp/rustic/bin/rustic)}
BORG=${BORG_BIN:-borg}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt
ETCD_PID=""

# etcdctl and cairn both read ETCDCTL_*: only what this script passes counts.
unset ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY \
    CAIRN_PASSPHRASE_FILE BORG_REPO
export ETCDCTL_API=3 BORG_PASSPHRASE=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

log() { printf '[bench-etcd %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
repo_bytes() { du -sb "$1" | cut -f1; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }

stop_etcd() {
    if [[ -n $ETCD_PID ]]; then
        kill "$ETCD_PID" 2>/dev/null || true
        wait "$ETCD_PID" 2>/dev/null || true
        ETCD_PID=""
    fi
}
cleanup() {
    stop_etcd
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$RUN"/*/ "$RUN/cairn-bin" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Preconditions, binaries, data.

[[ -x $TIME ]] || die "$TIME (GNU time) is needed for peak RSS"
for b in etcd etcdctl curl python3; do command -v "$b" >/dev/null || die "$b not found"; done
need_tools

mkdir -p "$WORK" "$LOGS"
log "series: $SERIES (generated with a real etcd if missing)"
python3 "$ROOT/bench/etcd_series.py" series "$WORK" >/dev/null || die "series generation failed"
for d in $(seq 1 $DAYS); do [[ -f $SERIES/day-$d.db ]] || die "$SERIES/day-$d.db missing"; done
[[ -f $SERIES/series.json ]] || die "$SERIES/series.json missing"

stop_etcd
rm -rf "$RUN"
mkdir -p "$RUN" "$STAGE"
: >"$RESULTS"

# Versions, taken now; cairn runs from a pinned copy.
pin_versions
etcd_version=$(etcd --version | sed -n '1s/^etcd Version: //p') # sed reads it all: no SIGPIPE
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Tool adapters. Each takes the tool's state dir ($RUN/<tool>...) as argument.

RUSTIC_CMD=(env RUSTIC_PASSWORD=bench "$RUSTIC")

restic_env() {
    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$1/repo RESTIC_CACHE_DIR=$1/cache
}

tool_init() {
    local tool=$1 dir=$2
    rm -rf "$dir"
    mkdir -p "$dir"
    case $tool in
    cairn)
        local out recipient
        out=$("$CAIRN" key generate -o "$dir/identity.txt" 2>>"$LOGS/etcd-$tool-init.log") \
            || die "cairn key generate (see $LOGS/etcd-$tool-init.log)"
        recipient=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
        [[ -n $recipient ]] || die "cairn key generate printed no age1 recipient: $out"
        "$CAIRN" init -r "$dir/repo" --recipient "$recipient" >>"$LOGS/etcd-$tool-init.log" 2>&1 \
            || die "cairn init (see $LOGS/etcd-$tool-init.log)"
        "$CAIRN" key write-key -r "$dir/repo" -i "$dir/identity.txt" -o "$dir/write.key" \
            >>"$LOGS/etcd-$tool-init.log" 2>&1 || die "cairn key write-key (see $LOGS/etcd-$tool-init.log)"
        ;;
    restic)
        restic_env "$dir"
        "$RESTIC" init >>"$LOGS/etcd-$tool-init.log" 2>&1 || die "restic init (see $LOGS/etcd-$tool-init.log)"
        ;;
    rustic)
        "${RUSTIC_CMD[@]}" -r "$dir/repo" --cache-dir "$dir/cache" init >>"$LOGS/etcd-$tool-init.log" 2>&1 \
            || die "rustic init (see $LOGS/etcd-$tool-init.log)"
        ;;
    borg)
        BORG_BASE_DIR=$dir/cache "$BORG" init -e repokey-blake2 "$dir/repo" >>"$LOGS/etcd-$tool-init.log" 2>&1 \
            || die "borg init (see $LOGS/etcd-$tool-init.log)"
        ;;
    esac
}

# timed NAME [REPO]: run "${CMD[@]}" with output to $LOGS/etcd-NAME.log; sets WALL (s), RSS_KB
# and CPU_S (user + system seconds). With REPO, the files the command holds open are sampled
# every 100 ms and those outside REPO (other than its log, its time file, the write key, /dev,
# /proc) are listed in OUTSIDE (space-separated).
timed() {
    local name=$1 repo=${2:-} t0 t1 tp rc=0
    local lf=$LOGS/etcd-$name.log
    printf '$ %s\n' "${CMD[*]}" >"$lf"
    sync # write back earlier steps' dirty pages (staging copy, repositories) outside the timing
    t0=$(now)
    if [[ -z $repo ]]; then
        "$TIME" -f '%e %M %U %S' -o "$RUN/$name.time" "${CMD[@]}" >>"$lf" 2>&1 || rc=$?
    else
        "$TIME" -f '%e %M %U %S' -o "$RUN/$name.time" "${CMD[@]}" >>"$lf" 2>&1 &
        tp=$!
        : >"$RUN/$name.open"
        while kill -0 "$tp" 2>/dev/null; do
            for c in $(cat /proc/"$tp"/task/*/children 2>/dev/null); do
                find /proc/"$c"/fd -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null >>"$RUN/$name.open" || true
            done
            sleep 0.1
        done
        wait "$tp" || rc=$?
    fi
    t1=$(now)
    if [[ $rc != 0 ]]; then
        tail -n 20 "$lf" >&2
        die "$name: ${CMD[*]} (full log: $lf)"
    fi
    WALL=$(elapsed "$t0" "$t1")
    RSS_KB=$(awk 'END { print $2 }' "$RUN/$name.time")
    CPU_S=$(awk 'END { print $3 + $4 }' "$RUN/$name.time")
    if [[ -n $repo ]]; then
        OUTSIDE=$(sort -u "$RUN/$name.open" | grep '^/' | grep -v -x -F -e "$lf" -e "$RUN/$name.time" -e "$CAIRN" -e "${repo%/repo}/write.key" \
            | grep -v -e "^$repo/" -e '^/dev/' -e '^/proc/' -e '^/sys/' | tr '\n' ' ' || true)
    fi
}

backup_cmd() {
    local tool=$1 dir=$2
    case $tool in
    cairn) CMD=("$CAIRN" backup etcd --snapshot-file "$STAGE/snapshot.db" -r "$dir/repo" -k "$dir/write.key" --host bench --json) ;;
    restic) restic_env "$dir"; CMD=("$RESTIC" backup --host bench "$STAGE/snapshot.db") ;;
    rustic) CMD=("${RUSTIC_CMD[@]}" -r "$dir/repo" --cache-dir "$dir/cache" backup --host bench "$STAGE/snapshot.db") ;;
    borg) CMD=(env BORG_BASE_DIR="$dir/cache" "$BORG" create --compression zstd,3 "$dir/repo::day-$d" "$STAGE/snapshot.db") ;;
    esac
}
restore_cmd() {
    local tool=$1 dir=$2 target=$3
    case $tool in
    cairn) CMD=("$CAIRN" restore latest -r "$dir/repo" -i "$dir/identity.txt" --layout cluster-backup --target "$target") ;;
    restic) restic_env "$dir"; CMD=("$RESTIC" restore latest --target "$target") ;;
    rustic) CMD=("${RUSTIC_CMD[@]}" -r "$dir/repo" --cache-dir "$dir/cache" restore latest "$target") ;;
    # borg extracts into the current directory (paths below /, as restic lays them out).
    borg) CMD=(env BORG_BASE_DIR="$dir/cache" sh -c 'cd "$1" && exec "$2" extract "$3::day-7"' borg-extract "$target" "$BORG" "$dir/repo") ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# The week, per tool.

bench_tool() {
    local tool=$1 dir=$RUN/$1 d before after size
    log "$tool: init repository $dir/repo"
    tool_init "$tool" "$dir"
    for d in $(seq 1 $DAYS); do
        cp "$SERIES/day-$d.db" "$STAGE/snapshot.db" # in place: same path and inode, new content
        touch "$STAGE/snapshot.db"
        size=$(stat -c %s "$STAGE/snapshot.db")
        before=$(repo_bytes "$dir/repo")
        backup_cmd "$tool" "$dir"
        timed "$tool-backup-day-$d"
        after=$(repo_bytes "$dir/repo")
        record "$tool.day$d.wall" "$WALL"
        record "$tool.day$d.rss_kb" "$RSS_KB"
        record "$tool.day$d.cpu" "$CPU_S"
        record "$tool.day$d.added" "$((after - before))"
        log "$tool: day $d ($size bytes) ${WALL}s, peak RSS ${RSS_KB} KB, repository +$((after - before)) bytes"
        if [[ $tool == cairn ]] && command -v openssl >/dev/null; then
            # The floor of cairn's design for this day: the sha256 trailer check reads the whole
            # file through one sequential hash (openssl uses the CPU's SHA instructions).
            CMD=(openssl dgst -sha256 "$STAGE/snapshot.db")
            timed "sha256-day-$d"
            record "sha256.day$d.wall" "$WALL"
        fi
    done
    record "$tool.repo_bytes" "$(repo_bytes "$dir/repo")"

    log "$tool: restore latest (day 7)"
    rm -rf "$dir/restore"
    mkdir -p "$dir/restore"
    restore_cmd "$tool" "$dir" "$dir/restore"
    timed "$tool-restore-day-7"
    record "$tool.restore_wall" "$WALL"
    record "$tool.restore_rss_kb" "$RSS_KB"
    local restored n
    n=$(find "$dir/restore" -type f | wc -l)
    case $tool in
    cairn) restored=$(find "$dir/restore" -maxdepth 1 -type f -name 'snapshot_*.db' -print -quit) ;;
    restic | rustic | borg) restored=$dir/restore$STAGE/snapshot.db ;;
    esac
    [[ -n $restored && -f $restored ]] || die "$tool restore: no snapshot file below $dir/restore ($(find "$dir/restore" -type f | head -n3))"
    cmp "$SERIES/day-7.db" "$restored" >"$LOGS/etcd-$tool-verify.log" 2>&1 \
        || die "$tool restore: $restored differs from day-7.db"
    record "$tool.restore_identical" 1
    log "$tool: restore ${WALL}s, $restored identical to day-7.db ($n file(s) restored)"
    rm -rf "$dir/restore"
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$dir/repo" "$dir/cache"; fi
}

for tool in $TOOLS; do
    bench_tool "$tool"
done
rm -f "$STAGE/snapshot.db"

# ---------------------------------------------------------------------------------------------
# Live backups (cairn): an etcd started on day-7.db, then grown to ~1 GB with BENCH_BIG=1.

free_ports() {
    python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])'
}

start_live_etcd() {
    local dir=$RUN/etcd-live attempt cp pp i
    for attempt in 1 2 3 4 5; do
        read -r cp pp < <(free_ports)
        rm -rf "$dir"
        mkdir -p "$dir"
        etcdctl snapshot restore "$SERIES/day-7.db" --name live --data-dir "$dir/data" \
            --initial-cluster "live=http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
            >>"$LOGS/etcd-live-etcd.log" 2>&1 || die "etcdctl snapshot restore (see $LOGS/etcd-live-etcd.log)"
        etcd --name live --data-dir "$dir/data" --logger zap --log-level warn \
            --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
            --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
            --initial-cluster "live=http://127.0.0.1:$pp" >>"$LOGS/etcd-live-etcd.log" 2>&1 &
        ETCD_PID=$!
        ENDPOINT=http://127.0.0.1:$cp
        for i in $(seq 150); do
            if curl -sf "$ENDPOINT/health" 2>/dev/null | grep -q '"health":"true"'; then return 0; fi
            kill -0 "$ETCD_PID" 2>/dev/null || break
            sleep 0.2
        done
        stop_etcd
        log "etcd did not start on ports $cp/$pp (attempt $attempt); see $LOGS/etcd-live-etcd.log"
    done
    die "could not start the live etcd"
}

live_backup() {
    local label=$1 dir=$RUN/cairn-$1 dbsize
    dbsize=$(python3 "$ROOT/bench/etcd_series.py" dbsize --endpoint "$ENDPOINT")
    record "live_$label.db_bytes" "$dbsize"
    tool_init cairn "$dir"
    log "cairn: live backup of the running etcd ($dbsize bytes) into a fresh repository"
    CMD=("$CAIRN" backup etcd --endpoints "$ENDPOINT" -r "$dir/repo" -k "$dir/write.key" --host bench --json)
    timed "cairn-live-$label" "$dir/repo"
    record "live_$label.wall" "$WALL"
    record "live_$label.rss_kb" "$RSS_KB"
    record "live_$label.repo_bytes" "$(repo_bytes "$dir/repo")"
    printf '%s\n' "$OUTSIDE" >"$RUN/live_$label.outside"
    log "cairn: live backup ${WALL}s, peak RSS ${RSS_KB} KB; files open outside the repository: ${OUTSIDE:-none}"
    # The same database again into the same repository: (almost) nothing new to store, which
    # separates what memory costs per new chunk from what it costs per byte streamed.
    log "cairn: live backup again, into the same repository"
    timed "cairn-live-$label-again" "$dir/repo"
    record "live_$label.again_wall" "$WALL"
    record "live_$label.again_rss_kb" "$RSS_KB"
    printf '%s\n' "$OUTSIDE" >"$RUN/live_$label.again.outside"
    log "cairn: live backup again ${WALL}s, peak RSS ${RSS_KB} KB; files open outside the repository: ${OUTSIDE:-none}"
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$dir"; fi

    # Reference: what a tool without a live source has to do first (a temporary file).
    log "reference: etcdctl snapshot save of the same database to a file"
    rm -f "$RUN/etcd-live/ref.db"
    CMD=(etcdctl --endpoints "$ENDPOINT" snapshot save "$RUN/etcd-live/ref.db")
    timed "etcdctl-save-$label"
    record "live_$label.etcdctl_wall" "$WALL"
    record "live_$label.etcdctl_rss_kb" "$RSS_KB"
    record "live_$label.etcdctl_file_bytes" "$(stat -c %s "$RUN/etcd-live/ref.db")"
    rm -f "$RUN/etcd-live/ref.db"
}

if [[ " $TOOLS " == *" cairn "* ]]; then
    log "live etcd: restoring day-7.db into a data dir and starting etcd"
    start_live_etcd
    log "live etcd at $ENDPOINT (pid $ETCD_PID)"
    live_backup small
    if [[ $BIG == 1 ]]; then
        python3 "$ROOT/bench/etcd_series.py" grow --endpoint "$ENDPOINT" --target-bytes 1e9 >/dev/null \
            || die "growing the live etcd failed"
        live_backup big
    fi
    stop_etcd
    rm -rf "$RUN/etcd-live"
fi

# ---------------------------------------------------------------------------------------------
# Report.

TOOLS="$TOOLS" BIG="$BIG" DAYS="$DAYS" SERIES_JSON="$SERIES/series.json" RUN="$RUN" \
    NPROC=$(nproc) CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
    MEM=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) \
    KERNEL=$(uname -r) FSTYPE=$(df --output=fstype "$WORK" | tail -n1) LOAD_START="$load_start" \
    LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
    CAIRN_VERSION="$cairn_version" RESTIC_VERSION="$restic_version" ETCD_VERSION="$etcd_version" \
    RUSTIC_VERSION="$([[ " $TOOLS " == *" rustic "* ]] && "$RUSTIC" --version 2>/dev/null | head -n1 || echo n/a)" \
    BORG_VERSION="$([[ " $TOOLS " == *" borg "* ]] && "$BORG" --version 2>/dev/null | head -n1 || echo n/a)" \
    python3 - "$RESULTS" <<'PY'
import json, os, sys

r = {}
for line in open(sys.argv[1]):
    k, v = line.split(None, 1)
    r[k] = float(v)
e = os.environ
tools = e["TOOLS"].split()
both = set(tools) >= {"cairn", "restic"}
days = int(e["DAYS"])
s = json.load(open(e["SERIES_JSON"]))
sizes = {d["day"]: d["bytes"] for d in s["days"]}
MB, MiB = 1e6, 2**20


def get(t, k):
    return r.get(f"{t}.{k}")


def fmt(v, f):
    return "n/a" if v is None else f.format(v)


def ratio(c, x, f="{:.2f}"):
    return f.format(c / x) if c is not None and x else "n/a"


def table(hdr, rows):
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


total_in = sum(sizes.values())
print("## cairn vs restic: a week of daily etcd snapshots\n")
print(f"- machine: {e['NPROC']} CPUs ({e['CPU']}), {e['MEM']} RAM, Linux {e['KERNEL']}, work dir on "
      f"{e['FSTYPE']}; load average at start {e['LOAD_START']}, at end {e['LOAD_END']}")
print(f"- cairn: {e['CAIRN_VERSION']}")
print(f"- restic: {e['RESTIC_VERSION']} (default compression: auto)")
if "rustic" in tools:
    print(f"- rustic: {e['RUSTIC_VERSION']} (defaults, its own repository)")
if "borg" in tools:
    print(f"- borg: {e['BORG_VERSION']} (repokey-blake2, zstd 3, default chunker; its own repository)")
print(f"- etcd: {e['ETCD_VERSION']} (Debian), one member on 127.0.0.1, snapshots by `etcdctl snapshot save`")
d1, d7 = s["days"][0], s["days"][-1]
print(f"- series: {days} daily snapshots, {d1['bytes'] / MB:.1f} MB ({d1['keys']:,} keys) on day 1 to "
      f"{d7['bytes'] / MB:.1f} MB ({d7['keys']:,} keys) on day 7, {total_in / MB:.0f} MB in all; each day 2% of "
      f"the keys updated, 0.5% created, 0.3% deleted, then compaction (no defrag)")
z = s.get("unique_pages_zstd3_stream_bytes")
print(f"- page-level limit: {s['unique_pages']:,} distinct 4 KiB pages over the week = "
      f"{s['unique_page_bytes'] / MB:.1f} MB ({total_in / s['unique_page_bytes']:.2f}x dedup)"
      + (f"; {z / MB:.1f} MB once compressed as one zstd -3 stream ({total_in / z:.1f}x)" if z else ""))
print("- each day's file is copied to the same staging path (new mtime) and backed up into the tool's "
      "own fresh repository; `sync` before each timed step; page cache warm; one run, no repetitions")
print("- MB = 10^6 bytes; added bytes = growth of `du -sb` of the repository; throughput = snapshot "
      "bytes / wall seconds; peak RSS from /usr/bin/time %M\n")

# Per day: added bytes.
print("### Per day: repository growth\n")
hdr = ["day", "snapshot MB", "4 KiB pages changed vs previous day"] + [f"{t} added MB" for t in tools]
if both:
    hdr.append("cairn/restic")
rows = []
for d in s["days"]:
    n = d["day"]
    row = [str(n), f"{d['bytes'] / MB:.1f}",
           "-" if d["changed_pages"] is None else f"{d['changed_pages']:,} ({100 * d['changed_pages'] / d['pages']:.1f}%)"]
    row += [fmt(get(t, f"day{n}.added") and get(t, f"day{n}.added") / MB, "{:.2f}") for t in tools]
    if both:
        row.append(ratio(get("cairn", f"day{n}.added"), get("restic", f"day{n}.added"), "{:.3f}"))
    rows.append(row)
table(hdr, rows)

# Per day: time, throughput, RSS.
print("### Per day: backup time, throughput, peak RSS\n")
hdr = ["day"] + [f"{t} s" for t in tools] + [f"{t} MB/s" for t in tools] + (["cairn/restic MB/s"] if both else []) \
    + [f"{t} RSS MiB" for t in tools]
rows = []
for d in s["days"]:
    n = d["day"]
    tp = {t: (d["bytes"] / MB / get(t, f"day{n}.wall")) if get(t, f"day{n}.wall") else None for t in tools}
    row = [str(n)] + [fmt(get(t, f"day{n}.wall"), "{:.2f}") for t in tools] + [fmt(tp[t], "{:.1f}") for t in tools]
    if both:
        row.append(ratio(tp["cairn"], tp["restic"]))
    row += [fmt(get(t, f"day{n}.rss_kb") and get(t, f"day{n}.rss_kb") / 1024, "{:.0f}") for t in tools]
    rows.append(row)
table(hdr, rows)

# Summary.
print("### Week summary\n")
incr = range(2, days + 1)


def s_total(t):
    return get(t, "repo_bytes")


def s_incr_tp(t):
    w = [get(t, f"day{n}.wall") for n in incr]
    return None if None in w else sum(sizes[n] for n in incr) / MB / sum(w)


def s_incr_added(t):
    a = [get(t, f"day{n}.added") for n in incr]
    return None if None in a else sum(a) / len(a) / MB


def s_incr_cpu(t):
    c = [get(t, f"day{n}.cpu") for n in incr]
    return None if None in c else sum(c) / len(c)


def s_rss(t):
    v = [get(t, f"day{n}.rss_kb") for n in range(1, days + 1)]
    return None if None in v else max(v) / 1024


summary = [
    ("total repository bytes after 7 days, MB", lambda t: s_total(t) and s_total(t) / MB, "{:.1f}",
     "<= 0.25", lambda x: x <= 0.25),
    ("dedup ratio (sum of snapshot sizes / repository bytes)", lambda t: s_total(t) and total_in / s_total(t), "{:.2f}x",
     None, None),
    ("day 1 (first) backup throughput, MB/s", lambda t: get(t, "day1.wall") and sizes[1] / MB / get(t, "day1.wall"),
     "{:.1f}", None, None),
    ("daily incremental backup throughput (days 2-7), MB/s", s_incr_tp, "{:.1f}", ">= 5", lambda x: x >= 5),
    ("mean added bytes per incremental day, MB", s_incr_added, "{:.2f}", None, None),
    ("mean CPU seconds (user + system) per incremental day", s_incr_cpu, "{:.2f}", None, None),
    ("peak RSS over the 7 backups, MiB", s_rss, "{:.0f}", None, None),
    ("restore of day 7, s", lambda t: get(t, "restore_wall"), "{:.2f}", None, None),
    ("restore of day 7, MB/s", lambda t: get(t, "restore_wall") and sizes[days] / MB / get(t, "restore_wall"),
     "{:.1f}", None, None),
    ("restore of day 7, peak RSS MiB", lambda t: get(t, "restore_rss_kb") and get(t, "restore_rss_kb") / 1024,
     "{:.0f}", None, None),
    ("restored file identical to day-7.db (cmp)", lambda t: get(t, "restore_identical"), "yes", None, None),
]
vs_rustic = "cairn" in tools and "rustic" in tools
vs_borg = "cairn" in tools and "borg" in tools
hdr = ["metric"] + tools + (["cairn/restic", "target (issue 3)"] if both else []) + (["cairn/rustic"] if vs_rustic else []) \
    + (["cairn/borg"] if vs_borg else [])
rows = []
for label, fn, f, target, ok in summary:
    vals = {}
    for t in tools:
        try:
            vals[t] = fn(t)
        except (TypeError, ZeroDivisionError):
            vals[t] = None
    row = [label] + [fmt(vals[t], f) for t in tools]
    if both:
        c, x = vals.get("cairn"), vals.get("restic")
        q = c / x if c is not None and x else None
        row.append("n/a" if q is None or f == "yes" else f"{q:.3g}")
        row.append("" if target is None else f"cairn/restic {target}: " + ("n/a" if q is None else ("met" if ok(q) else "**missed**")))
    for peer, wanted in (("rustic", vs_rustic), ("borg", vs_borg)):
        if wanted:
            c, x = vals.get("cairn"), vals.get(peer)
            row.append("n/a" if c is None or not x or f == "yes" else f"{c / x:.3g}")
    rows.append(row)
table(hdr, rows)

sha = [r.get(f"sha256.day{n}.wall") for n in incr]
if "cairn" in tools and None not in sha:
    cw = sum(get("cairn", f"day{n}.wall") for n in incr) / len(incr)
    line = (f"Floor of an incremental day: `openssl dgst -sha256` of the file alone (the trailer check, "
            f"one sequential hash) takes {sum(sha) / len(sha):.3f} s on average; cairn's whole backup "
            f"{cw:.3f} s ({cw / (sum(sha) / len(sha)):.2f}× the hash alone)")
    if "restic" in tools:
        rw = sum(get("restic", f"day{n}.wall") for n in incr) / len(incr)
        line += f"; 10× restic would be {rw / 10:.3f} s"
    print(line + ".\n")

if "cairn" in tools and "live_small.wall" in r:
    print("### Live backup (`cairn backup etcd --endpoints`, streamed: no temporary file)\n")
    print("An etcd started on day-7.db (restored with `etcdctl snapshot restore`)"
          + (", then grown to ~1 GB with 4-32 KB values" if e["BIG"] == "1" else "")
          + "; each live backup goes into a fresh repository. The cairn process's open files are "
          "sampled every 100 ms during the backup. For reference, `etcdctl snapshot save` of the same "
          "database to a file: what a tool without a live etcd source (restic) must write to disk first.\n")
    hdr = ["database", "cairn s", "cairn MB/s", "cairn peak RSS MiB", "files open outside the repository",
           "etcdctl save s", "etcdctl save RSS MiB", "temporary file MB (etcdctl)"]
    rows = []
    for lab in ("small", "big"):
        if f"live_{lab}.wall" not in r:
            continue
        db = r[f"live_{lab}.db_bytes"]
        for again, what in (("", "fresh repository"), ("again_", "again, same repository")):
            name = f"live_{lab}.again.outside" if again else f"live_{lab}.outside"
            outside = open(os.path.join(e["RUN"], name)).read().split()
            wall = r[f"live_{lab}.{again}wall"]
            rows.append([f"{db / MB:.0f} MB, {what}", f"{wall:.2f}", f"{db / MB / wall:.1f}",
                         f"{r[f'live_{lab}.{again}rss_kb'] / 1024:.0f}", ", ".join(outside) if outside else "none"]
                        + ([f"{r[f'live_{lab}.etcdctl_wall']:.2f}", f"{r[f'live_{lab}.etcdctl_rss_kb'] / 1024:.0f}",
                            f"{r[f'live_{lab}.etcdctl_file_bytes'] / MB:.0f}"] if not again else ["", "", ""]))
    table(hdr, rows)
    if "live_big.rss_kb" in r:
        print(f"Peak RSS, {r['live_big.db_bytes'] / MB:.0f} MB vs {r['live_small.db_bytes'] / MB:.0f} MB database: "
              f"{r['live_big.rss_kb'] / r['live_small.rss_kb']:.2f}x into a fresh repository, "
              f"{r['live_big.again_rss_kb'] / r['live_small.again_rss_kb']:.2f}x again into the same one "
              "(target: independent of the database size)\n")
PY
log "done; logs in $LOGS/etcd-*.log"
