#!/usr/bin/env bash
# Restore throughput: cairn vs restic vs rustic vs borg on the same data, in the same run.
#
#   bash bench/restore.sh [WORKDIR]        (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   BENCH_TOOLS   default "cairn restic rustic borg" (rustic restores the restic repositories;
#                 borg, when installed, is left out of the S3 part: it has no S3 backend)
#   BENCH_SETS    default "etcd big config" (big: the ~2 GiB file of gen_data.py --big); may be
#                 empty (only the S3 part)
#   BENCH_S3=0    skip the S3 part (etcd day 7 from moto, cairn vs restic vs rustic)
#   BENCH_ROUNDS  restores per tool and data set, the median is reported (default 3)
#   CAIRN_BIN     cairn binary (default target/release/cairn, built if missing)
#   RESTIC_BIN    restic binary (default: restic on PATH)
#   BORG_BIN      borg binary (default: borg on PATH; Debian's borgbackup 1.2)
#   RUSTIC_BIN    rustic binary (default: rustic on PATH, else /tmp/rustic/bin/rustic; build it
#                 with `cargo install rustic-rs --locked --no-default-features --root /tmp/rustic`)
#
# Data sets (made by bench/gen_data.py and bench/etcd_series.py, reused by later runs):
#   etcd    days 1..7 of the real etcd series backed up in turn from one staging path; day 7
#           (the latest snapshot, drawing its pages from every day) is restored. cairn restores
#           it with --layout cluster-backup, which also re-checks the sha256 trailer and the
#           bbolt facts; restic and rustic restore the file.
#   big     the ~2 GiB file, one backup.
#   config  the ~5,000-file config tree, one backup.
# Each restore goes into an empty directory, the page cache is warm (every tool restores each
# set BENCH_ROUNDS times in turn), and the result is compared with the original (cmp / diff -r).
# Reported per tool: MB/s, peak RSS and CPU seconds (user + sys of the restore process, the work
# per byte: steadier than the wall clock on a shared machine). Each round also copies the
# original data with `cp` and `sync -f`: the floor of writing it to this disk, reported beside
# the restores timed until their data is on disk.
# Progress goes to stderr, the markdown report to stdout; logs in WORKDIR/logs/restore-*.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
# Resolved: a symlinked data directory (shared bench data) gives every tool the same path.
DATA=$(realpath -m "$WORK/data")
SERIES=$DATA/etcd-series
RUN=$WORK/restore-run
LOGS=$WORK/logs
STAGE=$RUN/stage
BORG=${BORG_BIN:-borg}
DEFAULT_TOOLS="cairn restic rustic"
command -v "$BORG" >/dev/null && DEFAULT_TOOLS="$DEFAULT_TOOLS borg"
TOOLS=${BENCH_TOOLS:-$DEFAULT_TOOLS}
SETS=${BENCH_SETS-"etcd big config"}
S3=${BENCH_S3:-1}
ROUNDS=${BENCH_ROUNDS:-3}
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
RESTIC=${RESTIC_BIN:-restic}
RUSTIC=${RUSTIC_BIN:-$(command -v rustic || echo /tmp/rustic/bin/rustic)}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt
MOTO_PID=""

unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE CAIRN_S3_ENDPOINT CAIRN_CACHE_DIR \
    RESTIC_REPOSITORY RESTIC_PASSWORD RUSTIC_REPOSITORY RUSTIC_PASSWORD AWS_PROFILE BORG_REPO
# borg: a passphrase-protected repokey repository (authenticated encryption, as the others),
# its cache and keys under the run directory.
export BORG_PASSPHRASE=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1

log() { printf '[bench-restore %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }

cleanup() {
    if [[ -n $MOTO_PID ]]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
    rm -rf "$RUN/out" "$STAGE"
}
trap cleanup EXIT

# need_tools knows cairn and restic; rustic and borg are checked here.
RUSTIC_WANTED=0
[[ " $TOOLS " == *" rustic "* ]] && RUSTIC_WANTED=1
TOOLS=${TOOLS//rustic/}
BORG_WANTED=0
[[ " $TOOLS " == *" borg "* ]] && BORG_WANTED=1
TOOLS=${TOOLS//borg/}
need_tools
if [[ $BORG_WANTED == 1 ]]; then
    command -v "$BORG" >/dev/null || die "borg not found ($BORG); apt-get install borgbackup"
    TOOLS="$TOOLS borg"
fi
if [[ $RUSTIC_WANTED == 1 ]]; then
    [[ -x $RUSTIC ]] || die "rustic not found ($RUSTIC); build it with: cargo install rustic-rs --locked --no-default-features --root /tmp/rustic"
    [[ " $TOOLS " == *" restic "* ]] || die "rustic restores the restic repositories: BENCH_TOOLS needs restic too"
fi
mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN"
mkdir -p "$RUN" "$STAGE"
export BORG_BASE_DIR=$RUN/borg-base
: >"$RESULTS"
pin_versions
ALL_TOOLS="$TOOLS"
[[ $RUSTIC_WANTED == 1 ]] && ALL_TOOLS="$ALL_TOOLS rustic"
rustic_version=n/a
[[ $RUSTIC_WANTED == 1 ]] && rustic_version=$("$RUSTIC" --version 2>/dev/null | head -n1)
borg_version=n/a
[[ $BORG_WANTED == 1 ]] && borg_version=$("$BORG" --version 2>/dev/null | head -n1)

log "data under $DATA (generated if missing)"
big_flag=()
[[ " $SETS " == *" big "* ]] && big_flag=(--big)
python3 "$ROOT/bench/gen_data.py" "$WORK" "${big_flag[@]}" >&2 || die "data generation failed"
python3 "$ROOT/bench/etcd_series.py" series "$WORK" >/dev/null || die "etcd series generation failed"

# ---------------------------------------------------------------------------------------------

# run NAME CMD...: run with GNU time, log to LOGS; sets WALL, RSS_KB and CPU (user + sys seconds
# of the process and its children).
run() {
    local name=$1
    shift
    local lf=$LOGS/restore-$name.log
    "$TIME" -f '%e %M %U %S' -o "$RUN/$name.time" "$@" >"$lf" 2>&1 || { tail -n 20 "$lf" >&2; die "$name: $* (log: $lf)"; }
    read_time "$RUN/$name.time"
}

# read_time FILE: WALL, RSS_KB and CPU from a time file of run().
read_time() {
    local user sys
    read -r WALL RSS_KB user sys <"$1"
    CPU=$(python3 -c "print(round($user + $sys, 2))")
}

# time_sync DIR: SYNC, the seconds `sync -f DIR` takes after a restore into DIR: until the
# restored data is on disk. cairn ends every restore with syncfs (counted in its WALL, so this
# finds little left); restic, rustic and borg leave the data in the page cache.
time_sync() {
    local t0
    t0=$(date +%s.%N)
    sync -f "$1"
    SYNC=$(python3 -c "print(round($(date +%s.%N) - $t0, 3))")
}

cairn_init() {
    local dir=$1 repo=$2 out recipient
    mkdir -p "$dir"
    out=$("$CAIRN" key generate -o "$dir/identity.txt" 2>>"$LOGS/restore-init.log") || die "cairn key generate (see $LOGS/restore-init.log)"
    recipient=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -n1 || true)
    [[ -n $recipient ]] || die "cairn key generate printed no recipient"
    "$CAIRN" init -r "$repo" --recipient "$recipient" >>"$LOGS/restore-init.log" 2>&1 || die "cairn init $repo"
    "$CAIRN" key write-key -r "$repo" -i "$dir/identity.txt" -o "$dir/write.key" >>"$LOGS/restore-init.log" 2>&1 \
        || die "cairn key write-key $repo"
}

# backup TOOL SET REPO: store data set SET into REPO (untimed).
backup() {
    local tool=$1 set=$2 repo=$3 dir=$RUN/$1-$2 d
    case $tool in
    cairn) cairn_init "$dir" "$repo" ;;
    restic) RESTIC_PASSWORD=bench "$RESTIC" -r "$repo" init >>"$LOGS/restore-init.log" 2>&1 || die "restic init $repo" ;;
    borg) "$BORG" init -e repokey-blake2 "$repo" >>"$LOGS/restore-init.log" 2>&1 || die "borg init $repo" ;;
    esac
    # borg compresses with zstd level 3, as cairn does; archives are named so the last is known.
    local borg=("$BORG" create --compression zstd,3)
    local cairn=("$CAIRN" backup -r "$repo" -k "$dir/write.key" --host bench)
    local restic=(env RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$RUN/restic-cache" "$RESTIC" -r "$repo" backup --host bench)
    case $set in
    etcd)
        for d in 1 2 3 4 5 6 7; do
            cp "$SERIES/day-$d.db" "$STAGE/snapshot.db"
            touch "$STAGE/snapshot.db"
            case $tool in
            cairn) "$CAIRN" backup etcd --snapshot-file "$STAGE/snapshot.db" -r "$repo" -k "$dir/write.key" --host bench ;;
            restic) "${restic[@]}" "$STAGE/snapshot.db" ;;
            borg) "${borg[@]}" "$repo::day-$d" "$STAGE/snapshot.db" ;;
            esac >>"$LOGS/restore-backup-$tool-$set.log" 2>&1 || die "$tool backup of $set day $d"
        done
        ;;
    big) case $tool in cairn) "${cairn[@]}" "$DATA/big/big.bin" ;; restic) "${restic[@]}" "$DATA/big/big.bin" ;;
        borg) "${borg[@]}" "$repo::day-7" "$DATA/big/big.bin" ;; esac \
        >>"$LOGS/restore-backup-$tool-$set.log" 2>&1 || die "$tool backup of $set" ;;
    config) case $tool in cairn) "${cairn[@]}" "$DATA/etc" ;; restic) "${restic[@]}" "$DATA/etc" ;;
        borg) "${borg[@]}" "$repo::day-7" "$DATA/etc" ;; esac \
        >>"$LOGS/restore-backup-$tool-$set.log" 2>&1 || die "$tool backup of $set" ;;
    esac
}

# restore_once TOOL SET REPO NAME: restore the latest snapshot into a fresh directory, check it.
restore_once() {
    local tool=$1 set=$2 repo=$3 name=$4 out=$RUN/out
    rm -rf "$out"
    mkdir -p "$out"
    local cmd
    case $tool in
    cairn)
        cmd=("$CAIRN" restore latest -r "$repo" -i "$RUN/cairn-$set/identity.txt" --target "$out")
        [[ $set == etcd ]] && cmd+=(--layout cluster-backup)
        ;;
    restic) cmd=(env RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$RUN/restic-cache" "$RESTIC" -r "$repo" restore latest --target "$out") ;;
    rustic) cmd=(env RUSTIC_PASSWORD=bench "$RUSTIC" --no-cache -r "$repo" restore latest "$out") ;;
    # borg extracts into the current directory, with the paths below / as restic lays them out.
    borg) cmd=(sh -c 'cd "$1" && exec "$2" extract "$3::day-7"' borg-extract "$out" "$BORG" "$repo") ;;
    esac
    run "$name" "${cmd[@]}"
    time_sync "$out"
    local got
    case $set in
    etcd)
        if [[ $tool == cairn ]]; then got=$(find "$out" -maxdepth 1 -name 'snapshot_*.db' -print -quit); else got=$out$STAGE/snapshot.db; fi
        cmp "$SERIES/day-7.db" "$got" || die "$name: restored etcd snapshot differs from day-7.db"
        ;;
    big) cmp "$DATA/big/big.bin" "$out$DATA/big/big.bin" || die "$name: restored big file differs" ;;
    config) diff -r "$DATA/etc" "$out$DATA/etc" >/dev/null || die "$name: restored config tree differs" ;;
    esac
    rm -rf "$out"
}

# copy_once SET NAME: the floor of a restore to disk on this machine: the original data copied
# with `cp` (page cache warm) into a fresh directory on the same file system as the restores,
# then `sync -f`: no reading of a repository, no decryption, decompression or verification.
copy_once() {
    local set=$1 out=$RUN/out src t0
    case $set in
    etcd) src=$SERIES/day-7.db ;;
    big) src=$DATA/big/big.bin ;;
    config) src=$DATA/etc ;;
    esac
    rm -rf "$out"
    mkdir -p "$out"
    sync -f "$out"
    t0=$(date +%s.%N)
    cp -a "$src" "$out/" || die "cp of $src"
    sync -f "$out"
    WALL=$(python3 -c "print(round($(date +%s.%N) - $t0, 3))")
    rm -rf "$out"
}

# bench_set SET WHERE REPO_PREFIX: back up SET with cairn and restic, restore it ROUNDS times
# with each tool in turn.
bench_set() {
    local set=$1 where=$2 prefix=$3 tool r
    for tool in $TOOLS; do
        log "$where/$set: $tool backup"
        backup "$tool" "$set" "$prefix/$tool-$set"
    done
    for r in $(seq 1 "$ROUNDS"); do
        for tool in $ALL_TOOLS; do
            local repo=$prefix/$tool-$set
            [[ $tool == rustic ]] && repo=$prefix/restic-$set
            restore_once "$tool" "$set" "$repo" "$where-$set-$tool-$r"
            record "$where.$set.$tool.wall" "$WALL"
            record "$where.$set.$tool.rss_kb" "$RSS_KB"
            record "$where.$set.$tool.cpu" "$CPU"
            record "$where.$set.$tool.durable" "$(python3 -c "print($WALL + $SYNC)")"
            log "$where/$set: $tool restore round $r ${WALL}s (+ ${SYNC}s to disk), ${CPU} CPU-s, peak RSS ${RSS_KB} KB"
        done
        copy_once "$set"
        record "$where.$set.copy.durable" "$WALL"
        log "$where/$set: plain cp + sync -f round $r ${WALL}s"
    done
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for set in $SETS; do
    case $set in
    etcd) record "etcd.bytes" "$(stat -c %s "$SERIES/day-7.db")" ;;
    big) record "big.bytes" "$(stat -c %s "$DATA/big/big.bin")" ;;
    config) record "config.bytes" "$(du -sb --apparent-size "$DATA/etc" | cut -f1)" ;;
    *) die "unknown data set $set" ;;
    esac
    bench_set "$set" local "$RUN/repos"
    rm -rf "$RUN/repos"
done

if [[ $S3 == 1 ]]; then
    python3 -c 'import moto.server, boto3' 2>/dev/null || die "python3 modules moto (server) and boto3 are needed"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 -m moto.server -p "$port" >"$LOGS/restore-moto.log" 2>&1 &
    MOTO_PID=$!
    ENDPOINT=http://127.0.0.1:$port
    for _ in $(seq 50); do curl -sf -o /dev/null "$ENDPOINT/" && break; sleep 0.2; done
    python3 - "$ENDPOINT" <<'PY' || die "bucket creation failed"
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
             aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket="bench")
PY
    export CAIRN_S3_ENDPOINT=$ENDPOINT CAIRN_CACHE_DIR=$RUN/cairn-cache
    export AWS_ENDPOINT_URL_S3=$ENDPOINT
    rm -rf "$RUN/cairn-etcd" # the local set's keys
    # cairn names S3 repositories s3://bucket/prefix (endpoint from CAIRN_S3_ENDPOINT); restic
    # s3:endpoint/bucket/prefix; rustic reads the restic one through opendal.
    S3_TOOLS=${TOOLS//borg/}
    ALL_TOOLS=${ALL_TOOLS//borg/}
    for tool in $S3_TOOLS; do
        case $tool in
        cairn) repo=s3://bench/cairn-etcd ;;
        restic) repo=s3:$ENDPOINT/bench/restic-etcd ;;
        esac
        log "s3/etcd: $tool backup"
        backup "$tool" etcd "$repo"
    done
    record "s3.etcd.bytes" "$(stat -c %s "$SERIES/day-7.db")"
    for r in $(seq 1 "$ROUNDS"); do
        for tool in $ALL_TOOLS; do
            case $tool in
            cairn) repo=s3://bench/cairn-etcd ;;
            restic) repo=s3:$ENDPOINT/bench/restic-etcd ;;
            rustic) repo=opendal:s3 ;;
            esac
            if [[ $tool == rustic ]]; then
                # rustic takes S3 options from its config: a profile in a scratch directory.
                mkdir -p "$RUN/rustic-s3"
                cat >"$RUN/rustic-s3/rustic.toml" <<EOF
[repository]
repository = "opendal:s3"
password = "bench"
no-cache = true
[repository.options]
bucket = "bench"
root = "/restic-etcd"
endpoint = "$ENDPOINT"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
EOF
                rm -rf "$RUN/out" && mkdir -p "$RUN/out"
                if (cd "$RUN/rustic-s3" && run "s3-etcd-rustic-$r" "$RUSTIC" -P ./rustic restore latest "$RUN/out"); then
                    read_time "$RUN/s3-etcd-rustic-$r.time"
                    time_sync "$RUN/out"
                    cmp "$SERIES/day-7.db" "$RUN/out$STAGE/snapshot.db" || die "rustic S3 restore differs"
                    record "s3.etcd.$tool.wall" "$WALL"
                    record "s3.etcd.$tool.rss_kb" "$RSS_KB"
                    record "s3.etcd.$tool.cpu" "$CPU"
                    record "s3.etcd.$tool.durable" "$(python3 -c "print($WALL + $SYNC)")"
                    log "s3/etcd: $tool restore round $r ${WALL}s (+ ${SYNC}s to disk), ${CPU} CPU-s, peak RSS ${RSS_KB} KB"
                else
                    log "s3/etcd: rustic could not restore from S3 (see $LOGS/restore-s3-etcd-rustic-$r.log); left out"
                fi
                rm -rf "$RUN/out"
                continue
            else
                restore_once "$tool" etcd "$repo" "s3-etcd-$tool-$r"
            fi
            record "s3.etcd.$tool.wall" "$WALL"
            record "s3.etcd.$tool.rss_kb" "$RSS_KB"
            record "s3.etcd.$tool.cpu" "$CPU"
            record "s3.etcd.$tool.durable" "$(python3 -c "print($WALL + $SYNC)")"
            log "s3/etcd: $tool restore round $r ${WALL}s (+ ${SYNC}s to disk), ${CPU} CPU-s, peak RSS ${RSS_KB} KB"
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# Report.

NPROC=$(nproc) LOAD_START=$LOAD_START LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg) \
    CAIRN_VERSION=$cairn_version RESTIC_VERSION=$restic_version RUSTIC_VERSION=$rustic_version \
    BORG_VERSION=$borg_version ROUNDS=$ROUNDS python3 - "$RESULTS" "$TOOLS" "$RUSTIC_WANTED" <<'PY'
import os, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    vals.setdefault(k, []).append(float(v))
tools = [t for t in sys.argv[2].split() if t != "borg"] + (["rustic"] if sys.argv[3] == "1" else [])
tools += ["borg"] if "borg" in sys.argv[2].split() else []
peers = [t for t in tools if t != "cairn"]
e = os.environ
med = lambda k: statistics.median(vals[k]) if k in vals else None
rows = [("local", "etcd", "etcd day 7 (local)"), ("local", "big", "2 GiB file (local)"),
        ("local", "config", "~5,000-file config tree (local)"), ("s3", "etcd", "etcd day 7 (S3, moto)")]
print("## Restore: cairn vs " + " vs ".join(peers) + "\n")
print(f"- machine: {e['NPROC']} CPUs, load average {e['LOAD_START']} at start, {e['LOAD_END']} at end; "
      f"median of {e['ROUNDS']} restores per tool, page cache warm, tools interleaved")
print(f"- cairn: {e['CAIRN_VERSION']}\n- restic: {e['RESTIC_VERSION']}\n- rustic: {e['RUSTIC_VERSION']} (restores restic's repositories)")
print(f"- borg: {e['BORG_VERSION']} (repokey-blake2, zstd 3; no S3 backend, so not in the S3 row)\n")
head = "| restore | " + " | ".join(f"{t} MB/s" for t in tools)
head += "".join(f" | cairn / {o}" for o in peers) + " | peak RSS MiB (" + ", ".join(tools) + ") |"
print(head)
print("|---" * (len(tools) + len(peers) + 2) + "|")
for where, s, label in rows:
    size = med(f"{'s3.' if where == 's3' else ''}{s}.bytes")
    if size is None:
        continue
    rate = {t: size / 1e6 / med(f"{where}.{s}.{t}.wall") for t in tools if med(f"{where}.{s}.{t}.wall")}
    ratio = lambda o: f"{rate['cairn'] / rate[o]:.2f}×" if "cairn" in rate and o in rate else "–"
    rss = ", ".join(f"{med(f'{where}.{s}.{t}.rss_kb') / 1024:.0f}" if med(f"{where}.{s}.{t}.rss_kb") else "–" for t in tools)
    cells = " | ".join(f"{rate[t]:.0f}" if t in rate else "–" for t in tools)
    ratios = "".join(f" | {ratio(o)}" for o in peers)
    print(f"| {label} | {cells}{ratios} | {rss} |")
# The same restores timed until their data is on disk (the restore, then `sync -f` on the
# target's file system): what a recovery can rely on before the host is rebooted.
# The last columns: the original data copied with `cp`, then `sync -f` (the floor of writing
# it to this disk, with nothing read from a repository), and cairn's share of that rate.
print("\n| restore until on disk (+ `sync -f`) | " + " | ".join(f"{t} MB/s" for t in tools)
      + "".join(f" | cairn / {o}" for o in peers) + " | plain `cp` MB/s | cairn / `cp` |")
print("|---" * (len(tools) + len(peers) + 3) + "|")
for where, s, label in rows:
    size = med(f"{'s3.' if where == 's3' else ''}{s}.bytes")
    rate = {t: size / 1e6 / med(f"{where}.{s}.{t}.durable") for t in tools + ["copy"]
            if size and med(f"{where}.{s}.{t}.durable")}
    if "cairn" not in rate:
        continue
    floor = f"{rate['cairn'] / rate['copy']:.2f}×" if "copy" in rate else "–"
    print(f"| {label} | " + " | ".join(f"{rate[t]:.0f}" if t in rate else "–" for t in tools)
          + "".join(f" | {rate['cairn'] / rate[o]:.2f}×" if o in rate else " | –" for o in peers)
          + (f" | {rate['copy']:.0f} | {floor} |" if "copy" in rate else " | – | – |"))
# CPU seconds (user + sys) of each restore process: the work per byte, less sensitive to the
# other load on a shared machine than the wall clock.
print("\n| restore, CPU seconds (user + sys) | " + " | ".join(tools) + "".join(f" | {o} / cairn" for o in peers) + " |")
print("|---" * (len(tools) + len(peers) + 1) + "|")
for where, s, label in rows:
    cpu = {t: med(f"{where}.{s}.{t}.cpu") for t in tools if med(f"{where}.{s}.{t}.cpu")}
    if not cpu:
        continue
    per = lambda o: f"{cpu[o] / cpu['cairn']:.2f}×" if "cairn" in cpu and o in cpu else "–"
    cells = " | ".join(f"{cpu[t]:.2f}" if t in cpu else "–" for t in tools)
    print(f"| {label} | {cells}" + "".join(f" | {per(o)}" for o in peers) + " |")
PY
