#!/usr/bin/env bash
# Repository growth over a week of daily etcd snapshots against the page-level limit: cairn,
# restic and rustic back up day-1..7.db in turn (one staging path, as a daily job would), each
# into its own fresh repository, in the same run.
#
#   bash bench/history.sh [WORKDIR]     (WORKDIR defaults to bench/work; the series is
#                                        WORKDIR/data/etcd-series, made by bench/etcd_series.py)
#
# Environment: CAIRN_BIN (default target/release/cairn), RESTIC_BIN (default restic),
# RUSTIC_BIN (default rustic on PATH or /tmp/rustic/bin/rustic; skipped if absent),
# BENCH_KEEP=1 keeps the repositories. Growth counts the bytes of the repository's files (no
# caches). The limit (bench/page_limit.py): each day's 4 KiB pages that differ from the
# previous day's at the same offset (day 1: all), compressed as one zstd -3 stream.
# The markdown report goes to stdout, progress to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
SERIES=$WORK/data/etcd-series
RUN=$WORK/history-run
CAIRN=${CAIRN_BIN:-$ROOT/target/release/cairn}
RESTIC=${RESTIC_BIN:-restic}
RUSTIC=${RUSTIC_BIN:-$(command -v rustic || echo /tmp/rustic/bin/rustic)}
DAYS=7

log() { printf '[bench-history %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
bytes_of() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

for d in $(seq 1 $DAYS); do [[ -f $SERIES/day-$d.db ]] || die "$SERIES/day-$d.db missing (bench/etcd_series.py series $WORK)"; done
[[ -x $CAIRN ]] || die "cairn binary $CAIRN missing (cargo build --release -p cairn)"
command -v "$RESTIC" >/dev/null || die "restic not found"
command -v zstd >/dev/null || die "zstd not found"
TOOLS="cairn restic"
[[ -x $RUSTIC ]] && TOOLS="$TOOLS rustic" || log "rustic not found ($RUSTIC): skipped"

rm -rf "$RUN"
mkdir -p "$RUN/stage"
unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE RESTIC_REPOSITORY RUSTIC_REPOSITORY
trap '[[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$RUN"' EXIT

log "page-level limit"
python3 "$ROOT/bench/page_limit.py" $(for d in $(seq 1 $DAYS); do echo "$SERIES/day-$d.db"; done) >"$RUN/limit.txt"

init() {
    local tool=$1 dir=$RUN/$1
    mkdir -p "$dir"
    case $tool in
    cairn)
        local r
        r=$("$CAIRN" key generate -o "$dir/id.txt" 2>/dev/null | grep -o 'age1[0-9a-z]*' | head -n1)
        "$CAIRN" init -r "$dir/repo" --recipient "$r" >/dev/null
        "$CAIRN" key write-key -r "$dir/repo" -i "$dir/id.txt" -o "$dir/w.key" >/dev/null 2>&1
        ;;
    restic) RESTIC_PASSWORD=bench "$RESTIC" -r "$dir/repo" init >/dev/null ;;
    rustic) "$RUSTIC" -r "$dir/repo" --password bench --no-cache init >/dev/null 2>&1 ;;
    esac
}

backup() {
    local tool=$1 dir=$RUN/$1 f=$RUN/stage/snapshot.db
    case $tool in
    cairn) "$CAIRN" backup etcd --snapshot-file "$f" -r "$dir/repo" -k "$dir/w.key" --host bench --quiet ;;
    restic) RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$dir/cache "$RESTIC" -r "$dir/repo" backup --host bench -q "$f" ;;
    rustic) "$RUSTIC" -r "$dir/repo" --password bench --no-cache backup --host bench "$f" ;;
    esac
}

for tool in $TOOLS; do
    init "$tool"
    prev=$(bytes_of "$RUN/$tool/repo")
    for d in $(seq 1 $DAYS); do
        cp "$SERIES/day-$d.db" "$RUN/stage/snapshot.db"
        t0=$(date +%s.%N)
        backup "$tool" >>"$RUN/$tool.log" 2>&1 || die "$tool backup of day $d (see $RUN/$tool.log)"
        t1=$(date +%s.%N)
        now=$(bytes_of "$RUN/$tool/repo")
        echo "$tool $d $((now - prev)) $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" >>"$RUN/growth.txt"
        log "$tool day $d: +$((now - prev)) bytes"
        prev=$now
    done
done

awk -v tools="$TOOLS" -v days=$DAYS '
    FILENAME ~ /limit/ && $1 ~ /^[0-9]+$/ { limit[$1] = $5; lw += $5; if ($1 > 1) li += $5 }
    FILENAME ~ /growth/ { g[$1, $2] = $3; w[$1] += $3; if ($2 > 1) inc[$1] += $3 }
    END {
        n = split(tools, t, " ")
        printf "| day | page-level limit, MB |"
        for (i = 1; i <= n; i++) printf " %s, MB | %s / limit |", t[i], t[i]
        printf "\n|---:|---:|"
        for (i = 1; i <= n; i++) printf "---:|---:|"
        printf "\n"
        for (d = 1; d <= days; d++) {
            printf "| %d | %.2f |", d, limit[d] / 1e6
            for (i = 1; i <= n; i++) printf " %.2f | %.2f× |", g[t[i], d] / 1e6, g[t[i], d] / limit[d]
            printf "\n"
        }
        printf "| days 2–%d | %.2f |", days, li / 1e6
        for (i = 1; i <= n; i++) printf " %.2f | %.2f× |", inc[t[i]] / 1e6, inc[t[i]] / li
        printf "\n| week | %.2f |", lw / 1e6
        for (i = 1; i <= n; i++) printf " %.2f | %.2f× |", w[t[i]] / 1e6, w[t[i]] / lw
        printf "\n"
    }' "$RUN/limit.txt" "$RUN/growth.txt"
