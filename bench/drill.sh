#!/usr/bin/env bash
# Recovery drill: rebuild a control-plane host's files and a cluster-backup directory from
# nothing but the binary, the repository URL (a local moto S3 server) and the identity, with
# cairn and with restic, in the same run.
#
#   bash bench/drill.sh [WORKDIR]       (WORKDIR defaults to bench/work, git-ignored)
#
# Environment:
#   DRILL_DB_MB      size of the etcd database in MB (default 1000; e.g. 200 for a quick run)
#   BENCH_TOOLS      tools to run, default "cairn restic"
#   BENCH_SEED       data seed (default 1)
#   CAIRN_BIN        cairn binary (default target/release/cairn, built if missing)
#   RESTIC_BIN       restic binary (default: restic on PATH)
#
# Setup (not timed): a real etcd (Debian's) is grown to DRILL_DB_MB with bench/etcd_series.py
# and saved with `etcdctl snapshot save` (kept in WORKDIR/data/drill/ for later runs); a fake
# OpenShift 4 control-plane root is written (static pod resources of four components at their
# latest revisions, manifests, kubeconfigs, kubelet and CRI-O configuration, the MachineConfig
# Daemon's current config); each tool gets a fresh moto server and bucket and backs up the
# database with the static pod resources, then the host.
#   cairn:  backup cluster --snapshot-file DB --static-pods-dir ROOT/etc/kubernetes/static-pod-resources
#           backup host --preset ocp4-control-plane --root ROOT
#   restic: backup DB ROOT/etc/kubernetes/static-pod-resources ; backup of the preset's paths
#
# The drill (timed): HOME and the cache are new and empty; only the binary, the repository URL,
# the S3 endpoint/credentials and the identity (restic: the password) are given.
#   cairn:  restore latest --tag cluster --layout cluster-backup --target OUT/cluster-backup
#           restore latest --tag host --target OUT/host
#   restic: restore latest --tag cluster --target OUT/r ; tar czf of the static pod resources
#           (cluster-restore.sh reads static_kuberesources_*.tar.gz) ; restore latest --tag host
# Each step runs under /usr/bin/time (wall, peak RSS); the restored files are compared with the
# sources. Markdown report on stdout, progress on stderr, logs in WORKDIR/logs/drill-*.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/common.sh"
WORK=$(realpath -m "${1:-$ROOT/bench/work}")
RUN=$WORK/drill-run
LOGS=$WORK/logs
DBDIR=$WORK/data/drill
TOOLS=${BENCH_TOOLS:-"cairn restic"}
DB_MB=${DRILL_DB_MB:-1000}
SEED=${BENCH_SEED:-1}
DEFAULT_CAIRN=$ROOT/target/release/cairn
CAIRN=${CAIRN_BIN:-$DEFAULT_CAIRN}
RESTIC=${RESTIC_BIN:-restic}
TIME=/usr/bin/time
RESULTS=$RUN/results.txt

unset CAIRN_REPO CAIRN_IDENTITY CAIRN_KEY CAIRN_PASSPHRASE_FILE CAIRN_S3_ENDPOINT CAIRN_CACHE_DIR \
    CAIRN_NO_CACHE CAIRN_CONFIG RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_CACHE_DIR AWS_PROFILE \
    ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export ETCDCTL_API=3

log() { printf '[drill %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
record() { printf '%s %s\n' "$1" "$2" >>"$RESULTS"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOTO_PID=""
stop_pid() { [[ -z $1 ]] || { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }; }
cleanup() {
    stop_pid "$MOTO_PID"
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$RUN"/cairn "$RUN"/restic "$RUN/etcd" "$RUN/cairn-bin" 2>/dev/null || true; fi
}
trap cleanup EXIT

[[ -x $TIME ]] || die "$TIME (GNU time) is needed for peak RSS"
[[ $DB_MB =~ ^[0-9]+$ && $DB_MB -ge 10 ]] || die "DRILL_DB_MB must be a number of MB (at least 10)"
for b in python3 curl etcd etcdctl tar; do command -v "$b" >/dev/null || die "$b not found"; done
python3 -c 'import moto.server, boto3' 2>/dev/null || die "python3 modules moto (server) and boto3 are needed"
need_tools
mkdir -p "$WORK" "$LOGS" "$DBDIR"
rm -rf "$RUN"
mkdir -p "$RUN"
: >"$RESULTS"
pin_versions

# ---------------------------------------------------------------------------------------------
# The etcd database: a real etcd grown to DB_MB, saved by etcdctl (with its sha256 trailer).

DB=$DBDIR/etcd-${DB_MB}MB-seed$SEED.db
if [[ ! -s $DB ]]; then
    log "generating a ${DB_MB} MB etcd database (real etcd, bench/etcd_grown.sh)"
    bash "$ROOT/bench/etcd_grown.sh" "$DB" "$DB_MB" "$SEED" "$LOGS/drill-etcd.log" || die "growing etcd failed"
fi
record db_bytes "$(stat -c %s "$DB")"
log "database: $DB ($(stat -c %s "$DB") bytes)"

# ---------------------------------------------------------------------------------------------
# A fake OpenShift 4 control-plane root.

HOSTROOT=$RUN/hostroot
python3 - "$HOSTROOT" "$SEED" <<'PY'
import os, random, sys, json
root, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(f"drill-{seed}")
def put(path, data, mode=0o644):
    p = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)
def pem(n):
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(
        rng.randbytes(48).hex().encode() for _ in range(n)) + b"\n-----END CERTIFICATE-----\n"
spr = "/etc/kubernetes/static-pod-resources"
for comp, rev in [("kube-apiserver", 12), ("kube-controller-manager", 7), ("kube-scheduler", 6), ("etcd", 9)]:
    for r in (rev - 2, rev - 1, rev):  # older revisions stay on disk, as on a real host
        d = f"{spr}/{comp}-pod-{r}"
        put(f"{d}/pod.yaml", b"apiVersion: v1\nkind: Pod\n" + rng.randbytes(2000).hex().encode())
        for i in range(40):
            put(f"{d}/configmaps/cm-{i}/data.yaml", ("k: " + "x" * rng.randint(100, 20000) + "\n").encode())
        for i in range(20):
            put(f"{d}/secrets/s-{i}/tls.crt", pem(30))
            put(f"{d}/secrets/s-{i}/tls.key", pem(20), 0o600)
    put(f"{spr}/{comp}-certs/secrets/serving/tls.crt", pem(30))
put(f"{spr}/etcd-member/ca.crt", pem(30))
for m in ("kube-apiserver-pod", "kube-controller-manager-pod", "kube-scheduler-pod", "etcd-pod"):
    put(f"/etc/kubernetes/manifests/{m}.yaml", b"apiVersion: v1\nkind: Pod\n" + rng.randbytes(4000).hex().encode())
for k in ("kubeconfig", "kubelet.conf", "kubelet-ca.crt", "ca.crt"):
    put(f"/etc/kubernetes/{k}", pem(40), 0o600)
put("/etc/kubernetes/kubelet.conf", b"kind: KubeletConfiguration\n")
put("/var/lib/kubelet/config.yaml", b"kind: KubeletConfiguration\n" * 40)
put("/etc/systemd/system/kubelet.service.d/10-mco-default-env.conf", b"[Service]\nEnvironment=X=1\n")
put("/etc/containers/registries.conf", b"unqualified-search-registries = ['registry.access.redhat.com']\n")
put("/etc/containers/policy.json", b'{"default":[{"type":"insecureAcceptAnything"}]}\n')
put("/etc/crio/crio.conf.d/00-default", b"[crio]\n" * 50)
put("/etc/machine-config-daemon/currentconfig", json.dumps(
    {"metadata": {"name": "rendered-master-" + rng.randbytes(16).hex()},
     "spec": {"config": {"storage": {"files": [{"path": f"/etc/f{i}", "contents": {"source": "data:," + "y" * 3000}} for i in range(200)]}}}}).encode())
put("/etc/pki/ca-trust/source/anchors/corp-ca.crt", pem(30))
put("/etc/os-release", b'NAME="Red Hat Enterprise Linux CoreOS"\nID="rhcos"\nVERSION_ID="4.14"\nPRETTY_NAME="Red Hat Enterprise Linux CoreOS 414.92"\n')
PY
SPR=$HOSTROOT/etc/kubernetes/static-pod-resources
# The paths of the ocp4-control-plane preset that exist on the fake host, for restic.
mapfile -t PRESET_PATHS < <("$CAIRN" presets show ocp4-control-plane --json \
    | python3 -c 'import json,sys,os; r=sys.argv[1]; [print(r+p) for p in json.load(sys.stdin)["paths"] if os.path.lexists(r+p)]' "$HOSTROOT")
record host_bytes "$(du -sb "$HOSTROOT" | cut -f1)"
record host_files "$(find "$HOSTROOT" -type f | wc -l)"
log "fake control-plane root: $HOSTROOT ($(find "$HOSTROOT" -type f | wc -l) files)"

# ---------------------------------------------------------------------------------------------
# Servers and timing.

start_moto() {
    local port
    port=$(free_port)
    python3 -m moto.server -p "$port" >"$LOGS/drill-moto-$1.log" 2>&1 &
    MOTO_PID=$!
    ENDPOINT=http://127.0.0.1:$port
    for _ in $(seq 100); do curl -sf -o /dev/null "$ENDPOINT/" && break; sleep 0.2; done
    curl -sf -o /dev/null "$ENDPOINT/" || die "moto did not come up (see $LOGS/drill-moto-$1.log)"
    python3 -c 'import boto3,sys; boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=sys.argv[2])' \
        "$ENDPOINT" "drill-$1" || die "bucket creation failed"
}

# timed NAME CMD…: run under GNU time; records NAME.wall and NAME.rss_kb.
timed() {
    local name=$1
    shift
    local out=$RUN/$name.time
    "$TIME" -f '%e %M' -o "$out" "$@" >>"$LOGS/drill-$name.log" 2>&1 || die "$name failed (see $LOGS/drill-$name.log)"
    read -r wall rss <"$out"
    record "$name.wall" "$wall"
    record "$name.rss_kb" "$rss"
    log "$name: ${wall}s, peak RSS ${rss} KB"
}

# same_tree A B: the regular files below A and B have the same content.
same_tree() {
    diff -r "$1" "$2" >/dev/null || die "restored tree $2 differs from $1"
}

# ---------------------------------------------------------------------------------------------
# cairn

drill_cairn() {
    local C=$RUN/cairn
    mkdir -p "$C/admin-home" "$C/drill-home"
    start_moto cairn
    local REPO=s3://drill-cairn/repo
    # Setup, as the administrator and the host would have done it before the outage.
    (
        export HOME=$C/admin-home CAIRN_S3_ENDPOINT=$ENDPOINT
        "$CAIRN" key generate -o "$C/identity.txt" >"$C/recipient" 2>>"$LOGS/drill-cairn-setup.log"
        "$CAIRN" -r "$REPO" init --recipient "$(cat "$C/recipient")" >>"$LOGS/drill-cairn-setup.log" 2>&1
        "$CAIRN" -r "$REPO" -i "$C/identity.txt" key write-key -o "$C/write.key" >>"$LOGS/drill-cairn-setup.log" 2>&1
    ) || die "cairn setup (see $LOGS/drill-cairn-setup.log)"
    local B=(env HOME="$C/admin-home" CAIRN_S3_ENDPOINT="$ENDPOINT" "$CAIRN" -r "$REPO" -k "$C/write.key")
    timed cairn.backup_cluster "${B[@]}" backup cluster --host master-0 --tag cluster --snapshot-file "$DB" --static-pods-dir "$SPR"
    timed cairn.backup_host "${B[@]}" backup host --host master-0 --tag host --preset ocp4-control-plane --root "$HOSTROOT"
    # The drill: a new HOME, no cache, the binary, the URL and the identity.
    local OUT=$C/out
    local D=(env -i PATH=/usr/bin:/bin HOME="$C/drill-home" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
        "$CAIRN" -r "$REPO" --s3-endpoint "$ENDPOINT" -i "$C/identity.txt")
    local t0 t1
    t0=$(date +%s.%N)
    timed cairn.drill_cluster "${D[@]}" restore latest --tag cluster --layout cluster-backup --target "$OUT/cluster-backup"
    timed cairn.drill_host "${D[@]}" restore latest --tag host --target "$OUT/host"
    t1=$(date +%s.%N)
    record cairn.drill.wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    # Check what came back.
    local db
    db=$(ls "$OUT"/cluster-backup/snapshot_*.db)
    cmp -s "$db" "$DB" || die "cairn: restored database differs"
    ls "$OUT"/cluster-backup/static_kuberesources_*.tar.gz >/dev/null || die "cairn: no static pod archive"
    for p in etc/kubernetes etc/containers var/lib/kubelet/config.yaml etc/machine-config-daemon; do
        same_tree "$HOSTROOT/$p" "$OUT/host/$p"
    done
    [[ -s $OUT/host/.cairn/inventory/packages.tsv ]] || die "cairn: no inventory restored"
    record cairn.cache_files "$(find "$C/drill-home" -type f | wc -l)"
    stop_pid "$MOTO_PID"
    MOTO_PID=""
}

# ---------------------------------------------------------------------------------------------
# restic

drill_restic() {
    local R=$RUN/restic
    mkdir -p "$R/admin-home" "$R/drill-home"
    start_moto restic
    local REPO=s3:$ENDPOINT/drill-restic/repo
    printf 'drill\n' >"$R/password"
    local B=(env HOME="$R/admin-home" "$RESTIC" -r "$REPO" --password-file "$R/password")
    "${B[@]}" init >>"$LOGS/drill-restic-setup.log" 2>&1 || die "restic init (see $LOGS/drill-restic-setup.log)"
    timed restic.backup_cluster "${B[@]}" backup --host master-0 --tag cluster "$DB" "$SPR"
    timed restic.backup_host "${B[@]}" backup --host master-0 --tag host "${PRESET_PATHS[@]}"
    local OUT=$R/out
    local D=(env -i PATH=/usr/bin:/bin HOME="$R/drill-home" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
        "$RESTIC" -r "$REPO" --password-file "$R/password")
    local t0 t1
    t0=$(date +%s.%N)
    timed restic.drill_cluster "${D[@]}" restore latest --tag cluster --target "$OUT/r"
    # cluster-restore.sh wants the static pod resources as a tar.gz beside the database.
    mkdir -p "$OUT/cluster-backup"
    timed restic.drill_archive tar czf "$OUT/cluster-backup/static_kuberesources.tar.gz" -C "$OUT/r$SPR" .
    mv "$OUT/r$DB" "$OUT/cluster-backup/snapshot.db"
    timed restic.drill_host "${D[@]}" restore latest --tag host --target "$OUT/host"
    t1=$(date +%s.%N)
    record restic.drill.wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    cmp -s "$OUT/cluster-backup/snapshot.db" "$DB" || die "restic: restored database differs"
    same_tree "$HOSTROOT/etc/kubernetes" "$OUT/host$HOSTROOT/etc/kubernetes"
    stop_pid "$MOTO_PID"
    MOTO_PID=""
}

for t in $TOOLS; do
    log "== $t"
    "drill_$t"
done

# ---------------------------------------------------------------------------------------------
# Report.

python3 - "$RESULTS" "$TOOLS" "$cairn_version" "$restic_version" <<'PY'
import sys
res = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    res[k] = float(v)
tools = sys.argv[2].split()
print("## Recovery drill (bench/drill.sh)\n")
print(f"- etcd database: {res['db_bytes'] / 1e6:.0f} MB (real etcd, `etcdctl snapshot save`); "
      f"fake OpenShift 4 control-plane root: {int(res['host_files'])} files, {res['host_bytes'] / 1e6:.1f} MB")
print(f"- cairn: {sys.argv[3]}")
print(f"- restic: {sys.argv[4]}")
print("- repository on a local moto S3 server; the drill starts with a new HOME and an empty cache, "
      "with only the binary, the URL and the identity (restic: password)")
print("- cairn drill: `restore --layout cluster-backup` (db + static_kuberesources tar.gz, verified) and "
      "`restore` of the host snapshot; restic drill: `restore` + `tar czf` of the static pod "
      "resources + `restore` of the host paths\n")
rows = [("backup cluster (db + static pods)", "backup_cluster"), ("backup host", "backup_host"),
        ("drill: cluster-backup directory", "drill_cluster"), ("drill: host tree", "drill_host")]
hdr = "| step | " + " | ".join(f"{t} wall s | {t} peak RSS MB" for t in tools)
if len(tools) == 2:
    hdr += " | wall ratio (cairn/restic) |"
else:
    hdr += " |"
print(hdr)
print("|" + " --- |" * (1 + 2 * len(tools) + (1 if len(tools) == 2 else 0)))
def cell(t, k):
    w = res.get(f"{t}.{k}.wall")
    r = res.get(f"{t}.{k}.rss_kb")
    return w, r
for label, k in rows:
    line = f"| {label} |"
    walls = []
    for t in tools:
        w, r = cell(t, k)
        if k == "drill_cluster" and t == "restic" and w is not None:
            w += res.get("restic.drill_archive.wall", 0)
        walls.append(w)
        line += f" {w:.1f} | {r / 1024:.0f} |" if w is not None else " - | - |"
    if len(tools) == 2:
        a, b = walls
        line += f" {a / b:.2f} |" if a and b else " - |"
    print(line)
line = "| **drill total (wall)** |"
totals = [res.get(f"{t}.drill.wall") for t in tools]
for t, w in zip(tools, totals):
    peak = max(res.get(f"{t}.{k}.rss_kb", 0) for k in ("drill_cluster", "drill_host"))
    line += f" **{w:.1f}** | {peak / 1024:.0f} |"
if len(tools) == 2 and all(totals):
    line += f" **{totals[0] / totals[1]:.2f}** |"
print(line)
PY
