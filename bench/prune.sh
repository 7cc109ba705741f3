#!/usr/bin/env bash
# cairn vs restic: forget / prune / check on local repositories holding N daily snapshots of a
# real etcd (default 30, ~190-200 MB each), in the same run.
#
#   bash bench/prune.sh [WORKDIR]        (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   BENCH_DAYS         daily snapshots backed up (default 30)
#   BENCH_SERIES_DAYS  length of the etcd series to use/generate (default BENCH_DAYS; must be
#                      >= BENCH_DAYS: e.g. BENCH_DAYS=5 BENCH_SERIES_DAYS=30 reuses the 30-day
#                      series for a quick run)
#   BENCH_KEEP_LAST    forget --keep-last N (default 7)
#   BENCH_SEED         series seed (default 1)
#   BENCH_KEEP=1       keep the repositories instead of deleting them at the end
#   CAIRN_BIN          cairn binary (default target/release/cairn, built if missing)
#   RESTIC_BIN         restic binary (default: restic on PATH)
#   RUSTIC_BIN         rustic binary (default: rustic on PATH, else /tmp/rustic/bin/rustic; left
#                      out if missing). rustic works on restic's repositories: its prune
#                      (--instant-delete, as cairn and restic delete in the same run) runs on a
#                      copy of restic's repository after the forget, its check --read-data on
#                      restic's pruned repository
#   BENCH_ROUNDS       rounds of each check --read-data (default 3; the median is reported)
#
# The series is made by bench/etcd_series.py with a real etcd (WORKDIR/series-N/data/etcd-series,
# generated once, ~2 minutes for 30 days, reused). Each day's file is copied over one staging file
# (same path, new content and mtime) and backed up by both tools into their own fresh repository.
# Then `forget --keep-last N` (the real commands of both tools; the run fails unless exactly N
# snapshots are left), `prune`, a read of the repository files (page cache, and O_DIRECT for the
# device), `check`, `check --read-data`, blob counts, and a restore of the latest snapshot compared
# with the last day's file. Markdown report on stdout, progress on stderr, tool output in
# WORKDIR/logs/prune-*.log, raw figures in WORKDIR/prune-run/results.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
RUN=$WORK/prune-run
LOGS=$WORK/logs
TOOLS="cairn restic"
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
RESTIC=${RESTIC_BIN:-restic}
RUSTIC=${RUSTIC_BIN:-$(command -v rustic || echo /tmp/rustic/bin/rustic)}
ROUNDS=${BENCH_ROUNDS:-3}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt
DAYS=${BENCH_DAYS:-30}
SERIES_DAYS=${BENCH_SERIES_DAYS:-$DAYS}
KEEP=${BENCH_KEEP_LAST:-7}
SEED=${BENCH_SEED:-1}

unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE RESTIC_REPOSITORY RESTIC_PASSWORD

log() { printf '[prune %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }
repo_bytes() { du -sb "$1" | cut -f1; }

cleanup() {
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$RUN/cairn" "$RUN/restic" "$RUN/stage" "$RUN/cairn-bin" "$RUN/rustic-copy"; fi
}
trap cleanup EXIT

[[ -x $TIME ]] || die "$TIME (GNU time) is needed for peak RSS"
for b in etcd etcdctl python3 dd; do command -v "$b" >/dev/null || die "$b not found"; done
((SERIES_DAYS >= DAYS && KEEP < DAYS)) || die "need BENCH_SERIES_DAYS >= BENCH_DAYS > BENCH_KEEP_LAST"
need_tools
RUSTIC_VERSION=n/a
if [[ -x $RUSTIC ]]; then
    RUSTIC_VERSION=$("$RUSTIC" --version 2>/dev/null | head -n1)
else
    log "rustic not found ($RUSTIC): left out (cargo install rustic-rs --locked --no-default-features --root /tmp/rustic)"
    RUSTIC=
fi

mkdir -p "$WORK" "$LOGS"
SERIES_WORK=$WORK/series-$SERIES_DAYS
SERIES=$SERIES_WORK/data/etcd-series
log "series: $SERIES ($SERIES_DAYS days from a real etcd; generated if missing, ~4 s a day)"
python3 "$ROOT/bench/etcd_series.py" series "$SERIES_WORK" --days "$SERIES_DAYS" --seed "$SEED" >/dev/null \
    || die "series generation failed"
for d in $(seq 1 "$DAYS"); do [[ -f $SERIES/day-$d.db ]] || die "$SERIES/day-$d.db missing"; done

rm -rf "$RUN"
mkdir -p "$RUN/stage"
: >"$RESULTS"
pin_versions
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_START"

# timed NAME -- CMD...: stdout to $RUN/NAME.out, both streams to $LOGS/prune-NAME.log; records
# NAME.wall, NAME.rss_kb, NAME.cpu (user + system seconds).
timed() {
    local name=$1 t0 t1 lf=$LOGS/prune-$1.log
    shift 2
    printf '$ %s\n' "$*" >"$lf"
    sync
    t0=$(now)
    if ! "$TIME" -f '%e %M %U %S' -o "$RUN/$name.time" "$@" >"$RUN/$name.out" 2>>"$lf"; then
        cat "$RUN/$name.out" >>"$lf"
        tail -n 20 "$lf" >&2
        die "$name (full log: $lf)"
    fi
    t1=$(now)
    cat "$RUN/$name.out" >>"$lf"
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    record "$name.wall" "$WALL"
    record "$name.rss_kb" "$(awk 'END { print $2 }' "$RUN/$name.time")"
    record "$name.cpu" "$(awk 'END { print $3 + $4 }' "$RUN/$name.time")"
}

C=$RUN/cairn
R=$RUN/restic
mkdir -p "$C" "$R"
out=$("$CAIRN" key generate -o "$C/identity.txt" 2>>"$LOGS/prune-init.log")
RECIP=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
[[ -n $RECIP ]] || die "no recipient from cairn key generate: $out"
"$CAIRN" init -r "$C/repo" --recipient "$RECIP" >>"$LOGS/prune-init.log" 2>&1 || die "cairn init"
"$CAIRN" key write-key -r "$C/repo" -i "$C/identity.txt" -o "$C/write.key" >>"$LOGS/prune-init.log" 2>&1 \
    || die "cairn key write-key"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$R/repo RESTIC_CACHE_DIR=$R/cache
"$RESTIC" init >>"$LOGS/prune-init.log" 2>&1 || die "restic init"

# ---------------------------------------------------------------------------------------------
# N daily backups: each day's file copied in place over one staging file, as a timer on a
# control-plane host would leave it; cairn with the write key (as hosts run it).

STAGE=$RUN/stage/snapshot.db
INPUT=0
for day in $(seq 1 "$DAYS"); do
    cp "$SERIES/day-$day.db" "$STAGE"
    touch "$STAGE"
    INPUT=$((INPUT + $(stat -c %s "$STAGE")))
    timed "cairn.day$day" -- "$CAIRN" backup etcd -r "$C/repo" -k "$C/write.key" --host bench --snapshot-file "$STAGE"
    timed "restic.day$day" -- "$RESTIC" backup --host bench "$STAGE"
    log "day $day/$DAYS backed up (cairn $(awk 'END{print $1}' "$RUN/cairn.day$day.time")s, restic $(awk 'END{print $1}' "$RUN/restic.day$day.time")s)"
done
record input_bytes "$INPUT"
record last_bytes "$(stat -c %s "$SERIES/day-$DAYS.db")"
record first_bytes "$(stat -c %s "$SERIES/day-1.db")"
record cairn.before_forget "$(repo_bytes "$C/repo")"
record restic.before_forget "$(repo_bytes "$R/repo")"

# From here on cairn runs with the identity (prune repacks, check reads data).
export CAIRN_REPO=$C/repo CAIRN_IDENTITY=$C/identity.txt
count_snapshots() {
    case $1 in
    cairn) "$CAIRN" snapshots --json 2>>"$LOGS/prune-snapshots.log" ;;
    restic) "$RESTIC" snapshots --json 2>>"$LOGS/prune-snapshots.log" ;;
    esac | python3 -c 'import json, sys; print(len(json.load(sys.stdin) or []))'
}
for t in $TOOLS; do
    n=$(count_snapshots "$t")
    [[ $n == "$DAYS" ]] || die "$t: $n snapshots before forget, expected $DAYS"
done

# ---------------------------------------------------------------------------------------------
log "forget --keep-last $KEEP (cairn forget, restic forget)"
timed cairn.forget -- "$CAIRN" forget --keep-last "$KEEP"
timed restic.forget -- "$RESTIC" forget --keep-last "$KEEP"
for t in $TOOLS; do
    n=$(count_snapshots "$t")
    record "$t.snapshots_after_forget" "$n"
    [[ $n == "$KEEP" ]] || die "$t: $n snapshots left after forget --keep-last $KEEP (see $LOGS/prune-$t.forget.log)"
done
record cairn.before_prune "$(repo_bytes "$C/repo")"
record restic.before_prune "$(repo_bytes "$R/repo")"
KEPT=0
for d in $(seq $((DAYS - KEEP + 1)) "$DAYS"); do KEPT=$((KEPT + $(stat -c %s "$SERIES/day-$d.db"))); done
record kept_bytes "$KEPT"

# For comparison (cairn only): prune of a copy of the same repository that deletes wholly unused
# packs and repacks none (--max-unused 100), the only thing restic's prune had to do here.
rm -rf "$RUN/cairn-copy"
cp -al "$C/repo" "$RUN/cairn-copy" # hard links: both tools only create and delete files
timed cairn.prune100 -- "$CAIRN" prune -r "$RUN/cairn-copy" --max-unused 100
record cairn.after_prune100 "$(repo_bytes "$RUN/cairn-copy")"
rm -rf "$RUN/cairn-copy"

# rustic prunes a copy of restic's repository after the same forget.
if [[ -n $RUSTIC ]]; then
    rm -rf "$RUN/rustic-copy"
    cp -al "$R/repo" "$RUN/rustic-copy"
    # --instant-delete: rustic otherwise only marks unused packs (deleted by a prune a day later).
    timed rustic.prune -- env RUSTIC_PASSWORD=bench "$RUSTIC" --no-cache -r "$RUN/rustic-copy" prune --instant-delete
    record rustic.after_prune "$(repo_bytes "$RUN/rustic-copy")"
    rm -rf "$RUN/rustic-copy"
fi

log "prune"
timed cairn.prune -- "$CAIRN" prune
record cairn.after_prune "$(repo_bytes "$C/repo")"
timed restic.prune -- "$RESTIC" prune
record restic.after_prune "$(repo_bytes "$R/repo")"
# What each prune rewrote: cairn "... (N live blobs rewritten) ...", restic "to repack: N blobs / X".
record cairn.repacked_blobs "$(grep -o '[0-9]* live blobs rewritten' "$RUN/cairn.prune.out" | awk '{ s += $1 } END { print s + 0 }')"
record restic.repacked_blobs "$(awk '/^to repack:/ { print $3 + 0 }' "$RUN/restic.prune.out" | head -n1)"

# ---------------------------------------------------------------------------------------------
# Read rates of the repository files, for comparison with check --read-data: through the page
# cache (warmed first, as it is for the checks) and with O_DIRECT (the device).
read_rates() {
    local t=$1 dir=$2 t0 t1 f
    find "$dir" -type f -print0 | xargs -0 cat >/dev/null # warm
    t0=$(now)
    find "$dir" -type f -print0 | xargs -0 cat >/dev/null
    t1=$(now)
    record "$t.cat_wall" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    t0=$(now)
    while IFS= read -r -d '' f; do
        dd if="$f" of=/dev/null bs=4M iflag=direct status=none 2>>"$LOGS/prune-dd.log" || echo "dd failed: $f" >>"$LOGS/prune-dd.log"
    done < <(find "$dir" -type f -print0)
    t1=$(now)
    record "$t.direct_wall" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    record "$t.repo_files" "$(find "$dir" -type f | wc -l)"
    find "$dir" -type f -print0 | xargs -0 cat >/dev/null # warm again for the checks
}
log "read rates of the repository files (page cache warm; O_DIRECT)"
: >"$LOGS/prune-dd.log"
read_rates cairn "$C/repo"
read_rates restic "$R/repo"

log "check (structure)"
timed cairn.check -- "$CAIRN" check --json
timed restic.check -- "$RESTIC" check
log "check --read-data ($ROUNDS rounds each, median)"
# median NAME: NAME.wall/.cpu/.rss_kb of the median round (by wall time) of NAME.r1..rN.
median() {
    local name=$1 best
    best=$(for i in $(seq 1 "$ROUNDS"); do printf '%s %s\n' "$(awk -v k="$name.r$i.wall" '$1 == k { print $2 }' "$RESULTS")" "$i"; done |
        sort -n | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m { print $2 }')
    for k in wall cpu rss_kb; do
        record "$name.$k" "$(awk -v k="$name.r$best.$k" '$1 == k { print $2 }' "$RESULTS")"
    done
    cp "$RUN/$name.r$best.out" "$RUN/$name.out"
}
for i in $(seq 1 "$ROUNDS"); do
    timed "cairn.readdata.r$i" -- "$CAIRN" check --read-data --json
    timed "restic.readdata.r$i" -- "$RESTIC" check --read-data
    if [[ -n $RUSTIC ]]; then
        timed "rustic.readdata.r$i" -- env RUSTIC_PASSWORD=bench "$RUSTIC" --no-cache -r "$R/repo" check --read-data
    fi
done
median cairn.readdata
median restic.readdata
[[ -z $RUSTIC ]] || median rustic.readdata
python3 - "$RUN/cairn.readdata.out" <<'PY' >>"$RESULTS" || die "cairn check --json output not understood"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["clean"], j
for k in ("blobs", "packs", "packs_read", "bytes_read", "blobs_verified", "snapshots"):
    print(f"cairn.{k} {j[k]}")
PY

# Blob counts and a baseline RSS (a command that loads little: `snapshots`), for memory per blob.
timed restic.stats -- "$RESTIC" stats --mode raw-data
record restic.blobs "$(awk -F: '/Total Blob Count/ { gsub(/ /, "", $2); print $2 }' "$RUN/restic.stats.out" | head -n1)"
timed cairn.snapshots -- "$CAIRN" snapshots
timed restic.snapshots -- "$RESTIC" snapshots

# The latest snapshot still restores to the last day's file.
log "restore latest (day $DAYS) and compare"
timed cairn.restore -- "$CAIRN" restore latest --layout cluster-backup --target "$RUN/cairn-restore"
cmp "$SERIES/day-$DAYS.db" "$(find "$RUN/cairn-restore" -name 'snapshot_*.db' | head -n1)" \
    || die "cairn restore after prune differs from day-$DAYS.db"
timed restic.restore -- "$RESTIC" restore latest --target "$RUN/restic-restore"
cmp "$SERIES/day-$DAYS.db" "$RUN/restic-restore$STAGE" || die "restic restore after prune differs from day-$DAYS.db"
rm -rf "$RUN/cairn-restore" "$RUN/restic-restore"
record restore_identical 1

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at end: $LOAD_END"

# ---------------------------------------------------------------------------------------------
CAIRN_VERSION="$cairn_version" RESTIC_VERSION="$restic_version" RUSTIC_VERSION="$RUSTIC_VERSION" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" \
    DAYS="$DAYS" KEEP="$KEEP" ROUNDS="$ROUNDS" SERIES_DAYS="$SERIES_DAYS" SERIES_JSON="$SERIES/series.json" NPROC=$(nproc) \
    CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
    MEM=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) \
    KERNEL=$(uname -r) FSTYPE=$(df --output=fstype "$WORK" | tail -n1) \
    ETCD_VERSION=$(etcd --version | sed -n '1s/^etcd Version: //p') \
    python3 - "$RESULTS" <<'PY'
import json, os, sys

r = {}
for line in open(sys.argv[1]):
    k, v = line.split(None, 1)
    r[k] = float(v)
e = os.environ
MB = 1e6
days, keep = int(e["DAYS"]), int(e["KEEP"])
tools = ("cairn", "restic")


def g(t, k):
    return r.get(f"{t}.{k}")


for t in tools:
    r[f"{t}.backup_sum"] = sum(g(t, f"day{d}.wall") for d in range(1, days + 1))
    r[f"{t}.backup_cpu"] = sum(g(t, f"day{d}.cpu") for d in range(1, days + 1))
    r[f"{t}.backup_rss"] = max(g(t, f"day{d}.rss_kb") for d in range(1, days + 1))
    r[f"{t}.freed"] = g(t, "before_prune") - g(t, "after_prune")
try:
    s = json.load(open(e["SERIES_JSON"]))
    pages = [d["changed_pages"] / d["pages"] for d in s["days"][1:days] if d.get("changed_pages") is not None]
    churn = f"; {100 * sum(pages) / len(pages):.1f}% of the 4 KiB pages change from one day to the next (mean)" if pages else ""
    keys = f", {s['days'][0]['keys']:,} keys on day 1, {s['days'][days - 1]['keys']:,} on day {days}"
except (OSError, KeyError, IndexError, ValueError):
    churn = keys = ""

print(f"## forget / prune / check: {days} daily etcd snapshots, keep the last {keep}\n")
print(f"- machine: {e['NPROC']} CPUs ({e['CPU']}), {e['MEM']} RAM, Linux {e['KERNEL']}, repositories on "
      f"{e['FSTYPE']}; load average at start {e['LOAD_START']}, at end {e['LOAD_END']} (other jobs were running)")
print(f"- cairn: {e['CAIRN_VERSION']}")
print(f"- restic: {e['RESTIC_VERSION']} (defaults: compression auto, prune --max-unused 5%)")
print(f"- rustic: {e['RUSTIC_VERSION']} (on restic's repositories, `--no-cache`: `prune --instant-delete` on a copy after the forget, "
      f"check --read-data on restic's pruned repository)")
print(f"- data: the real etcd series of bench/etcd_series.py (etcd {e['ETCD_VERSION']}, `etcdctl snapshot save`; "
      f"days 1-{days} of a {e['SERIES_DAYS']}-day series, seed 1): {r['first_bytes'] / MB:.1f} MB on day 1 to "
      f"{r['last_bytes'] / MB:.1f} MB on day {days}, {r['input_bytes'] / MB:,.0f} MB in all{keys}; each day 2% of "
      f"the keys updated, 0.5% created, 0.3% deleted, then compaction{churn}")
print(f"- each day's file is copied over one staging file and backed up by both tools (cairn: `backup etcd "
      f"--snapshot-file` with the write key; restic: `backup`), each into its own fresh local repository; then "
      f"`cairn forget --keep-last {keep}` / `restic forget --keep-last {keep}` (both leave {keep} snapshots, checked), "
      f"`prune`, `check`, `check --read-data` (cairn with the identity)")
print("- page cache warm for everything (the repository files are read once before the checks); one run each; "
      "`sync` before each timed step; MB = 10^6 bytes; check MB/s = repository bytes after prune / wall seconds; "
      "peak RSS from /usr/bin/time; blobs: cairn `check --json` `blobs`, restic `stats --mode raw-data`\n")

rows = []


def line(metric, fn, fmt, better=None):
    vals = {}
    for t in tools:
        try:
            vals[t] = fn(t)
        except (TypeError, ZeroDivisionError):
            vals[t] = None
    c, s = vals["cairn"], vals["restic"]
    cell = lambda v: "n/a" if v is None else fmt.format(v)
    ratio = f"{c / s:.3g}" if c is not None and s else "n/a"
    label = f"{metric} ({better} is better)" if better else metric
    print(f"| {label} | {cell(c)} | {cell(s)} | {ratio} |")


print("| metric | cairn | restic | cairn/restic |")
print("|---|---:|---:|---:|")
line(f"{days} daily backups, total wall s", lambda t: g(t, "backup_sum"), "{:.1f}", "lower")
line(f"{days} daily backups, MB/s", lambda t: r["input_bytes"] / MB / g(t, "backup_sum"), "{:.0f}", "higher")
line("daily backup, max peak RSS MiB", lambda t: g(t, "backup_rss") / 1024, "{:.0f}", "lower")
line(f"repository MB after {days} days", lambda t: g(t, "before_forget") / MB, "{:.1f}", "lower")
line(f"forget --keep-last {keep}, wall s", lambda t: g(t, "forget.wall"), "{:.2f}", "lower")
line("snapshots left after forget", lambda t: g(t, "snapshots_after_forget"), "{:.0f}")
line("**prune wall s**", lambda t: g(t, "prune.wall"), "{:.2f}", "lower")
line("prune CPU s (user + system)", lambda t: g(t, "prune.cpu"), "{:.2f}", "lower")
line("prune peak RSS MiB", lambda t: g(t, "prune.rss_kb") / 1024, "{:.0f}", "lower")
line("prune: MB freed", lambda t: g(t, "freed") / MB, "{:.1f}")
line("prune: blobs repacked (rewritten)", lambda t: g(t, "repacked_blobs"), "{:,.0f}")
line("repository MB after prune", lambda t: g(t, "after_prune") / MB, "{:.1f}", "lower")
line("cairn prune --max-unused 100 (no repacking; on a copy) vs restic prune, wall s", lambda t: g(t, "prune100.wall") if t == "cairn" else g(t, "prune.wall"), "{:.2f}", "lower")
line("  repository MB after that prune", lambda t: g(t, "after_prune100") / MB if t == "cairn" else g(t, "after_prune") / MB, "{:.1f}", "lower")
line("repository files after prune", lambda t: g(t, "repo_files"), "{:,.0f}")
line("check wall s", lambda t: g(t, "check.wall"), "{:.2f}", "lower")
line("check peak RSS MiB", lambda t: g(t, "check.rss_kb") / 1024, "{:.0f}", "lower")
line("**check --read-data wall s**", lambda t: g(t, "readdata.wall"), "{:.2f}", "lower")
line("check --read-data MB/s (repository bytes)", lambda t: g(t, "after_prune") / MB / g(t, "readdata.wall"), "{:.0f}", "higher")
line(f"check --read-data MB/s (bytes of the {keep} kept snapshots)", lambda t: r["kept_bytes"] / MB / g(t, "readdata.wall"), "{:.0f}", "higher")
line("check --read-data CPU s (user + system)", lambda t: g(t, "readdata.cpu"), "{:.2f}", "lower")
line("check --read-data peak RSS MiB", lambda t: g(t, "readdata.rss_kb") / 1024, "{:.0f}", "lower")
line("read of the repository files, page cache (cat), MB/s", lambda t: g(t, "after_prune") / MB / g(t, "cat_wall"), "{:,.0f}")
line("read of the repository files, O_DIRECT (dd, device), MB/s", lambda t: g(t, "after_prune") / MB / g(t, "direct_wall"), "{:,.0f}")
line("check --read-data MB/s / O_DIRECT read MB/s", lambda t: g(t, "direct_wall") / g(t, "readdata.wall"), "{:.2f}", "higher")
line("blobs after prune", lambda t: g(t, "blobs"), "{:,.0f}")
line("peak RSS of `snapshots` (baseline) MiB", lambda t: g(t, "snapshots.rss_kb") / 1024, "{:.0f}")
per = lambda k: (lambda t: g(t, k + ".rss_kb") / 1024 / (g(t, "blobs") / 1e6))
above = lambda k: (lambda t: (g(t, k + ".rss_kb") - g(t, "snapshots.rss_kb")) / 1024 / (g(t, "blobs") / 1e6))
line("prune peak RSS MiB per million blobs", per("prune"), "{:,.0f}", "lower")
line("  same, above the baseline", above("prune"), "{:,.0f}", "lower")
line("check peak RSS MiB per million blobs", per("check"), "{:,.0f}", "lower")
line("  same, above the baseline", above("check"), "{:,.0f}", "lower")
line("check --read-data peak RSS MiB per million blobs", per("readdata"), "{:,.0f}", "lower")
line("  same, above the baseline", above("readdata"), "{:,.0f}", "lower")
line(f"restore of day {days} after prune, s (identical: cmp)", lambda t: g(t, "restore.wall"), "{:.2f}", "lower")

rounds = int(e.get("ROUNDS", "1"))
if g("rustic", "prune.wall") is not None or g("rustic", "readdata.wall") is not None:
    print(f"\n### cairn vs restic vs rustic (check --read-data: median of {rounds} rounds)\n")
    print("| metric | cairn | restic | rustic | cairn/restic | cairn/rustic |")
    print("|---|---:|---:|---:|---:|---:|")

    def three(metric, fn, fmt):
        vals = []
        for t in ("cairn", "restic", "rustic"):
            try:
                vals.append(fn(t))
            except (TypeError, ZeroDivisionError):
                vals.append(None)
        cell = lambda v: "n/a" if v is None else fmt.format(v)
        ratio = lambda a, b: f"{a / b:.3g}" if a is not None and b else "n/a"
        print(f"| {metric} | {' | '.join(cell(v) for v in vals)} | {ratio(vals[0], vals[1])} | {ratio(vals[0], vals[2])} |")

    # rustic works on restic's repository: its bytes are restic's.
    repo_after = lambda t: g("restic" if t == "rustic" else t, "after_prune")
    three("prune wall s (lower is better)", lambda t: g(t, "prune.wall"), "{:.2f}")
    three("prune CPU s", lambda t: g(t, "prune.cpu"), "{:.2f}")
    three("prune peak RSS MiB", lambda t: g(t, "prune.rss_kb") / 1024, "{:.0f}")
    three("repository MB after prune", lambda t: g(t, "after_prune") / MB, "{:.1f}")
    three("check --read-data wall s", lambda t: g(t, "readdata.wall"), "{:.2f}")
    three("check --read-data MB/s of repository bytes (higher is better)", lambda t: repo_after(t) / MB / g(t, "readdata.wall"), "{:.0f}")
    three(f"check --read-data MB/s of the {keep} kept snapshots' bytes", lambda t: r["kept_bytes"] / MB / g(t, "readdata.wall"), "{:.0f}")
    three("check --read-data CPU s", lambda t: g(t, "readdata.cpu"), "{:.2f}")
    three("check --read-data peak RSS MiB", lambda t: g(t, "readdata.rss_kb") / 1024, "{:.0f}")

print("\n### Targets (issue 16, goal 4)\n")
try:
    pr = g("cairn", "prune.wall") / g("restic", "prune.wall")
    print(f"- cairn prune <= restic prune time: cairn/restic = {pr:.2f}: {'met' if pr <= 1 else '**missed**'}")
except (TypeError, ZeroDivisionError):
    pass
try:
    rd = (g("cairn", "after_prune") / g("cairn", "readdata.wall")) / (g("restic", "after_prune") / g("restic", "readdata.wall"))
    print(f"- cairn check --read-data >= 2x restic's throughput (repository bytes per second): {rd:.2f}x: "
          f"{'met' if rd >= 2 else '**missed**'}")
except (TypeError, ZeroDivisionError):
    pass
try:
    rd = g("cairn", "after_prune") / g("cairn", "readdata.wall")
    print(f"- cairn check --read-data {rd / MB:.0f} MB/s vs reading the same files: "
          f"{rd / (g('cairn', 'after_prune') / g('cairn', 'direct_wall')):.2f}x the O_DIRECT (device) rate, "
          f"{rd / (g('cairn', 'after_prune') / g('cairn', 'cat_wall')):.3f}x the page-cache rate")
except (TypeError, ZeroDivisionError):
    pass
PY
log "done; logs in $LOGS/prune-*.log, figures in $RESULTS"
