#!/usr/bin/env python3
"""Generate a week of daily etcd snapshots from a real etcd, for bench/etcd.sh.

    etcd_series.py series WORKDIR [--seed N] [--days 7] [--force]
    etcd_series.py grow --endpoint URL --target-bytes N [--seed N]
    etcd_series.py dbsize --endpoint URL

`series` starts its own etcd (Debian's `etcd` 3.4, plain http on 127.0.0.1, free ports, default
limits: 1.5 MiB requests, 128 operations per transaction, 2 GB quota) in WORKDIR/etcd-gen, loads
~150 MB of values under Kubernetes-like keys `/registry/<resource>/<namespace>/<name>`, and
writes WORKDIR/data/etcd-series/day-1.db .. day-7.db with `etcdctl snapshot save`:

  day 1     the freshly loaded keyspace (compacted, as kube-apiserver compacts every 5 minutes)
  day 2..7  after one day of churn each: 2% of the keys updated, 0.5% created, 0.3% deleted, then
            compaction (no defragmentation: freed bbolt pages are reused in place, so a day's
            changes are scattered over the file, as on a real control plane)

Values are 1-8 KB, protobuf-ish: a `k8s\\0` header, length-prefixed fields of object metadata
(labels, annotations, managed fields), YAML-ish spec text and a run of random bytes (how much
depends on the resource: secrets mostly random, config maps mostly text), so zstd gets ~2-3x.
An update keeps the object's spec and random payload and rewrites its metadata (resourceVersion,
timestamps) and status, as an apiserver update does. Everything is deterministic from the seed
(the snapshot bytes are not: etcd's ids and timing differ from run to run).

Keys are written through etcd's gRPC-gateway (JSON over http: POST /v3/kv/txn, 128 puts per
transaction, binary values base64-encoded), from a few threads. Measured on a 2-CPU machine with
~11 MB of values: gateway 7.5 MB/s, `etcdctl txn` from a file 8.1 MB/s (but it cannot carry
binary values), `xargs -P8 etcdctl put` 0.3 MB/s.

The snapshots and WORKDIR/data/etcd-series/series.json (facts per day: size, keys, revision,
changed pages, unique pages) are reused by later runs; a marker file records the parameters and
the series is regenerated only if it is missing or differs (or with --force).

`grow` adds larger values (4-32 KB) to a running etcd until its database reaches N bytes (the
~1 GB live-backup row of bench/etcd.sh). `dbsize` prints the database size of a running etcd.
"""

import argparse
import base64
import concurrent.futures as cf
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_data import (ANNOTATION_KEYS, FLAGS, LABEL_KEYS, NAME_BASES, NAMESPACES,  # noqa: E402
                      RESOURCES, WORDS, image_ref, rand_hex, rand_ts, rand_uuid)

SERIES_VERSION = 1  # bump when the generated content changes
PAGE = 4096
VALUE_BYTES = 150 * 1000 * 1000
DAYS = 7
UPDATE, CREATE, DELETE = 0.02, 0.005, 0.003
TXN_OPS = 128  # etcd's default --max-txn-ops
TXN_BYTES = 1_000_000  # below etcd's default --max-request-bytes (1.5 MiB), with room for framing
THREADS = 4

_RES_CHOICES = [r for r, w, _ in RESOURCES for _ in range(w)]
_RES_RANDOM = {r: f for r, _, f in RESOURCES}
# Vocabulary for the text parts: enough distinct tokens that zstd does not get 10x on them.
_TOKENS = WORDS + LABEL_KEYS + ANNOTATION_KEYS + FLAGS + NAME_BASES + NAMESPACES + [
    "apiVersion", "kind", "metadata", "spec", "status", "containers", "image", "ports",
    "containerPort", "protocol", "resources", "requests", "limits", "cpu", "memory", "env",
    "valueFrom", "fieldRef", "volumeMounts", "mountPath", "readOnly", "volumes", "secretName",
    "configMap", "items", "path", "mode", "nodeSelector", "tolerations", "key", "operator",
    "effect", "priorityClassName", "serviceAccountName", "securityContext", "runAsNonRoot",
    "capabilities", "drop", "ALL", "livenessProbe", "readinessProbe", "httpGet", "scheme",
    "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "command",
    "args", "terminationMessagePolicy", "dnsPolicy", "restartPolicy", "schedulerName",
    "conditions", "lastTransitionTime", "reason", "message", "hostIP", "podIP", "startTime",
    "containerStatuses", "restartCount", "started", "imageID", "containerID", "qosClass",
]


def log(msg):
    print(f"[etcd_series {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Values.

def _field(tag, payload):
    """A protobuf length-delimited field: tag byte, varint length, bytes."""
    n, out = len(payload), bytearray([tag])
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + payload


def _text(rng, n):
    """About n bytes of YAML-ish text from the vocabulary, with ids and numbers mixed in."""
    out, size = [], 0
    while size < n:
        k = rng.randrange(4)
        if k == 0:
            line = f"{rng.choice(_TOKENS)}: {rng.choice(_TOKENS)}\n"
        elif k == 1:
            line = f"- {rng.choice(_TOKENS)}: {rng.choice(_TOKENS)}-{rand_hex(rng, rng.choice((5, 8, 10)))}\n"
        elif k == 2:
            line = f"  {rng.choice(_TOKENS)}: \"{rng.randint(0, 65535)}\" # {rng.choice(_TOKENS)}\n"
        else:
            line = f"    image: {image_ref(rng)}\n" if rng.random() < 0.2 else \
                f"  {rng.choice(_TOKENS)}: {rand_ts(rng)}\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def parse_key(key):
    _, _, rest = key.partition("/registry/")
    res, ns, name = rest.rsplit("/", 2)
    return res, ns, name


def make_value(seed, key, version, size_range=(1000, 8192)):
    """The object stored under key at its version-th write. The part seeded by the key alone
    (spec, random payload) is the same for every version; metadata and status change."""
    res, ns, name = parse_key(key)
    base = random.Random(f"{seed}|{key}")
    ver = random.Random(f"{seed}|{key}|{version}")
    size = base.randint(*size_range)
    frac = _RES_RANDOM.get(res, 0.3)

    kind = res.split("/")[-1].split(".")[0]
    head = b"k8s\x00" + _field(0x0A, _field(0x0A, b"v1") + _field(0x12, kind.encode()))
    labels = b"".join(_field(0x5A, _field(0x0A, k.encode()) + _field(0x12, v.encode()))
                      for k, v in ((base.choice(LABEL_KEYS), base.choice(_TOKENS))
                                   for _ in range(base.randint(2, 6))))
    meta = (_field(0x0A, name.encode()) + _field(0x1A, ns.encode()) +
            _field(0x22, rand_uuid(base).encode()) +
            _field(0x2A, str(1_000_000 + version * 7919 + base.randrange(10**6)).encode()) +  # resourceVersion
            _field(0x42, rand_ts(base).encode()) + labels +
            b"".join(_field(0x62, _field(0x0A, base.choice(ANNOTATION_KEYS).encode()) +
                            _field(0x12, _text(base, base.randint(20, 120))))
                     for _ in range(base.randint(1, 4))) +
            _field(0x7A, b"kubectl\x1a\x06Update\"\x02v1*" + rand_ts(ver).encode() +
                   b'FieldsV1:{"f:metadata":{"f:labels":{}},"f:status":{}}'))
    status_len = max(64, size // 10)
    status = _field(0x1A, _text(ver, status_len - 32) + ver.randbytes(24))
    rest = max(0, size - len(head) - len(meta) - len(status) - 16)
    rnd = int(rest * frac)
    spec = _field(0x12, _text(base, rest - rnd)) + _field(0x22, base.randbytes(rnd))
    return head + _field(0x12, meta) + spec + status


def new_key(rng):
    res = rng.choice(_RES_CHOICES)
    ns = rng.choice(NAMESPACES)
    return f"/registry/{res}/{ns}/{rng.choice(NAME_BASES)}-{rand_hex(rng, 5)}-{rand_hex(rng, 5)}"


# --------------------------------------------------------------------------------------------
# etcd over its gRPC-gateway (JSON over http).

def b64(b):
    return base64.b64encode(b if isinstance(b, bytes) else b.encode()).decode()


def post(endpoint, path, body, timeout=120):
    req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def run_ops(endpoint, ops):
    """ops: iterable of ("put", key, value) / ("del", key, None). Sent as transactions of at
    most TXN_OPS operations and TXN_BYTES of values, THREADS at a time. Returns value bytes."""
    def send(batch):
        out = post(endpoint, "/v3/kv/txn", {"success": batch})
        if "error" in out or not out.get("succeeded"):
            raise RuntimeError(f"txn failed: {str(out)[:300]}")

    total, inflight = 0, set()
    with cf.ThreadPoolExecutor(THREADS) as ex:
        batch, size = [], 0

        def flush():
            nonlocal batch, size
            if batch:
                inflight.add(ex.submit(send, batch))
                batch, size = [], 0
            if len(inflight) >= 2 * THREADS:
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    inflight.discard(f)
                    f.result()

        for op, key, value in ops:
            if op == "put":
                if batch and (len(batch) >= TXN_OPS or size + len(value) > TXN_BYTES):
                    flush()
                batch.append({"request_put": {"key": b64(key), "value": b64(value)}})
                size += len(key) + len(value)
                total += len(value)
            else:
                if len(batch) >= TXN_OPS:
                    flush()
                batch.append({"request_delete_range": {"key": b64(key)}})
        flush()
        for f in cf.as_completed(inflight):
            f.result()
    return total


def compact(endpoint):
    rev = int(post(endpoint, "/v3/kv/range", {"key": b64("/"), "limit": 1})["header"]["revision"])
    post(endpoint, "/v3/kv/compaction", {"revision": str(rev), "physical": True}, timeout=600)
    return rev


def db_size(endpoint):
    return int(post(endpoint, "/v3/maintenance/status", {})["dbSize"])


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_etcd(data_dir, logfile):
    """Start a one-member etcd on free ports; returns (process, client URL)."""
    for attempt in range(5):
        cp, pp = free_ports(2)
        client, peer = f"http://127.0.0.1:{cp}", f"http://127.0.0.1:{pp}"
        shutil.rmtree(data_dir, ignore_errors=True)
        log_f = open(logfile, "ab")
        proc = subprocess.Popen(
            ["etcd", "--name", "gen", "--data-dir", data_dir,
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"gen={peer}", "--logger", "zap", "--log-level", "warn"],
            stdout=log_f, stderr=log_f, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(client + "/health", timeout=2) as r:
                    if json.load(r).get("health") == "true":
                        return proc, client
            except OSError:
                pass
            time.sleep(0.2)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        log(f"etcd did not come up on ports {cp}/{pp} (attempt {attempt + 1}); see {logfile}")
    raise RuntimeError(f"could not start etcd; see {logfile}")


def etcdctl(*args, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    return subprocess.run(["etcdctl", *args], env=env, check=True, **kw)


# --------------------------------------------------------------------------------------------
# The series.

def page_hashes(path):
    out = []
    with open(path, "rb") as f:
        while True:
            p = f.read(PAGE)
            if not p:
                break
            out.append(hashlib.blake2b(p, digest_size=16).digest())
    return out


def series_facts(sdir, days):
    """Per day: size, etcdctl snapshot status, pages changed vs the previous day, and over the
    week: unique 4 KiB pages (the limit of page-level dedup) and their zstd -3 size as one stream."""
    facts, seen, prev = [], set(), None
    zstd = subprocess.Popen(["zstd", "-3", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) \
        if shutil.which("zstd") else None
    zsize = [0]
    if zstd:
        import threading

        def drain():
            while True:
                b = zstd.stdout.read(1 << 20)
                if not b:
                    break
                zsize[0] += len(b)
        t = threading.Thread(target=drain)
        t.start()
    unique_bytes = 0
    for d in range(1, days + 1):
        path = os.path.join(sdir, f"day-{d}.db")
        st = json.loads(etcdctl("snapshot", "status", path, "-w", "json", capture_output=True).stdout)
        hs = page_hashes(path)
        changed = None if prev is None else sum(1 for i, h in enumerate(hs) if i >= len(prev) or prev[i] != h)
        new = 0
        with open(path, "rb") as f:
            for i, h in enumerate(hs):
                if h not in seen:
                    seen.add(h)
                    new += 1
                    if zstd:
                        f.seek(i * PAGE)
                        page = f.read(PAGE)
                        unique_bytes += len(page)
                        zstd.stdin.write(page)
                    else:
                        unique_bytes += PAGE
        facts.append({"day": d, "bytes": os.path.getsize(path), "pages": len(hs),
                      "changed_pages": changed, "new_unique_pages": new,
                      "keys": st.get("totalKey"), "revision": st.get("revision"), "hash": st.get("hash")})
        prev = hs
    if zstd:
        zstd.stdin.close()
        t.join()
        zstd.wait()
    return {"days": facts, "unique_pages": len(seen), "unique_page_bytes": unique_bytes,
            "unique_pages_zstd3_stream_bytes": zsize[0] if zstd else None}


def gen_series(workdir, seed, days, force):
    sdir = os.path.join(workdir, "data", "etcd-series")
    marker = os.path.join(sdir, ".gen-etcd-series")
    want = json.dumps({"version": SERIES_VERSION, "seed": seed, "days": days, "value_bytes": VALUE_BYTES,
                       "update": UPDATE, "create": CREATE, "delete": DELETE}, sort_keys=True)
    files = [os.path.join(sdir, f"day-{d}.db") for d in range(1, days + 1)]
    facts_path = os.path.join(sdir, "series.json")
    if not force and os.path.exists(marker) and open(marker).read() == want and all(map(os.path.exists, files)):
        log(f"series present in {sdir} (seed {seed}), not regenerating")
    else:
        if os.path.exists(marker):
            os.remove(marker)
        shutil.rmtree(sdir, ignore_errors=True)
        os.makedirs(sdir)
        gdir = os.path.join(workdir, "etcd-gen")
        os.makedirs(gdir, exist_ok=True)
        t0 = time.monotonic()
        proc, ep = start_etcd(os.path.join(gdir, "data"), os.path.join(gdir, "etcd.log"))
        log(f"etcd {ep} (pid {proc.pid}) in {gdir}")
        try:
            rng = random.Random(f"etcd-series-{seed}")
            keys, versions, total = [], {}, 0
            while total < VALUE_BYTES:  # decide the keys and sizes first, cheaply
                k = new_key(rng)
                if k in versions:
                    continue
                versions[k] = 1
                keys.append(k)
                total += random.Random(f"{seed}|{k}").randint(1000, 8192)
            t1 = time.monotonic()
            n = run_ops(ep, (("put", k, make_value(seed, k, 1)) for k in keys))
            dt = time.monotonic() - t1
            log(f"loaded {len(keys):,} keys, {n / 1e6:.1f} MB of values in {dt:.1f}s ({n / 1e6 / dt:.1f} MB/s)")
            for d in range(1, days + 1):
                if d > 1:
                    nk = len(keys)
                    upd = rng.sample(range(nk), round(nk * UPDATE))
                    dels = set(rng.sample(range(nk), round(nk * DELETE))) - set(upd)
                    ops = []
                    for i in upd:
                        versions[keys[i]] += 1
                        ops.append(("put", keys[i], None))
                    created = []
                    while len(created) < round(nk * CREATE):
                        k = new_key(rng)
                        if k not in versions:
                            versions[k] = 1
                            created.append(k)
                            ops.append(("put", k, None))
                    for i in dels:
                        ops.append(("del", keys[i], None))
                    rng.shuffle(ops)  # a day's writes interleave
                    t1 = time.monotonic()
                    n = run_ops(ep, ((op, k, make_value(seed, k, versions[k]) if op == "put" else None)
                                     for op, k, _ in ops))
                    for i in dels:
                        del versions[keys[i]]
                    keys = [k for i, k in enumerate(keys) if i not in dels] + created
                    log(f"day {d}: {len(upd)} updated, {len(created)} created, {len(dels)} deleted "
                        f"({n / 1e6:.1f} MB) in {time.monotonic() - t1:.1f}s")
                rev = compact(ep)
                tmp = files[d - 1] + ".part"
                etcdctl("--endpoints", ep, "snapshot", "save", tmp, stdout=subprocess.DEVNULL,
                        stderr=open(os.path.join(gdir, "etcdctl.log"), "ab"))
                os.replace(tmp, files[d - 1])
                log(f"day {d}: compacted at revision {rev}, day-{d}.db {os.path.getsize(files[d - 1]) / 1e6:.1f} MB")
        finally:
            proc.terminate()
            proc.wait()
        shutil.rmtree(gdir, ignore_errors=True)
        log(f"series generated in {time.monotonic() - t0:.1f}s")
        if os.path.exists(facts_path):
            os.remove(facts_path)
        with open(marker, "w") as f:
            f.write(want)
    if not os.path.exists(facts_path):
        log("computing page statistics of the series ...")
        facts = series_facts(sdir, days)
        with open(facts_path + ".tmp", "w") as f:
            json.dump(facts, f, indent=1)
        os.replace(facts_path + ".tmp", facts_path)
    return sdir


def grow(endpoint, target, seed):
    """Add values of 4-32 KB until the database is at least target bytes."""
    rng = random.Random(f"etcd-grow-{seed}")
    size, added, t0 = db_size(endpoint), 0, time.monotonic()
    log(f"growing {endpoint}: {size / 1e6:.0f} MB -> {target / 1e6:.0f} MB")
    while size < target:
        step = min(max(int((target - size) * 0.9), 4_000_000), 100_000_000)
        batch, n = [], 0
        while n < step:
            k = new_key(rng).replace("/registry/", "/registry/grown/", 1)
            v = make_value(seed, k, 1, size_range=(4096, 32768))
            batch.append(("put", k, v))
            n += len(v)
        added += run_ops(endpoint, batch)
        size = db_size(endpoint)
        log(f"  +{added / 1e6:.0f} MB of values, database {size / 1e6:.0f} MB")
    log(f"grown in {time.monotonic() - t0:.1f}s")
    print(size)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("series", help="generate (or reuse) WORKDIR/data/etcd-series/day-N.db")
    s.add_argument("workdir", nargs="?", default=os.path.join(here, "work"))
    s.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", "1")))
    s.add_argument("--days", type=int, default=DAYS)
    s.add_argument("--force", action="store_true", help="regenerate even if present")
    g = sub.add_parser("grow", help="add values to a running etcd until its database is this big")
    g.add_argument("--endpoint", required=True)
    g.add_argument("--target-bytes", type=float, required=True)
    g.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", "1")))
    z = sub.add_parser("dbsize", help="print the database size of a running etcd")
    z.add_argument("--endpoint", required=True)
    args = ap.parse_args()
    if args.cmd == "series":
        print(gen_series(os.path.abspath(args.workdir), args.seed, args.days, args.force))
    elif args.cmd == "grow":
        grow(args.endpoint, int(args.target_bytes), args.seed)
    else:
        print(db_size(args.endpoint))


if __name__ == "__main__":
    main()
