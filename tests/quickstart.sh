#!/usr/bin/env bash
# The README's first command: build cairn and run its main job on an example.
# Creates a small control-plane-like tree, a repository, an identity and a write key; backs up
# with the write key (as a control-plane host would), restores with the identity into a fresh
# directory (as during an outage), and checks every byte came back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps build      # protoc, which etcd-client's build needs (apt, when missing)
cargo build --release --locked -p cairn
cairn="$PWD/target/release/cairn"

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-quickstart.XXXXXX")
echo "== working in $work"
src="$work/host/etc/kubernetes"
mkdir -p "$src/manifests" "$src/static-pod-resources/etcd-pod-3/secrets/etcd-all-certs"
for c in kube-apiserver kube-controller-manager kube-scheduler etcd; do
  printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: openshift-%s\n' "$c" "$c" \
    > "$src/manifests/$c-pod.yaml"
done
head -c 4096 /dev/urandom | base64 > "$src/static-pod-resources/etcd-pod-3/secrets/etcd-all-certs/etcd-peer.key"
chmod 600 "$src/static-pod-resources/etcd-pod-3/secrets/etcd-all-certs/etcd-peer.key"
ln -s ../../manifests/etcd-pod.yaml "$src/static-pod-resources/etcd-pod-3/etcd-pod.yaml"

export CAIRN_REPO="$work/repo"
echo "== cairn key generate: the identity stays with the administrators"
recipient=$("$cairn" key generate -o "$work/identity.txt")
echo "recipient: $recipient"
"$cairn" init --recipient "$recipient"
"$cairn" key write-key --identity "$work/identity.txt" -o "$work/write.key"

echo "== backup with the write key (what a control-plane host holds)"
"$cairn" backup --key "$work/write.key" --tag example "$work/host/etc/kubernetes"
echo "== second backup: unchanged files are not read again"
"$cairn" backup --key "$work/write.key" --tag example "$work/host/etc/kubernetes"
"$cairn" snapshots --key "$work/write.key"

echo "== restore with the identity into a fresh directory"
"$cairn" restore --identity "$work/identity.txt" latest --target "$work/restored"
diff -r --no-dereference "$work/host/etc" "$work/restored$work/host/etc"
echo "== restored tree is identical to the source"

echo "== audit: every pack read back and every blob verified"
"$cairn" check --identity "$work/identity.txt" --read-data
echo "== offsite copy (here another directory; s3://bucket/prefix works the same)"
"$cairn" init --like "$CAIRN_REPO" --repo "$work/offsite" --key "$work/write.key"
"$cairn" copy --to "$work/offsite" --key "$work/write.key"
echo "== retention: write keys are append-only, so the host cannot erase history…"
if "$cairn" forget --key "$work/write.key" --keep-last 1 --prune 2>/dev/null; then
  echo "a write key removed snapshots" >&2; exit 1
fi
echo "== …and the administrator applies it with the identity: keep the newest, prune the rest"
"$cairn" forget --identity "$work/identity.txt" --keep-last 1 --prune
"$cairn" check --key "$work/write.key"

echo "== unattended: the same backup as a configured job (what the systemd timer or daemon runs)"
cat > "$work/cairn.toml" <<EOF
state_dir = "$work/state"

[repositories.example]
url = "$work/repo"
key = "$work/write.key"

[jobs.example]
repository = "example"
schedule = "0 3 * * *"
timezone = "Europe/Paris"
tags = ["example"]
source = { kind = "paths", paths = ["$work/host/etc/kubernetes"] }
EOF
"$cairn" config check --config "$work/cairn.toml"
"$cairn" run example --config "$work/cairn.toml" --metrics-file "$work/cairn.prom"
"$cairn" jobs --config "$work/cairn.toml" --count 2
grep '^cairn_job_last_exit_code' "$work/cairn.prom"
echo "(all files are in $work; remove it when done)"
