#!/usr/bin/env bash
# cairn vs restic: forget / prune / check on a local repository holding 30 daily snapshots of a
# real etcd (~190 MB each), in the same run.
#
#   bash bench/prune.sh [WORKDIR]        (WORKDIR defaults to bench/work, git-ignored)
#
# Environment: BENCH_DAYS (default 30), BENCH_KEEP_LAST (default 7), BENCH_SEED (default 1),
# BENCH_KEEP=1 keeps the repositories. Markdown report on stdout, progress on stderr, tool output
# in WORKDIR/logs/prune-*.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
DATA=$WORK/data
RUN=$WORK/prune-run
LOGS=$WORK/logs
TOOLS="cairn restic"
CAIRN=${CAIRN_BIN:-$ROOT/target/release/cairn}
RESTIC=${RESTIC_BIN:-restic}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt
DAYS=${BENCH_DAYS:-30}
KEEP=${BENCH_KEEP_LAST:-7}
SEED=${BENCH_SEED:-1}

log() { printf '[prune %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }
repo_bytes() { du -sb "$1" | cut -f1; }

cleanup() {
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$RUN/cairn" "$RUN/restic" "$RUN/stage" "$RUN/cairn-bin"; fi
}
trap cleanup EXIT

[[ -x $CAIRN ]] || die "$CAIRN missing: cargo build --release -p cairn"
mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN"
mkdir -p "$RUN/stage"
: >"$RESULTS"
pin_versions
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# timed NAME -- CMD...: output to $LOGS/prune-NAME.log (stdout also kept in $RUN/NAME.out).
timed() {
    local name=$1 t0 t1
    shift 2
    printf '$ %s\n' "$*" >"$LOGS/prune-$name.log"
    sync
    t0=$(now)
    if ! "$TIME" -f '%e %M' -o "$RUN/$name.time" "$@" >"$RUN/$name.out" 2>>"$LOGS/prune-$name.log"; then
        cat "$RUN/$name.out" >>"$LOGS/prune-$name.log"
        tail -n 20 "$LOGS/prune-$name.log" >&2
        die "$name (full log: $LOGS/prune-$name.log)"
    fi
    t1=$(now)
    cat "$RUN/$name.out" >>"$LOGS/prune-$name.log"
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    record "$name.wall" "$WALL"
    record "$name.rss_kb" "$(awk 'END { print $2 }' "$RUN/$name.time")"
}

C=$RUN/cairn
R=$RUN/restic
mkdir -p "$C" "$R"
out=$("$CAIRN" key generate -o "$C/identity.txt" 2>>"$LOGS/prune-init.log")
RECIP=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1)
[[ -n $RECIP ]] || die "no recipient from cairn key generate"
"$CAIRN" init --repo "$C/repo" --recipient "$RECIP" >>"$LOGS/prune-init.log" 2>&1 || die "cairn init"
"$CAIRN" key write-key --repo "$C/repo" -i "$C/identity.txt" -o "$C/write.key" >>"$LOGS/prune-init.log" 2>&1 \
    || die "cairn key write-key"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$R/repo RESTIC_CACHE_DIR=$R/cache
"$RESTIC" init >>"$LOGS/prune-init.log" 2>&1 || die "restic init"

# The series: one snapshot file a day from a real etcd (bench/etcd_series.py, generated once into
# $SERIES_WORK), copied in place over one staging file, as a timer on a control-plane host would.
SERIES_WORK=$WORK/series-$DAYS
SERIES=$SERIES_WORK/data/etcd-series
log "series: $SERIES ($DAYS days from a real etcd; generated if missing, a few minutes)"
python3 "$ROOT/bench/etcd_series.py" series "$SERIES_WORK" --days "$DAYS" --seed "$SEED" >/dev/null \
    || die "series generation failed"
STAGE=$RUN/stage/snapshot.db
SNAP_BYTES=$(stat -c %s "$SERIES/day-$DAYS.db")
for day in $(seq 1 "$DAYS"); do
    cp "$SERIES/day-$day.db" "$STAGE"
    touch -d "2026-01-01 + $day days" "$STAGE"
    timed "cairn.day$day" -- "$CAIRN" backup etcd --repo "$C/repo" --key "$C/write.key" --host bench \
        --snapshot-file "$STAGE"
    timed "restic.day$day" -- "$RESTIC" backup --host bench "$STAGE"
    log "day $day/$DAYS backed up (cairn $(awk 'END{print $1}' "$RUN/cairn.day$day.time")s, restic $(awk 'END{print $1}' "$RUN/restic.day$day.time")s)"
done
record cairn.before_forget "$(repo_bytes "$C/repo")"
record restic.before_forget "$(repo_bytes "$R/repo")"

# ------------------------------------------------------------------------------------------
# forget all but the last $KEEP (cairn with the identity from here on)
export CAIRN_REPO=$C/repo CAIRN_IDENTITY=$C/identity.txt
log "forget --keep-last $KEEP"
timed cairn.forget -- "$CAIRN" forget --keep-last "$KEEP"
timed restic.forget -- "$RESTIC" forget --keep-last "$KEEP"

for t in cairn restic; do
    dir=$C/repo
    [[ $t == restic ]] && dir=$R/repo
    record "$t.before_prune" "$(repo_bytes "$dir")"
done

log "prune"
timed cairn.prune -- "$CAIRN" prune
record cairn.after_prune "$(repo_bytes "$C/repo")"
timed restic.prune -- "$RESTIC" prune
record restic.after_prune "$(repo_bytes "$R/repo")"

log "check"
timed cairn.check -- "$CAIRN" check --json
timed restic.check -- "$RESTIC" check
log "check --read-data"
timed cairn.readdata -- "$CAIRN" check --read-data --json
timed restic.readdata -- "$RESTIC" check --read-data

# blob counts
python3 - "$RUN/cairn.check.out" <<'PY' >"$RUN/cairn.blobs" || true
import json, sys
txt = open(sys.argv[1]).read()
def find(o):
    if isinstance(o, dict):
        if "blobs" in o and isinstance(o["blobs"], (int, float)):
            return o["blobs"]
        for v in o.values():
            r = find(v)
            if r is not None:
                return r
    return None
for chunk in [txt] + txt.splitlines()[::-1]:
    try:
        r = find(json.loads(chunk))
    except Exception:
        continue
    if r is not None:
        print(int(r)); break
PY
record cairn.blobs "$(cat "$RUN/cairn.blobs" 2>/dev/null | grep -E '^[0-9]+$' || echo 0)"
"$RESTIC" stats --mode raw-data >"$RUN/restic.stats" 2>>"$LOGS/prune-stats.log" || die "restic stats"
cat "$RUN/restic.stats" >>"$LOGS/prune-stats.log"
record restic.blobs "$(awk -F: '/[Bb]lob [Cc]ount/ { gsub(/ /, "", $2); print $2 }' "$RUN/restic.stats" | head -n1)"

# sequential read of the repository files (page cache warm: they were just read by check)
for t in cairn restic; do
    dir=$C/repo
    [[ $t == restic ]] && dir=$R/repo
    t0=$(now)
    find "$dir" -type f -print0 | xargs -0 cat >/dev/null
    t1=$(now)
    record "$t.cat_wall" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------------------------------
CAIRN_VERSION="$cairn_version" RESTIC_VERSION="$restic_version" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" \
    DAYS="$DAYS" KEEP="$KEEP" SNAP="$SNAP_BYTES" NPROC=$(nproc) \
    python3 - "$RESULTS" <<'PY'
import os, sys
r = {}
for line in open(sys.argv[1]):
    k, v = line.split(None, 1)
    r[k] = float(v)
e = os.environ
MB = 1e6
days, keep = int(e["DAYS"]), int(e["KEEP"])
g = lambda t, k: r.get(f"{t}.{k}")
for t in ("cairn", "restic"):
    r[f"{t}.backup_sum"] = sum(g(t, f"day{d}.wall") for d in range(1, days + 1))
    r[f"{t}.backup_rss"] = max(g(t, f"day{d}.rss_kb") for d in range(1, days + 1))
    r[f"{t}.freed"] = g(t, "before_prune") - g(t, "after_prune")
print(f"## forget / prune / check: {days} daily etcd snapshots (last {int(e['SNAP']) / MB:.0f} MB), keep last {keep}\n")
print(f"- cairn: {e['CAIRN_VERSION']} (`backup etcd --snapshot-file`, `forget --keep-last {keep}`, `prune`, `check`)")
print(f"- restic: {e['RESTIC_VERSION']} (prune with its defaults, --max-unused 5%)")
print(f"- series: bench/etcd_series.py with a real etcd (each day 2% of keys updated, 0.5% created, 0.3% deleted, compacted); "
      f"local disk, page cache warm, one run each; {e['NPROC']} CPUs; load average at start {e['LOAD_START']}, at end {e['LOAD_END']}")
print("- MB = 10^6 bytes; check MB/s = repository bytes after prune / wall seconds\n")
print("| metric | cairn | restic | cairn/restic |")
print("|---|---:|---:|---:|")
def line(metric, fn, fmt, better):
    try:
        c = fn("cairn")
    except (TypeError, ZeroDivisionError):
        c = None
    try:
        s = fn("restic")
    except (TypeError, ZeroDivisionError):
        s = None
    cell = lambda v: "n/a" if v is None else fmt.format(v)
    ratio = f"{c / s:.3g}" if c is not None and s else "n/a"
    label = f"{metric} ({better} is better)" if better else metric
    print(f"| {label} | {cell(c)} | {cell(s)} | {ratio} |")
line(f"{days} daily backups, total wall s", lambda t: g(t, "backup_sum"), "{:.1f}", "lower")
line("daily backup, max peak RSS MiB", lambda t: g(t, "backup_rss") / 1024, "{:.0f}", "lower")
line(f"repository MB after {days} days", lambda t: g(t, "before_forget") / MB, "{:.1f}", "lower")
line("forget wall s", lambda t: g(t, "forget.wall"), "{:.2f}", "lower")
line("prune wall s", lambda t: g(t, "prune.wall"), "{:.2f}", "lower")
line("prune peak RSS MiB", lambda t: g(t, "prune.rss_kb") / 1024, "{:.0f}", "lower")
line("prune: MB freed", lambda t: g(t, "freed") / MB, "{:.1f}", "higher")
line("repository MB after prune", lambda t: g(t, "after_prune") / MB, "{:.1f}", "lower")
line("check wall s", lambda t: g(t, "check.wall"), "{:.2f}", "lower")
line("check peak RSS MiB", lambda t: g(t, "check.rss_kb") / 1024, "{:.0f}", "lower")
line("check --read-data wall s", lambda t: g(t, "readdata.wall"), "{:.2f}", "lower")
line("check --read-data MB/s", lambda t: g(t, "after_prune") / MB / g(t, "readdata.wall"), "{:.1f}", "higher")
line("check --read-data peak RSS MiB", lambda t: g(t, "readdata.rss_kb") / 1024, "{:.0f}", "lower")
line("cat of all repository files, MB/s (page cache warm)", lambda t: g(t, "after_prune") / MB / g(t, "cat_wall"), "{:.0f}", "higher")
line("blobs after prune", lambda t: g(t, "blobs") or None, "{:,.0f}", None)
line("prune peak RSS MiB per million blobs", lambda t: g(t, "prune.rss_kb") / 1024 / (g(t, "blobs") / 1e6), "{:.0f}", "lower")
line("check peak RSS MiB per million blobs", lambda t: g(t, "check.rss_kb") / 1024 / (g(t, "blobs") / 1e6), "{:.0f}", "lower")
line("check --read-data peak RSS MiB per million blobs", lambda t: g(t, "readdata.rss_kb") / 1024 / (g(t, "blobs") / 1e6), "{:.0f}", "lower")
PY
log "done; logs in $LOGS/prune-*.log"
