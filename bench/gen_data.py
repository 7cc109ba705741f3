#!/usr/bin/env python3
"""Generate the benchmark input for bench/run.sh, deterministically from a seed.

Layout under WORKDIR/data (WORKDIR defaults to bench/work, which is git-ignored):

  etc/...                 ~5,000 small files (200 B .. 40 KB) shaped like a control-plane
                          node's config: etc/kubernetes/static-pod-resources/<component>-pod-<rev>/
                          {configmaps,secrets}/..., etc/kubernetes/manifests, etc/origin, etc/cni,
                          etc/pki/ca-trust/source/anchors. Revision directories are near-identical
                          copies of each other (a few files differ per revision).
  etcd/snapshot.db        ~150 MB stand-in for an etcd snapshot: a bbolt-like file of 4 KiB pages
                          (two meta pages, leaf pages of /registry/... keys with protobuf-ish
                          values mixing text and random bytes, a few free/branch pages).
  etcd-v2/snapshot.db     the same file with 2% of its pages, at random positions, rewritten.
  big/big.bin             ~2 GiB file of the same page mix, only with --big or BENCH_BIG=1
                          (used for the peak-RSS measurement).

Each part is written once; a marker file data/.gen-<part> records the parameters, and a part is
regenerated only if its marker is missing or differs (or with --force).

Usage: gen_data.py [WORKDIR] [--seed N] [--big] [--force]
"""

import argparse
import base64
import json
import os
import random
import shutil
import struct
import sys
import time

GEN_VERSION = 3  # bump when the generated content changes
PAGE = 4096
SNAPSHOT_BYTES = 150 * 1000 * 1000
BIG_BYTES = 2 * 1024 * 1024 * 1024
CHANGED_FRACTION = 0.02


def log(msg):
    print(f"[gen_data] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Vocabulary shared by the config tree and the etcd pages.

NAMESPACES = [
    "openshift-apiserver", "openshift-apiserver-operator", "openshift-authentication",
    "openshift-authentication-operator", "openshift-cloud-controller-manager",
    "openshift-cluster-machine-approver", "openshift-cluster-node-tuning-operator",
    "openshift-cluster-samples-operator", "openshift-cluster-storage-operator",
    "openshift-cluster-version", "openshift-config", "openshift-config-managed",
    "openshift-config-operator", "openshift-console", "openshift-console-operator",
    "openshift-controller-manager", "openshift-controller-manager-operator", "openshift-dns",
    "openshift-dns-operator", "openshift-etcd", "openshift-etcd-operator",
    "openshift-image-registry", "openshift-ingress", "openshift-ingress-canary",
    "openshift-ingress-operator", "openshift-insights", "openshift-kube-apiserver",
    "openshift-kube-apiserver-operator", "openshift-kube-controller-manager",
    "openshift-kube-controller-manager-operator", "openshift-kube-scheduler",
    "openshift-kube-scheduler-operator", "openshift-kube-storage-version-migrator",
    "openshift-machine-api", "openshift-machine-config-operator", "openshift-marketplace",
    "openshift-monitoring", "openshift-multus", "openshift-network-diagnostics",
    "openshift-network-operator", "openshift-oauth-apiserver", "openshift-operator-lifecycle-manager",
    "openshift-ovn-kubernetes", "openshift-service-ca", "openshift-service-ca-operator",
    "kube-system", "default", "payments", "checkout", "inventory", "search", "ledger",
]

NAME_BASES = [
    "apiserver", "etcd", "installer", "revision-pruner", "kube-apiserver-guard", "router-default",
    "prometheus-k8s", "alertmanager-main", "node-exporter", "ovnkube-node", "multus",
    "network-metrics-daemon", "dns-default", "node-resolver", "machine-config-daemon",
    "image-pruner", "console", "downloads", "oauth-openshift", "packageserver",
    "certified-operators", "redhat-operators", "cluster-version-operator", "thanos-querier",
    "kube-state-metrics", "openshift-state-metrics", "telemeter-client", "checkout-api",
    "payments-worker", "inventory-sync", "search-indexer", "ledger-writer", "tuned",
]

RESOURCES = [
    # (resource, weight, fraction of value that is random bytes)
    ("pods", 30, 0.30),
    ("events", 14, 0.25),
    ("configmaps", 12, 0.20),
    ("secrets", 12, 0.80),
    ("leases", 5, 0.20),
    ("replicasets", 6, 0.30),
    ("deployments", 4, 0.30),
    ("services/specs", 3, 0.25),
    ("serviceaccounts", 3, 0.40),
    ("rolebindings", 3, 0.25),
    ("endpointslices", 4, 0.30),
    ("controllerrevisions", 3, 0.35),
    ("operators.coreos.com/clusterserviceversions", 1, 0.30),
]

LABEL_KEYS = [
    "app", "app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "pod-template-hash",
    "controller-revision-hash", "pod-template-generation", "k8s-app", "component", "tier",
    "revision", "olm.catalogSource", "openshift.io/component", "kubernetes.io/os",
]
ANNOTATION_KEYS = [
    "k8s.ovn.org/pod-networks", "k8s.v1.cni.cncf.io/network-status",
    "openshift.io/scc", "target.workload.openshift.io/management",
    "kubectl.kubernetes.io/default-container", "operator.openshift.io/dep-desired.generation",
    "deployment.kubernetes.io/revision", "service.beta.openshift.io/serving-cert-secret-name",
    "kubernetes.io/config.hash", "kubernetes.io/config.source", "kubernetes.io/config.seen",
    "openshift.io/generated-by", "include.release.openshift.io/self-managed-high-availability",
]
WORDS = (
    "true false enabled disabled Always IfNotPresent Never Running Succeeded Pending Ready "
    "ContainersReady PodScheduled Initialized RollingUpdate Recreate ClusterFirst Default "
    "TCP UDP https metrics healthz readyz livez serving-cert trusted-ca-bundle kube-root-ca.crt "
    "openshift-service-ca.crt node-role.kubernetes.io/master NoSchedule NoExecute Exists Equal "
    "system-node-critical system-cluster-critical restricted-v2 privileged hostnetwork "
    "BestEffort Burstable Guaranteed File FallbackToLogsOnError /var/run/secrets "
    "/etc/kubernetes/static-pod-resources /etc/kubernetes/static-pod-certs /var/log/kube-apiserver"
).split()
FLAGS = [
    "--v=2", "--port=0", "--secure-port=6443", "--bind-address=0.0.0.0", "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NodeRestriction", "--etcd-servers=https://localhost:2379",
    "--tls-cert-file=/etc/kubernetes/static-pod-certs/secrets/service-network-serving-certkey/tls.crt",
    "--tls-private-key-file=/etc/kubernetes/static-pod-certs/secrets/service-network-serving-certkey/tls.key",
    "--client-ca-file=/etc/kubernetes/static-pod-certs/configmaps/client-ca/ca-bundle.crt",
    "--kubeconfig=/etc/kubernetes/static-pod-resources/configmaps/controller-manager-kubeconfig/kubeconfig",
    "--leader-elect=true", "--leader-elect-lease-duration=137s", "--leader-elect-renew-deadline=107s",
    "--feature-gates=APIPriorityAndFairness=true,RotateKubeletServerCertificate=true",
    "--cert-dir=/var/run/kubernetes", "--allocate-node-cidrs=false", "--cluster-signing-duration=720h",
    "--service-account-private-key-file=/etc/kubernetes/static-pod-resources/secrets/service-account-private-key/service-account.key",
    "--openshift-config=/etc/kubernetes/static-pod-resources/configmaps/config/config.yaml",
    "--tls-min-version=VersionTLS12", "--profiling=false", "--audit-log-maxsize=100",
]


def rand_hex(rng, n):
    return f"{rng.getrandbits(4 * n):0{n}x}"


def rand_uuid(rng):
    h = rand_hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rand_ts(rng, year=2024):
    return (f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z")


def image_ref(rng):
    repo = rng.choice(["quay.io/openshift-release-dev/ocp-v4.0-art-dev",
                       "registry.redhat.io/openshift4/ose-kube-rbac-proxy",
                       "quay.io/openshift-release-dev/ocp-release"])
    return f"{repo}@sha256:{rand_hex(rng, 64)}"


# --------------------------------------------------------------------------------------------
# Text content for the config tree.

def b64_lines(raw, width=64):
    s = base64.b64encode(raw).decode()
    return "\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n"


def pem(rng, label, der_len):
    return f"-----BEGIN {label}-----\n" + b64_lines(rng.randbytes(der_len)) + f"-----END {label}-----\n"


def cert(rng):
    return pem(rng, "CERTIFICATE", rng.randint(780, 1400))


def rsa_key(rng):
    return pem(rng, "RSA PRIVATE KEY", rng.choice([1190, 1192, 1193, 1675]))


def jwt(rng):
    def seg(n):
        return base64.urlsafe_b64encode(rng.randbytes(n)).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiIsImtpZCI6I{seg(40)}.{seg(rng.randint(420, 560))}.{seg(256)}"


def yaml_doc(rng, target, kind="Config", revision=None):
    """YAML-like config text of about `target` bytes (cut at a line boundary)."""
    out = [f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {rng.choice(NAME_BASES)}\n"
           f"  namespace: {rng.choice(NAMESPACES)}\n"]
    if revision is not None:
        out.append(f"  labels:\n    app: openshift-kube-apiserver\n    revision: \"{revision}\"\n")
    size = sum(map(len, out))
    depth = 0
    while size < target:
        r = rng.random()
        ind = "  " * depth
        if r < 0.12 and depth < 4:
            line = f"{ind}{rng.choice(['spec', 'containers', 'volumes', 'env', 'ports', 'resources', 'servingInfo', 'admission', 'pluginConfig', 'apiServerArguments', 'tolerations', 'securityContext'])}:\n"
            depth += 1
        elif r < 0.22 and depth > 0:
            depth -= 1
            continue
        elif r < 0.40:
            line = f"{ind}- {rng.choice(FLAGS)}\n"
        elif r < 0.48:
            line = f"{ind}image: {image_ref(rng)}\n"
        elif r < 0.56:
            line = f"{ind}- name: {rng.choice(WORDS)}\n{ind}  mountPath: {rng.choice(WORDS)}\n"
        elif r < 0.64:
            line = f"{ind}{rng.choice(LABEL_KEYS)}: {rng.choice(WORDS)}\n"
        elif r < 0.70:
            line = f"{ind}uid: {rand_uuid(rng)}\n"
        elif r < 0.76:
            line = f"{ind}{rng.choice(['cpu', 'memory', 'timeoutSeconds', 'periodSeconds', 'port', 'containerPort'])}: {rng.randint(1, 65535)}\n"
        else:
            line = f"{ind}{rng.choice(ANNOTATION_KEYS)}: {rng.choice(WORDS)} {rng.choice(WORDS)}\n"
        out.append(line)
        size += len(line)
    text = "".join(out)
    cut = text.rfind("\n", 0, target)
    return text[:cut + 1] if cut > target // 2 else text[:target]


def json_doc(rng, target):
    obj = {"issuer": "https://oauth-openshift.apps.example.invalid",
           "authorization_endpoint": "https://oauth-openshift.apps.example.invalid/oauth/authorize",
           "token_endpoint": "https://oauth-openshift.apps.example.invalid/oauth/token",
           "scopes_supported": ["user:check-access", "user:full", "user:info", "user:list-projects"],
           "response_types_supported": ["code", "token"],
           "grant_types_supported": ["authorization_code", "implicit"],
           "code_challenge_methods_supported": ["plain", "S256"]}
    items = []
    while len(json.dumps(obj)) + sum(len(json.dumps(i)) for i in items) < target:
        items.append({"name": rng.choice(NAME_BASES), "uid": rand_uuid(rng),
                      "namespace": rng.choice(NAMESPACES), "created": rand_ts(rng),
                      rng.choice(LABEL_KEYS): rng.choice(WORDS)})
    obj["items"] = items
    return json.dumps(obj, indent=2)[: max(target, 200)]


def kubeconfig(rng, server="https://localhost:6443"):
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: "
            f"/etc/kubernetes/static-pod-resources/configmaps/serviceaccount-ca/ca-bundle.crt\n"
            f"    server: {server}\n  name: loopback\ncontexts:\n- context:\n    cluster: loopback\n"
            f"    user: {rng.choice(NAME_BASES)}\n  name: {rng.choice(NAME_BASES)}\n"
            f"current-context: {rng.choice(NAME_BASES)}\nusers:\n- name: {rng.choice(NAME_BASES)}\n"
            f"  user:\n    client-certificate: /etc/kubernetes/static-pod-certs/secrets/client/tls.crt\n"
            f"    client-key: /etc/kubernetes/static-pod-certs/secrets/client/tls.key\n")


def bundle(rng, ca_pool, target):
    out, size = [], 0
    while size < target:
        c = rng.choice(ca_pool)
        if size + len(c) > 40_000:
            break
        out.append(c)
        size += len(c)
    return "".join(out) if out else ca_pool[0]


def fit(text, lo=200, hi=40_000):
    """Keep a file within lo..hi bytes (pad short ones with a YAML comment)."""
    if len(text) < lo:
        text = text + "# " + "-" * (lo - len(text) - 3) + "\n"
    return text[:hi]


# Per-component file sets of one static-pod revision: relative path -> (kind, size parameter).
COMPONENTS = {
    "kube-apiserver": {
        "revisions": 60,
        "files": {
            "configmaps/config/config.yaml": ("yaml", 30_000),
            "configmaps/kube-apiserver-pod/pod.yaml": ("pod", 40_000),
            "configmaps/kube-apiserver-pod/version": ("yaml", 200),
            "configmaps/kube-apiserver-pod/forceRedeploymentReason": ("reason", 0),
            "configmaps/etcd-serving-ca/ca-bundle.crt": ("bundle", 10_000),
            "configmaps/kube-apiserver-server-ca/ca-bundle.crt": ("bundle", 38_000),
            "configmaps/kubelet-serving-ca/ca-bundle.crt": ("bundle", 30_000),
            "configmaps/sa-token-signing-certs/service-account-001.pub": ("pub", 0),
            "configmaps/sa-token-signing-certs/service-account-002.pub": ("pub", 0),
            "configmaps/sa-token-signing-certs/service-account-003.pub": ("pub", 0),
            "configmaps/bound-sa-token-signing-certs/service-account-001.pub": ("pub", 0),
            "configmaps/kube-apiserver-audit-policies/policy.yaml": ("yaml", 40_000),
            "configmaps/kube-apiserver-audit-policies/default.yaml": ("yaml", 36_000),
            "configmaps/kube-apiserver-audit-policies/writerequestbodies.yaml": ("yaml", 38_000),
            "configmaps/kube-apiserver-audit-policies/allrequestbodies.yaml": ("yaml", 39_000),
            "configmaps/oauth-metadata/oauthMetadata": ("json", 900),
            "configmaps/revision-status/revision": ("revision", 0),
            "configmaps/revision-status/status": ("yaml", 300),
            "configmaps/kube-apiserver-cert-syncer-kubeconfig/kubeconfig": ("kubeconfig", 0),
            "configmaps/trusted-ca-bundle/ca-bundle.crt": ("bundle", 40_000),
            "configmaps/check-endpoints-kubeconfig/kubeconfig": ("kubeconfig", 0),
            "configmaps/control-plane-node-kubeconfig/kubeconfig": ("kubeconfig", 0),
            "configmaps/aggregator-client-ca/ca-bundle.crt": ("bundle", 10_000),
            "configmaps/client-ca/ca-bundle.crt": ("bundle", 40_000),
            "configmaps/kube-apiserver-pod/kube-apiserver-startup-monitor-pod.yaml": ("pod", 8_000),
            "secrets/etcd-client/tls.crt": ("cert", 0),
            "secrets/etcd-client/tls.key": ("key", 0),
            "secrets/localhost-recovery-client-token/ca.crt": ("bundle", 30_000),
            "secrets/localhost-recovery-client-token/namespace": ("yaml", 200),
            "secrets/localhost-recovery-client-token/service-ca.crt": ("bundle", 1_500),
            "secrets/localhost-recovery-client-token/token": ("token", 0),
            "secrets/localhost-recovery-serving-certkey/tls.crt": ("cert", 0),
            "secrets/localhost-recovery-serving-certkey/tls.key": ("key", 0),
            "secrets/encryption-config/encryption-config": ("yaml", 600),
            "secrets/webhook-authenticator/kubeConfig": ("kubeconfig", 0),
            "secrets/user-serving-cert/tls.crt": ("cert", 0),
            "secrets/user-serving-cert/tls.key": ("key", 0),
            "secrets/external-loadbalancer-serving-certkey/tls.crt": ("cert", 0),
        },
    },
    "kube-controller-manager": {
        "revisions": 40,
        "files": {
            "configmaps/config/config.yaml": ("yaml", 20_000),
            "configmaps/kube-controller-manager-pod/pod.yaml": ("pod", 35_000),
            "configmaps/kube-controller-manager-pod/version": ("yaml", 200),
            "configmaps/kube-controller-manager-pod/forceRedeploymentReason": ("reason", 0),
            "configmaps/cluster-policy-controller-config/config.yaml": ("yaml", 8_000),
            "configmaps/controller-manager-kubeconfig/kubeconfig": ("kubeconfig", 0),
            "configmaps/kube-controller-cert-syncer-kubeconfig/kubeconfig": ("kubeconfig", 0),
            "configmaps/serviceaccount-ca/ca-bundle.crt": ("bundle", 40_000),
            "configmaps/service-ca/ca-bundle.crt": ("bundle", 1_500),
            "configmaps/recycler-config/recycler-pod.yaml": ("pod", 2_000),
            "configmaps/revision-status/revision": ("revision", 0),
            "configmaps/revision-status/status": ("yaml", 300),
            "configmaps/cloud-config/config": ("yaml", 3_000),
            "configmaps/trusted-ca-bundle/ca-bundle.crt": ("bundle", 40_000),
            "secrets/service-account-private-key/service-account.key": ("key", 0),
            "secrets/service-account-private-key/service-account.pub": ("pub", 0),
            "secrets/serving-cert/tls.crt": ("cert", 0),
            "secrets/serving-cert/tls.key": ("key", 0),
            "secrets/localhost-recovery-client-token/ca.crt": ("bundle", 30_000),
            "secrets/localhost-recovery-client-token/namespace": ("yaml", 200),
            "secrets/localhost-recovery-client-token/service-ca.crt": ("bundle", 1_500),
            "secrets/localhost-recovery-client-token/token": ("token", 0),
            "secrets/csr-signer/tls.crt": ("cert", 0),
            "secrets/csr-signer/tls.key": ("key", 0),
            "configmaps/aggregator-client-ca/ca-bundle.crt": ("bundle", 10_000),
        },
    },
    "kube-scheduler": {
        "revisions": 30,
        "files": {
            "configmaps/config/config.yaml": ("yaml", 8_000),
            "configmaps/kube-scheduler-pod/pod.yaml": ("pod", 25_000),
            "configmaps/kube-scheduler-pod/version": ("yaml", 200),
            "configmaps/kube-scheduler-pod/forceRedeploymentReason": ("reason", 0),
            "configmaps/scheduler-kubeconfig/kubeconfig": ("kubeconfig", 0),
            "configmaps/kube-scheduler-cert-syncer-kubeconfig/kubeconfig": ("kubeconfig", 0),
            "configmaps/serviceaccount-ca/ca-bundle.crt": ("bundle", 40_000),
            "configmaps/revision-status/revision": ("revision", 0),
            "configmaps/revision-status/status": ("yaml", 300),
            "secrets/serving-cert/tls.crt": ("cert", 0),
            "secrets/serving-cert/tls.key": ("key", 0),
            "secrets/localhost-recovery-client-token/ca.crt": ("bundle", 30_000),
            "secrets/localhost-recovery-client-token/token": ("token", 0),
            "secrets/localhost-recovery-client-token/namespace": ("yaml", 200),
        },
    },
    "etcd": {
        "revisions": 25,
        "files": {
            "configmaps/etcd-pod/pod.yaml": ("pod", 40_000),
            "configmaps/etcd-pod/version": ("yaml", 200),
            "configmaps/etcd-pod/forceRedeploymentReason": ("reason", 0),
            "configmaps/etcd-scripts/etcd.env": ("yaml", 4_000),
            "configmaps/etcd-scripts/etcd-common-tools": ("yaml", 12_000),
            "configmaps/etcd-serving-ca/ca-bundle.crt": ("bundle", 10_000),
            "configmaps/etcd-peer-client-ca/ca-bundle.crt": ("bundle", 10_000),
            "configmaps/etcd-metrics-proxy-serving-ca/ca-bundle.crt": ("bundle", 1_500),
            "configmaps/etcd-metrics-proxy-client-ca/ca-bundle.crt": ("bundle", 1_500),
            "configmaps/restore-etcd-pod/pod.yaml": ("pod", 20_000),
            "configmaps/revision-status/revision": ("revision", 0),
            "configmaps/revision-status/status": ("yaml", 300),
            "configmaps/etcd-endpoints/endpoints.json": ("json", 600),
            "configmaps/etcd-all-bundles/server-ca-bundle.crt": ("bundle", 3_000),
            "configmaps/etcd-all-bundles/metrics-ca-bundle.crt": ("bundle", 1_500),
            "secrets/etcd-all-certs/etcd-peer-master-0.crt": ("cert", 0),
            "secrets/etcd-all-certs/etcd-peer-master-0.key": ("key", 0),
            "secrets/etcd-all-certs/etcd-serving-master-0.crt": ("cert", 0),
            "secrets/etcd-all-certs/etcd-serving-master-0.key": ("key", 0),
            "secrets/etcd-all-certs/etcd-serving-metrics-master-0.crt": ("cert", 0),
            "secrets/etcd-all-certs/etcd-serving-metrics-master-0.key": ("key", 0),
            "configmaps/etcd-pod/etcd-ca-bundle.crt": ("bundle", 10_000),
        },
    },
}


def make_file(rng, kind, size, ca_pool, revision):
    if kind == "yaml":
        return fit(yaml_doc(rng, max(size, 200)))
    if kind == "pod":
        return fit(yaml_doc(rng, size, kind="Pod", revision=revision))
    if kind == "bundle":
        return fit(bundle(rng, ca_pool, size))
    if kind == "cert":
        return fit(cert(rng))
    if kind == "key":
        return fit(rsa_key(rng))
    if kind == "pub":
        return fit(pem(rng, "PUBLIC KEY", 294))
    if kind == "token":
        return fit(jwt(rng))
    if kind == "json":
        return fit(json_doc(rng, size))
    if kind == "kubeconfig":
        return fit(kubeconfig(rng))
    if kind == "revision":
        return fit(f"{revision}\n")
    if kind == "reason":
        return fit(f"{rng.choice(['', 'rollout', 'certificate rotation', 'operator upgrade'])} "
                   f"{rand_ts(rng)} {rand_uuid(rng)}\n")
    raise ValueError(kind)


def edit_yaml(rng, text):
    """A small in-place config change: replace a few lines."""
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        lines[i] = f"  {rng.choice(LABEL_KEYS)}: {rng.choice(WORDS)}-{rand_hex(rng, 6)}\n"
    return fit("".join(lines))


def gen_config(data, seed):
    rng = random.Random(f"config-{seed}")
    etc = os.path.join(data, "etc")
    ca_pool = [cert(rng) for _ in range(48)]
    files = {}  # path relative to data/etc -> text

    # Static pod revisions: each component evolves from revision to revision; most files are
    # carried over unchanged, a few change.
    for comp, spec in COMPONENTS.items():
        state = {p: make_file(rng, k, s, ca_pool, 1) for p, (k, s) in spec["files"].items()}
        kinds = spec["files"]
        for rev in range(1, spec["revisions"] + 1):
            if rev > 1:
                for p, (k, s) in kinds.items():
                    if k in ("revision",):
                        state[p] = make_file(rng, k, s, ca_pool, rev)
                    elif k == "pod" and p.endswith("/pod.yaml") and "restore" not in p:
                        # the revision label and one image digest change on every revision
                        t = state[p].replace(f'revision: "{rev - 1}"', f'revision: "{rev}"', 1)
                        i = t.find("@sha256:")
                        if i >= 0:
                            t = t[:i + 8] + rand_hex(rng, 2) + t[i + 10:]
                        state[p] = fit(t)
                    elif k == "reason" and rng.random() < 0.3:
                        state[p] = make_file(rng, k, s, ca_pool, rev)
                    elif k in ("cert", "key") and rng.random() < 0.06:
                        state[p] = make_file(rng, k, s, ca_pool, rev)  # rotation
                    elif k == "yaml" and s >= 2000 and rng.random() < 0.08:
                        state[p] = edit_yaml(rng, state[p])
                    elif k == "bundle" and rng.random() < 0.04:
                        ca_pool[rng.randrange(len(ca_pool))] = cert(rng)
                        state[p] = make_file(rng, k, s, ca_pool, rev)
            base = f"kubernetes/static-pod-resources/{comp}-pod-{rev}"
            for p, text in state.items():
                files[f"{base}/{p}"] = text

    # Non-revisioned cert directories.
    for comp, n in (("kube-apiserver-certs", 90), ("kube-controller-manager-certs", 20),
                    ("kube-scheduler-certs", 10), ("etcd-certs", 60)):
        for i in range(n):
            d = f"kubernetes/static-pod-resources/{comp}/secrets/{rng.choice(NAME_BASES)}-{i}"
            files[f"{d}/tls.crt"] = fit(cert(rng))
            files[f"{d}/tls.key"] = fit(rsa_key(rng))
        for i in range(n // 3):
            d = f"kubernetes/static-pod-resources/{comp}/configmaps/{rng.choice(NAME_BASES)}-ca-{i}"
            files[f"{d}/ca-bundle.crt"] = fit(bundle(rng, ca_pool, rng.randint(1500, 30000)))

    # Manifests and kubelet config.
    for m in ("kube-apiserver-pod.yaml", "kube-controller-manager-pod.yaml",
              "kube-scheduler-pod.yaml", "etcd-pod.yaml", "kube-apiserver-startup-monitor-pod.yaml",
              "haproxy.yaml", "keepalived.yaml", "coredns.yaml"):
        files[f"kubernetes/manifests/{m}"] = fit(yaml_doc(rng, rng.randint(3000, 25000), kind="Pod"))
    files["kubernetes/kubelet.conf"] = fit(kubeconfig(rng))
    files["kubernetes/kubeconfig"] = fit(kubeconfig(rng))
    files["kubernetes/kubelet-ca.crt"] = fit(bundle(rng, ca_pool, 4000))
    files["kubernetes/ca.crt"] = fit(bundle(rng, ca_pool, 2000))
    files["kubernetes/kubelet/config.json"] = fit(json_doc(rng, 3000))
    for i in range(40):
        files[f"kubernetes/cni/net.d/{i:02d}-{rng.choice(NAME_BASES)}.conf"] = fit(json_doc(rng, rng.randint(200, 1500)))

    # etc/origin, etc/cni, etc/pki.
    for i in range(120):
        sub = rng.choice(["node", "master", "cloudprovider", "kubelet-plugins"])
        files[f"origin/{sub}/{rng.choice(NAME_BASES)}-{i}.yaml"] = fit(yaml_doc(rng, rng.randint(200, 12000)))
    for i in range(30):
        files[f"origin/node/pods/{rng.choice(NAME_BASES)}-{i}.json"] = fit(json_doc(rng, rng.randint(300, 6000)))
    for i in range(60):
        files[f"cni/net.d/{i:02d}-{rng.choice(NAME_BASES)}.conflist"] = fit(json_doc(rng, rng.randint(200, 2500)))
    for i in range(40):
        files[f"cni/multus/certs/{rng.choice(NAME_BASES)}-{i}.pem"] = fit(cert(rng) + rsa_key(rng))
    for i in range(150):
        files[f"pki/ca-trust/source/anchors/{rng.choice(NAME_BASES)}-{i:03d}.crt"] = fit(cert(rng))

    if os.path.exists(etc):
        shutil.rmtree(etc)
    total = 0
    for rel in sorted(files):
        path = os.path.join(etc, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        b = files[rel].encode()
        with open(path, "wb") as f:
            f.write(b)
        total += len(b)
    return len(files), total


# --------------------------------------------------------------------------------------------
# bbolt-like pages for the etcd snapshot stand-ins.

_RES_CHOICES = [r for r, w, _ in RESOURCES for _ in range(w)]
_RES_RANDOM = {r: f for r, _, f in RESOURCES}
_HEADER = struct.Struct("<QHHI")  # pgid, flags, count, overflow
_ELEM = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH_ELEM = struct.Struct("<IIQ")  # pos, ksize, pgid
_LEAF, _BRANCH, _META, _FREELIST = 0x02, 0x01, 0x04, 0x10


def _value(rng, res, ns, name):
    """A protobuf-ish Kubernetes object: text fields and random bytes."""
    parts = [b"k8s\x00\n\x0c\n\x02v1\x12\x06", res.split("/")[-1].encode(), b"\x12",
             f"\n\x1b{name}\x12\x00\x1a\x15{ns}\"\x00*${rand_uuid(rng)}2\x00"
             f"8\x00B\x08\x08{rng.randint(1_600_000_000, 1_800_000_000)}\x10\x00"
             f"Z\x16\n\x03app\x12\x0f{rng.choice(NAME_BASES)}".encode()]
    for _ in range(rng.randint(1, 4)):
        parts.append(f"b\x28\n\x1a{rng.choice(ANNOTATION_KEYS)}\x12\x0a{rng.choice(WORDS)}".encode())
    parts.append(f"z\x00\x8a\x01\x02\n\x06kubectl\x1a\x06Update\"\x02v1*\x08\x08"
                 f"{rand_ts(rng)}2\x08FieldsV1:\x0b\n\x09{{\"f:metadata\":{{\"f:labels\":{{}}}}}}".encode())
    text_len = sum(map(len, parts))
    frac = _RES_RANDOM[res]
    rnd = int(text_len * frac / (1 - frac)) if frac < 1 else text_len
    rnd = min(rnd + rng.randint(0, 64), 2500)
    parts.append(b"\x12" + rng.randbytes(rnd))
    parts.append(f"\x1a\x0b\n\x07Running\x12\x00{rng.choice(WORDS)}\x00".encode())
    return b"".join(parts)


def leaf_page(rng, pgid):
    res = rng.choice(_RES_CHOICES)
    ns = rng.choice(NAMESPACES)
    prefix = f"/registry/{res}/{ns}/".encode()
    base = rng.choice(NAME_BASES)
    kvs, used = [], 16
    fill = PAGE - rng.randint(0, 400)  # leaf pages are not always full
    while True:
        name = f"{base}-{rand_hex(rng, 5)}-{rand_hex(rng, 5)}"
        k = prefix + name.encode()
        v = _value(rng, res, ns, name)
        need = 16 + len(k) + len(v)
        if used + need > fill:
            if not kvs:
                v = v[: fill - used - 16 - len(k)]
                kvs.append((k, v))
            break
        kvs.append((k, v))
        used += need
    kvs.sort()
    n = len(kvs)
    elems, data = [], []
    pos = n * 16
    for i, (k, v) in enumerate(kvs):
        # pos is relative to the element itself, as in bbolt
        elems.append(_ELEM.pack(0, pos - i * 16, len(k), len(v)))
        data.append(k)
        data.append(v)
        pos += len(k) + len(v)
    page = _HEADER.pack(pgid, _LEAF, n, 0) + b"".join(elems) + b"".join(data)
    return page + bytes(PAGE - len(page))


def branch_page(rng, pgid, npages):
    res = rng.choice(_RES_CHOICES)
    n = rng.randint(20, 60)
    keys = sorted(f"/registry/{res}/{rng.choice(NAMESPACES)}/{rng.choice(NAME_BASES)}-{rand_hex(rng, 5)}".encode()
                  for _ in range(n))
    elems, data, pos = [], [], n * 16
    for i, k in enumerate(keys):
        elems.append(_BRANCH_ELEM.pack(pos - i * 16, len(k), rng.randrange(2, npages)))
        data.append(k)
        pos += len(k)
    page = _HEADER.pack(pgid, _BRANCH, n, 0) + b"".join(elems) + b"".join(data)
    return page[:PAGE] + bytes(max(0, PAGE - len(page)))


def meta_page(pgid, npages, txid):
    # bbolt meta: magic, version, pageSize, flags, root{pgid, sequence}, freelist, pgid, txid, checksum
    body = struct.pack("<IIIIQQQQQ", 0xED0CDAED, 2, PAGE, 0, 3, 0, npages - 1, npages, txid)
    h = 0xCBF29CE484222325  # FNV-1a 64, as bbolt's meta checksum
    for byte in body:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    page = _HEADER.pack(pgid, _META, 0, 0) + body + struct.pack("<Q", h)
    return page + bytes(PAGE - len(page))


def any_page(rng, pgid, npages):
    r = rng.random()
    if r < 0.03:
        return _HEADER.pack(pgid, _FREELIST, 0, 0) + bytes(PAGE - 16)  # free page
    if r < 0.05:
        return branch_page(rng, pgid, npages)
    return leaf_page(rng, pgid)


def write_pages(path, rng, npages, txid):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        buf = [meta_page(0, npages, txid), meta_page(1, npages, txid - 1)]
        for pgid in range(2, npages):
            buf.append(any_page(rng, pgid, npages))
            if len(buf) >= 4096:
                f.write(b"".join(buf))
                buf = []
        f.write(b"".join(buf))
    os.replace(tmp, path)


def gen_etcd(data, seed):
    npages = SNAPSHOT_BYTES // PAGE
    v1 = os.path.join(data, "etcd", "snapshot.db")
    v2 = os.path.join(data, "etcd-v2", "snapshot.db")
    write_pages(v1, random.Random(f"etcd-{seed}"), npages, txid=81234)
    rng = random.Random(f"etcd-v2-{seed}")
    buf = bytearray(open(v1, "rb").read())
    nchanged = round(npages * CHANGED_FRACTION)
    # one meta page (a commit bumps the txid) plus pages at random positions
    buf[0:PAGE] = meta_page(0, npages, 81234 + 2)
    changed = rng.sample(range(2, npages), nchanged - 1)
    for pgid in changed:
        buf[pgid * PAGE:(pgid + 1) * PAGE] = leaf_page(rng, pgid)
    os.makedirs(os.path.dirname(v2), exist_ok=True)
    with open(v2 + ".tmp", "wb") as f:
        f.write(buf)
    os.replace(v2 + ".tmp", v2)
    return npages, nchanged


def gen_big(data, seed):
    npages = BIG_BYTES // PAGE
    write_pages(os.path.join(data, "big", "big.bin"), random.Random(f"big-{seed}"), npages, txid=5)
    return npages


# --------------------------------------------------------------------------------------------

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", nargs="?", default=os.path.join(here, "work"))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", "1")))
    ap.add_argument("--big", action="store_true", default=os.environ.get("BENCH_BIG") == "1",
                    help="also generate the ~2 GiB file (default: BENCH_BIG=1)")
    ap.add_argument("--force", action="store_true", help="regenerate even if present")
    args = ap.parse_args()

    data = os.path.join(os.path.abspath(args.workdir), "data")
    os.makedirs(data, exist_ok=True)

    parts = [("config", gen_config, {"files": "etc"}),
             ("etcd", gen_etcd, {"bytes": SNAPSHOT_BYTES, "changed": CHANGED_FRACTION})]
    if args.big:
        parts.append(("big", gen_big, {"bytes": BIG_BYTES}))
    for name, fn, params in parts:
        marker = os.path.join(data, f".gen-{name}")
        want = json.dumps({"version": GEN_VERSION, "seed": args.seed, **params}, sort_keys=True)
        if not args.force and os.path.exists(marker) and open(marker).read() == want:
            log(f"{name}: present (seed {args.seed}), not regenerating")
            continue
        if os.path.exists(marker):
            os.remove(marker)
        t0 = time.monotonic()
        log(f"{name}: generating (seed {args.seed}) ...")
        result = fn(data, args.seed)
        log(f"{name}: done in {time.monotonic() - t0:.1f}s: {result}")
        with open(marker, "w") as f:
            f.write(want)


if __name__ == "__main__":
    main()
