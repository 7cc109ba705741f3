#!/usr/bin/env bash
# cairn vs restic against a local S3 endpoint (moto) behind a counting proxy, in the same run.
#
#   bash bench/s3.sh [WORKDIR]        (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   BENCH_S3_DAYS    days of the etcd series to back up (default 7, at most 7)
#   BENCH_BIG=1      also back up the ~2 GiB file of bench/gen_data.py (peak RSS, sustained rate)
#   BENCH_TOOLS      tools to run, default "cairn restic"
#   BENCH_SEED       data seed (default 1)
#   CAIRN_BIN        cairn binary (default target/release/cairn, built if missing)
#   RESTIC_BIN       restic binary (default: restic on PATH)
#
# Per tool, a fresh `python3 -m moto.server` with bench/count_proxy.py in front of it (requests,
# request-body and response-body bytes counted by kind). Into a bucket through the proxy: the
# bench/gen_data.py data sets (as bench/run.sh uses them: first backup of etc/ + etcd/snapshot.db,
# unchanged re-backup, the 2%-changed etcd-v2/snapshot.db), the daily etcd series of
# bench/etcd_series.py (as bench/etcd.sh uses it: each day copied over one staging file and backed
# up), optionally the 2 GiB file; then a local repository holding the first data set and the
# series is copied into the bucket (`cairn init --like` + `cairn copy`; `restic init
# --copy-chunker-params` + `restic copy`). Markdown report on stdout, progress on stderr, logs in
# WORKDIR/logs/s3-*.log, raw figures in WORKDIR/s3-run/results.txt. Servers are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
DATA=$WORK/data
SERIES=$DATA/etcd-series
RUN=$WORK/s3-run
LOGS=$WORK/logs
STAGE=$RUN/stage
TOOLS=${BENCH_TOOLS:-"cairn restic"}
DAYS=${BENCH_S3_DAYS:-7}
BIG=${BENCH_BIG:-0}
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
RESTIC=${RESTIC_BIN:-restic}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt

unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE CAIRN_S3_ENDPOINT CAIRN_CACHE_DIR CAIRN_NO_CACHE AWS_ENDPOINT_URL_S3 \
    RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_FROM_PASSWORD AWS_PROFILE
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1

log() { printf '[s3 %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }
sum_sizes() { find "$@" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'; }

MOTO_PID="" PROXY_PID=""
stop_servers() {
    local p
    for p in $PROXY_PID $MOTO_PID; do kill "$p" 2>/dev/null || true; done
    for p in $PROXY_PID $MOTO_PID; do wait "$p" 2>/dev/null || true; done
    MOTO_PID="" PROXY_PID=""
}
cleanup() {
    stop_servers
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$RUN"/cairn "$RUN"/restic "$STAGE" "$RUN/cairn-bin" 2>/dev/null || true; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Preconditions, binaries, data.

[[ -x $TIME ]] || die "$TIME (GNU time) is needed for peak RSS"
for b in python3 curl; do command -v "$b" >/dev/null || die "$b not found"; done
python3 -c 'import moto.server, boto3' 2>/dev/null || die "python3 modules moto (server) and boto3 are needed"
[[ $DAYS =~ ^[1-7]$ ]] || die "BENCH_S3_DAYS must be 1..7"
need_tools

mkdir -p "$WORK" "$LOGS"
log "data: $DATA (generated if missing)"
python3 "$ROOT/bench/gen_data.py" "$WORK" >&2 || die "data generation failed"
[[ -f $DATA/etcd/snapshot.db && -f $DATA/etcd-v2/snapshot.db && -d $DATA/etc ]] || die "data incomplete"
[[ $BIG != 1 || -f $DATA/big/big.bin ]] || die "big file missing"
log "etcd series: $SERIES (generated with a real etcd if missing)"
python3 "$ROOT/bench/etcd_series.py" series "$WORK" >/dev/null || die "etcd series generation failed"
for d in $(seq 1 "$DAYS"); do [[ -f $SERIES/day-$d.db ]] || die "$SERIES/day-$d.db missing"; done

rm -rf "$RUN"
mkdir -p "$RUN" "$STAGE"
: >"$RESULTS"
pin_versions
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_START"

FIRST=("$DATA/etc" "$DATA/etcd/snapshot.db")
record first.in "$(sum_sizes "${FIRST[@]}")"
record first.files "$(find "${FIRST[@]}" -type f | wc -l)"
record etc.in "$(sum_sizes "$DATA/etc")"
record unchanged.in "$(sum_sizes "${FIRST[@]}")"
record v2.in "$(stat -c %s "$DATA/etcd-v2/snapshot.db")"
for d in $(seq 1 "$DAYS"); do record "day$d.in" "$(stat -c %s "$SERIES/day-$d.db")"; done
[[ $BIG == 1 ]] && record big.in "$(stat -c %s "$DATA/big/big.bin")"

# ---------------------------------------------------------------------------------------------
# Servers: a fresh moto and counting proxy per tool.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_servers() {
    local tag=$1 port_moto port_proxy
    port_moto=$(free_port)
    while [[ $port_moto == 5077 ]]; do port_moto=$(free_port); done
    port_proxy=$(free_port)
    while [[ $port_proxy == 5077 || $port_proxy == "$port_moto" ]]; do port_proxy=$(free_port); done
    STATS=$RUN/proxy-$tag.json
    python3 -m moto.server -p "$port_moto" >"$LOGS/s3-moto-$tag.log" 2>&1 &
    MOTO_PID=$!
    PROXY_LOG=$LOGS/s3-proxy-$tag.log # one line per request; timed() adds step markers (O_APPEND)
    : >"$PROXY_LOG"
    python3 "$ROOT/bench/count_proxy.py" "$port_proxy" "$port_moto" "$STATS" >>"$PROXY_LOG" 2>&1 &
    PROXY_PID=$!
    ENDPOINT=http://127.0.0.1:$port_proxy
    for _ in $(seq 100); do
        curl -sf -o /dev/null "$ENDPOINT/" && break
        sleep 0.2
    done
    curl -sf -o /dev/null "$ENDPOINT/" || die "moto/proxy did not come up (see $LOGS/s3-moto-$tag.log)"
    log "$tag: moto (pid $MOTO_PID) on :$port_moto, counting proxy (pid $PROXY_PID) on $ENDPOINT"
}

# s3py OP ARGS: boto3 against $ENDPOINT. mb BUCKET | du BUCKET PREFIX (bytes, objects)
s3py() {
    python3 - "$ENDPOINT" "$@" <<'PY'
import sys, boto3
ep, op, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
if op == "mb":
    for b in args:
        s3.create_bucket(Bucket=b)
elif op == "du":
    bucket, prefix = args
    n = c = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += sum(o["Size"] for o in page.get("Contents", []))
        c += len(page.get("Contents", []))
    print(n, c)
PY
}

# The proxy's counters as "requests bytes_up bytes_down" and as JSON per kind.
proxy_totals() {
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(*(sum(v[i] for v in s.values()) for i in range(3)))' "$STATS"
}
proxy_kinds() { cat "$STATS"; }

# Reference: what moto + the proxy can take, one client, sequential 16 MiB PUTs with curl.
reference_put() {
    local tag=$1 n=8 t0 t1 i
    head -c $((16 << 20)) /dev/urandom >"$RUN/ref.bin"
    s3py mb "ref-$tag" || die "bucket creation failed"
    t0=$(now)
    for i in $(seq $n); do
        curl -sf -o /dev/null -X PUT --data-binary @"$RUN/ref.bin" -H 'Content-Type: application/octet-stream' \
            "$ENDPOINT/ref-$tag/obj-$i" || die "reference PUT failed"
    done
    t1=$(now)
    rm -f "$RUN/ref.bin"
    record "$tag.ref_put_mbs" "$(awk -v a="$t0" -v b="$t1" -v n=$n 'BEGIN { print n * 16 * 1048576 / 1e6 / (b - a) }')"
}

# timed NAME -- CMD...: wall, peak RSS, CPU, requests and bytes through the proxy.
timed() {
    local name=$1 t0 t1 r0 u0 d0 r1 u1 d1 k0 lf=$LOGS/s3-$1.log
    shift 2
    printf '$ %s\n' "$*" >"$lf"
    sync
    read -r r0 u0 d0 < <(proxy_totals)
    k0=$(proxy_kinds)
    echo "=== $name start" >>"$PROXY_LOG"
    t0=$(now)
    if ! "$TIME" -f '%e %M %U %S' -o "$RUN/$name.time" "$@" >>"$lf" 2>&1; then
        tail -n 20 "$lf" >&2
        die "$name (full log: $lf)"
    fi
    t1=$(now)
    echo "=== $name end" >>"$PROXY_LOG"
    read -r r1 u1 d1 < <(proxy_totals)
    printf 'proxy counters [requests, bytes up, bytes down] before: %s\nafter: %s\n' "$k0" "$(proxy_kinds)" >>"$lf"
    python3 -c '
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
d = {k: b[k][0] - a.get(k, [0])[0] for k in b}
print(" ".join(f"{k}={v}" for k, v in sorted(d.items()) if v))' "$k0" "$(proxy_kinds)" >"$RUN/$name.kinds"
    record "$name.wall" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    record "$name.rss_kb" "$(awk 'END { print $2 }' "$RUN/$name.time")"
    record "$name.cpu" "$(awk 'END { print $3 + $4 }' "$RUN/$name.time")"
    record "$name.reqs" "$((r1 - r0))"
    record "$name.up" "$((u1 - u0))"
    record "$name.down" "$((d1 - d0))"
    log "$name: $(awk 'END { print $1 }' "$RUN/$name.time")s, $((r1 - r0)) requests ($(cat "$RUN/$name.kinds")), $((u1 - u0)) bytes up, $((d1 - d0)) down"
}

# ---------------------------------------------------------------------------------------------
# Per tool.

bench_cairn() {
    local C=$RUN/cairn out recip d
    mkdir -p "$C"
    export CAIRN_S3_ENDPOINT=$ENDPOINT CAIRN_CACHE_DIR=$C/cache # fresh, like restic's below
    out=$("$CAIRN" key generate -o "$C/identity.txt" 2>>"$LOGS/s3-cairn-init.log")
    recip=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
    [[ -n $recip ]] || die "no recipient from cairn key generate: $out"
    s3py mb bench-cairn || die "bucket creation failed"
    local REPO=s3://bench-cairn/repo
    log "cairn: init $REPO"
    "$CAIRN" init -r "$REPO" --recipient "$recip" >>"$LOGS/s3-cairn-init.log" 2>&1 || die "cairn init (see $LOGS/s3-cairn-init.log)"
    "$CAIRN" key write-key -r "$REPO" -i "$C/identity.txt" -o "$C/write.key" >>"$LOGS/s3-cairn-init.log" 2>&1 \
        || die "cairn key write-key (see $LOGS/s3-cairn-init.log)"
    local B=("$CAIRN" backup -r "$REPO" -k "$C/write.key" --host bench)
    timed cairn.first -- "${B[@]}" "${FIRST[@]}"
    timed cairn.unchanged -- "${B[@]}" "${FIRST[@]}"
    timed cairn.v2 -- "${B[@]}" "$DATA/etcd-v2/snapshot.db"
    for d in $(seq 1 "$DAYS"); do
        cp "$SERIES/day-$d.db" "$STAGE/snapshot.db"
        touch "$STAGE/snapshot.db"
        timed "cairn.day$d" -- "$CAIRN" backup etcd --snapshot-file "$STAGE/snapshot.db" -r "$REPO" -k "$C/write.key" --host bench
    done
    [[ $BIG == 1 ]] && timed cairn.big -- "${B[@]}" "$DATA/big/big.bin"
    read -r bytes objs < <(s3py du bench-cairn repo/)
    record cairn.bucket "$bytes"
    record cairn.bucket_objects "$objs"

    log "cairn: local repository for the copy (first data set + ${DAYS} days), untimed"
    "$CAIRN" init -r "$C/local" --recipient "$recip" >>"$LOGS/s3-cairn-init.log" 2>&1 || die "cairn init local"
    "$CAIRN" key write-key -r "$C/local" -i "$C/identity.txt" -o "$C/local.key" >>"$LOGS/s3-cairn-init.log" 2>&1 || die "cairn write-key local"
    "$CAIRN" backup -r "$C/local" -k "$C/local.key" --host bench "${FIRST[@]}" >>"$LOGS/s3-cairn-init.log" 2>&1 || die "cairn local backup"
    for d in $(seq 1 "$DAYS"); do
        cp "$SERIES/day-$d.db" "$STAGE/snapshot.db"
        touch "$STAGE/snapshot.db"
        "$CAIRN" backup etcd --snapshot-file "$STAGE/snapshot.db" -r "$C/local" -k "$C/local.key" --host bench \
            >>"$LOGS/s3-cairn-init.log" 2>&1 || die "cairn local backup day $d"
    done
    record cairn.copy.in "$(du -sb "$C/local" | cut -f1)"
    record cairn.initlike.in 0
    timed cairn.initlike -- "$CAIRN" init --like "$C/local" -r s3://bench-cairn/copy -i "$C/identity.txt"
    timed cairn.copy -- "$CAIRN" copy --from "$C/local" --to s3://bench-cairn/copy -i "$C/identity.txt"
    read -r bytes objs < <(s3py du bench-cairn copy/)
    record cairn.copybucket "$bytes"
    record cairn.copybucket_objects "$objs"
    unset CAIRN_S3_ENDPOINT CAIRN_CACHE_DIR
}

bench_restic() {
    local R=$RUN/restic d
    mkdir -p "$R"
    s3py mb bench-restic || die "bucket creation failed"
    export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$R/cache
    local REPO=s3:$ENDPOINT/bench-restic/repo
    log "restic: init $REPO"
    "$RESTIC" -r "$REPO" init >>"$LOGS/s3-restic-init.log" 2>&1 || die "restic init (see $LOGS/s3-restic-init.log)"
    local B=("$RESTIC" -r "$REPO" backup --host bench)
    timed restic.first -- "${B[@]}" "${FIRST[@]}"
    timed restic.unchanged -- "${B[@]}" "${FIRST[@]}"
    timed restic.v2 -- "${B[@]}" "$DATA/etcd-v2/snapshot.db"
    for d in $(seq 1 "$DAYS"); do
        cp "$SERIES/day-$d.db" "$STAGE/snapshot.db"
        touch "$STAGE/snapshot.db"
        timed "restic.day$d" -- "${B[@]}" "$STAGE/snapshot.db"
    done
    [[ $BIG == 1 ]] && timed restic.big -- "${B[@]}" "$DATA/big/big.bin"
    read -r bytes objs < <(s3py du bench-restic repo/)
    record restic.bucket "$bytes"
    record restic.bucket_objects "$objs"

    log "restic: local repository for the copy (first data set + ${DAYS} days), untimed"
    "$RESTIC" -r "$R/local" init >>"$LOGS/s3-restic-init.log" 2>&1 || die "restic init local"
    "$RESTIC" -r "$R/local" backup --host bench "${FIRST[@]}" >>"$LOGS/s3-restic-init.log" 2>&1 || die "restic local backup"
    for d in $(seq 1 "$DAYS"); do
        cp "$SERIES/day-$d.db" "$STAGE/snapshot.db"
        touch "$STAGE/snapshot.db"
        "$RESTIC" -r "$R/local" backup --host bench "$STAGE/snapshot.db" >>"$LOGS/s3-restic-init.log" 2>&1 \
            || die "restic local backup day $d"
    done
    record restic.copy.in "$(du -sb "$R/local" | cut -f1)"
    record restic.initlike.in 0
    export RESTIC_FROM_PASSWORD=bench
    timed restic.initlike -- "$RESTIC" -r "s3:$ENDPOINT/bench-restic/copy" init --copy-chunker-params --from-repo "$R/local"
    timed restic.copy -- "$RESTIC" -r "s3:$ENDPOINT/bench-restic/copy" copy --from-repo "$R/local"
    read -r bytes objs < <(s3py du bench-restic copy/)
    record restic.copybucket "$bytes"
    record restic.copybucket_objects "$objs"
    unset RESTIC_PASSWORD RESTIC_FROM_PASSWORD RESTIC_CACHE_DIR
}

for tool in $TOOLS; do
    start_servers "$tool"
    reference_put "$tool"
    "bench_$tool"
    stop_servers
done
rm -rf "$STAGE"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at end: $LOAD_END"
for f in "$RUN"/*.kinds; do n=$(basename "$f" .kinds); printf '%s %s\n' "$n" "$(cat "$f")"; done >"$RUN/kinds.txt"

# ---------------------------------------------------------------------------------------------
# Report.

TOOLS="$TOOLS" DAYS="$DAYS" BIG="$BIG" KINDS="$RUN/kinds.txt" \
    NPROC=$(nproc) CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
    MEM=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) \
    MOTO_VERSION=$(python3 -c 'import moto; print(moto.__version__)') \
    CAIRN_VERSION="$cairn_version" RESTIC_VERSION="$restic_version" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" \
    python3 - "$RESULTS" <<'PY'
import os, sys

r = {}
for line in open(sys.argv[1]):
    k, v = line.split(None, 1)
    r[k] = float(v)
kinds = {}
for line in open(os.environ["KINDS"]):
    k, _, v = line.rstrip("\n").partition(" ")
    kinds[k] = v
e = os.environ
tools = e["TOOLS"].split()
both = set(tools) >= {"cairn", "restic"}
days = int(e["DAYS"])
MB = 1e6


def g(t, k):
    return r.get(f"{t}.{k}")


# The week of daily etcd backups, summed per tool.
for t in tools:
    ks = [f"day{d}" for d in range(1, days + 1)]
    if all(g(t, f"{k}.wall") is not None for k in ks):
        for m in ("wall", "cpu", "reqs", "up", "down"):
            r[f"{t}.week.{m}"] = sum(g(t, f"{k}.{m}") for k in ks)
        r[f"{t}.week.rss_kb"] = max(g(t, f"{k}.rss_kb") for k in ks)
        r[f"{t}.week.in"] = sum(r[f"{k}.in"] for k in ks)
        kinds[f"{t}.week"] = None
    r[f"{t}.first.in"] = r["first.in"]
    r[f"{t}.unchanged.in"] = r["unchanged.in"]
    r[f"{t}.v2.in"] = r["v2.in"]
    if "big.in" in r:
        r[f"{t}.big.in"] = r["big.in"]
week_in = sum(r[f"day{d}.in"] for d in range(1, days + 1))

print("## cairn vs restic on S3 (moto behind a counting proxy)\n")
print(f"- machine: {e['NPROC']} CPUs ({e['CPU']}), {e['MEM']} RAM; the tools, moto and the proxy share "
      f"the CPUs; load average at start {e['LOAD_START']}, at end {e['LOAD_END']} (other jobs were running)")
print(f"- cairn: {e['CAIRN_VERSION']}")
print(f"- restic: {e['RESTIC_VERSION']} (defaults: compression auto, 16 MiB packs)")
print(f"- S3: moto {e['MOTO_VERSION']} (`python3 -m moto.server`, in memory) on 127.0.0.1 behind bench/count_proxy.py "
      f"(Python, counts requests and body bytes); a fresh moto and proxy per tool. Reference: sequential 16 MiB "
      "PUTs with curl through the proxy: " + ", ".join(f"{t} run {g(t, 'ref_put_mbs'):.0f} MB/s" for t in tools if g(t, 'ref_put_mbs')))
print(f"- data: first = bench/gen_data.py `etc/` ({r['etc.in'] / MB:.1f} MB) + `etcd/snapshot.db` "
      f"({(r['first.in'] - r['etc.in']) / MB:.1f} MB), {int(r['first.files']):,} files, {r['first.in'] / MB:.1f} MB; "
      f"v2 = `etcd-v2/snapshot.db` ({r['v2.in'] / MB:.1f} MB, 2% of its 4 KiB pages differ from snapshot.db, "
      f"a different path); etcd series = day-1..day-{days}.db of bench/etcd_series.py "
      f"({week_in / MB:.0f} MB in all, one backup per day of one staging file)"
      + (f"; big = big/big.bin ({r['big.in'] / MB:.0f} MB)" if "big.in" in r else ""))
print("- copy: a local repository holding the first data set and the etcd series (built untimed) is copied "
      "into a fresh prefix of the bucket; MB/s = local repository bytes / wall seconds")
print("- one run each, page cache warm; MB = 10^6 bytes; MB/s = input bytes / wall seconds; requests, "
      "MB up (request bodies) and MB down (response bodies) as seen by the proxy; peak RSS from /usr/bin/time\n")

steps = [("first", "first backup (etc + snapshot.db)"), ("unchanged", "unchanged re-backup"),
         ("v2", "v2 snapshot.db (2% of pages changed)"),
         ("week", f"etcd series: {days} daily backups (sums; RSS: max)")]
if "big.in" in r:
    steps.append(("big", f"{r['big.in'] / 2**30:.1f} GiB file"))
steps += [("initlike", "init --like / init --copy-chunker-params"), ("copy", "copy local repository -> S3")]


def cell(v, fmt):
    return "n/a" if v is None else fmt.format(v)


hdr = ["step", "metric"] + tools + (["cairn/restic"] if both else [])
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join(["---", "---"] + ["---:"] * (len(hdr) - 2)) + "|")


def line(step, metric, fn, fmt):
    vals = {}
    for t in tools:
        try:
            vals[t] = fn(t)
        except (TypeError, ZeroDivisionError):
            vals[t] = None
    cells = [step, metric] + [cell(vals[t], fmt) for t in tools]
    if both:
        c, s = vals["cairn"], vals["restic"]
        cells.append(f"{c / s:.3g}" if isinstance(c, float) and isinstance(s, float) and s else "-")
    print("| " + " | ".join(cells) + " |")


def kind_cell(t, key):
    if key == "week":
        agg = {}
        for d in range(1, days + 1):
            for kv in kinds.get(f"{t}.day{d}", "").split():
                k, v = kv.split("=")
                agg[k] = agg.get(k, 0) + int(v)
        return " ".join(f"{k} {v}" for k, v in sorted(agg.items()))
    return " ".join(kv.replace("=", " ") for kv in kinds.get(f"{t}.{key}", "").split())


for key, label in steps:
    line(label, "wall s (lower is better)", lambda t: g(t, key + ".wall"), "{:.2f}")
    if g(tools[0], key + ".in"):
        line(label, "MB/s (higher is better)", lambda t: g(t, key + ".in") / MB / g(t, key + ".wall"), "{:.1f}")
    line(label, "CPU s, user + system (lower is better)", lambda t: g(t, key + ".cpu"), "{:.2f}")
    line(label, "peak RSS MiB (lower is better)", lambda t: g(t, key + ".rss_kb") / 1024, "{:.0f}")
    line(label, "requests (lower is better)", lambda t: g(t, key + ".reqs"), "{:,.0f}")
    line(label, "requests by kind", lambda t: kind_cell(t, key), "{}")
    line(label, "MB up (lower is better)", lambda t: g(t, key + ".up") / MB, "{:.3f}")
    line(label, "MB down (lower is better)", lambda t: g(t, key + ".down") / MB, "{:.3f}")
line("bucket after the backups above", "MB stored (lower is better)", lambda t: g(t, "bucket") / MB, "{:.1f}")
line("bucket after the backups above", "objects", lambda t: g(t, "bucket_objects"), "{:,.0f}")
line("copy destination", "MB stored (lower is better)", lambda t: g(t, "copybucket") / MB, "{:.1f}")
line("copy destination", "objects", lambda t: g(t, "copybucket_objects"), "{:,.0f}")

if both:
    print("\n### Targets (issue 4): cairn throughput to S3 >= restic, requests <= restic\n")
    print("| step | cairn/restic MB/s | throughput | cairn/restic requests | requests |")
    print("|---|---:|---|---:|---|")
    for key, label in steps:
        if key == "initlike":
            continue
        try:
            tp = (g("cairn", key + ".in") / g("cairn", key + ".wall")) / (g("restic", key + ".in") / g("restic", key + ".wall"))
            rq = g("cairn", key + ".reqs") / g("restic", key + ".reqs")
        except (TypeError, ZeroDivisionError):
            continue
        print(f"| {label} | {tp:.2f} | {'met' if tp >= 1 else '**missed**'} | {rq:.2f} | {'met' if rq <= 1 else '**missed**'} |")
PY
log "done; logs in $LOGS/s3-*.log, figures in $RESULTS"
