#!/usr/bin/env bash
# Steady state of a daily timer: back up one real etcd snapshot a day, and from day 8 on run
# `forget --keep-last 7` and `prune` every day, with cairn and restic in the same run. Prints one
# line per day: prune time, blobs rewritten, MB freed and repository MB for each tool.
#
#   bash bench/prune_daily.sh [WORKDIR]      (BENCH_DAYS, default 16; series from etcd_series.py)
#
# CAIRN_MAX_UNUSED (percent, default 5: both tools' default) is passed to cairn's prune as
# --max-unused, to measure what a looser limit costs in space and saves in time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
N=${BENCH_DAYS:-16}
MAX_UNUSED=${CAIRN_MAX_UNUSED:-5}
C=${CAIRN_BIN:-$ROOT/target/release/cairn}
[[ -x $C ]] || { echo "$C missing: cargo build --release -p cairn" >&2; exit 1; }
python3 "$ROOT/bench/etcd_series.py" series "$WORK/series-30" --days 30 >/dev/null
S=$WORK/series-30/data/etcd-series
RUN=$WORK/prune-daily
rm -rf "$RUN" && mkdir -p "$RUN/c" "$RUN/stage"
cp "$C" "$RUN/cairn" && C=$RUN/cairn
cd "$RUN"
out=$($C key generate -o c/id.txt 2>&1); r=$(grep -o 'age1[0-9a-z]*' <<<"$out" | head -1)
$C init -q -r c/repo --recipient "$r"; $C key write-key -q -r c/repo -i c/id.txt -o c/w.key
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$RUN/r/repo RESTIC_CACHE_DIR=$RUN/r/cache
restic init -q
echo "# $($C --version) (prune --max-unused $MAX_UNUSED), $(restic version | sed -n 1p); load $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'day cairn_prune_s cairn_rewritten_blobs cairn_freed_MB cairn_repo_MB restic_prune_s restic_repacked_blobs restic_freed_MB restic_repo_MB\n'
for d in $(seq 1 "$N"); do
    cp "$S/day-$d.db" stage/snapshot.db
    $C backup etcd -q -r c/repo -k c/w.key --host bench --snapshot-file stage/snapshot.db >/dev/null
    restic backup -q --host bench stage/snapshot.db >/dev/null
    if ((d > 7)); then
        $C forget -q -r c/repo -i c/id.txt --keep-last 7 >/dev/null
        b=$(du -sb c/repo | cut -f1); sync
        /usr/bin/time -f %e -o t.c $C prune -r c/repo -i c/id.txt --max-unused "$MAX_UNUSED" >p.c 2>&1
        a=$(du -sb c/repo | cut -f1)
        rw=$(grep -o '[0-9]* live blobs rewritten' p.c | awk '{print $1}')
        restic forget -q --keep-last 7 >/dev/null
        rb=$(du -sb r/repo | cut -f1); sync
        /usr/bin/time -f %e -o t.r restic prune >p.r 2>&1
        ra=$(du -sb r/repo | cut -f1)
        rr=$(awk '/^to repack:/ {print $3}' p.r)
        printf '%s %s %s %.1f %.1f %s %s %.1f %.1f\n' "$d" "$(cat t.c)" "${rw:-0}" \
            "$(awk -v a="$a" -v b="$b" 'BEGIN{print (b-a)/1e6}')" "$(awk -v a="$a" 'BEGIN{print a/1e6}')" \
            "$(cat t.r)" "${rr:-0}" \
            "$(awk -v a="$ra" -v b="$rb" 'BEGIN{print (b-a)/1e6}')" "$(awk -v a="$ra" 'BEGIN{print a/1e6}')" | tee -a days.txt
    fi
done
awk '{ c += $2; r += $6; n++ } END { if (n) printf "# mean prune s over %d days: cairn %.2f, restic %.2f, cairn/restic %.2f\n", n, c / n, r / n, c / r }' days.txt
