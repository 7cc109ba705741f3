//! A real etcd for the tests: Debian's `etcd` (3.4) on 127.0.0.1 with free ports, a temporary
//! data directory and TLS with client-certificate authentication on the client port (the peer
//! port is plain http), as on a control plane. Certificates are made by the `openssl` CLI:
//! a CA, a server certificate for IP 127.0.0.1, a client certificate, an unrelated second CA
//! with a client certificate of its own, and an expired client certificate.
//!
//! * [`Etcd`]: start (waits until healthy), `etcdctl` with the TLS flags, kill on drop;
//! * [`load_keyspace`], [`update_keys`], [`load_big`]: a Kubernetes-like keyspace, loaded
//!   quickly (`etcdctl txn` batches from stdin; 1 MB values through `etcdctl put` stdin);
//! * [`snapshot_status`]: what `etcdctl snapshot status` says about a file;
//! * [`dump`]: every key with its value and revisions, to compare two servers.
//!
//! Nothing here is mocked; tests skip (with a printed note) only when etcd is not installed.

use crate::{s, Scratch};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where OpenShift keeps its ClusterVersion object.
pub const CLUSTER_VERSION_KEY: &str = "/kubernetes.io/config.openshift.io/clusterversions/version";

/// The cluster version [`load_keyspace`] stores.
pub const CLUSTER_VERSION: &str = "4.14.12";

/// True when `etcd` and `etcdctl` can be run.
pub fn installed() -> bool {
    let runs = |p: &str, arg: &str| {
        Command::new(p)
            .arg(arg)
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    };
    runs("etcd", "--version") && runs("etcdctl", "version")
}

/// For the first line of a test: false (with a note on stderr) when etcd is not installed.
pub fn available(test: &str) -> bool {
    let ok = installed();
    if !ok {
        eprintln!("note: skipping {test}: etcd/etcdctl are not installed (apt-get install etcd-server etcd-client)");
    }
    ok
}

/// A free TCP port on 127.0.0.1 (free when asked; [`Etcd::start`] retries on a collision).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Pair {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Every certificate the tests use, in a temporary directory.
pub struct Certs {
    _tmp: Scratch,
    /// The CA that signed the server and client certificates (etcd's `--trusted-ca-file`).
    pub ca: Pair,
    /// The server certificate (IP SAN 127.0.0.1).
    pub server: Pair,
    /// A valid client certificate signed by [`Certs::ca`].
    pub client: Pair,
    /// An unrelated CA.
    pub other_ca: Pair,
    /// A client certificate signed by [`Certs::other_ca`].
    pub other_client: Pair,
    /// A client certificate signed by [`Certs::ca`] that expired in 2020.
    pub expired_client: Pair,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn new_key(dir: &Path, name: &str) -> PathBuf {
    let key = format!("{name}.key");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    dir.join(key)
}

fn new_ca(dir: &Path, name: &str) -> Pair {
    let key = new_key(dir, name);
    let cert = format!("{name}.crt");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            s(&key),
            "-out",
            &cert,
            "-days",
            "3650",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    Pair {
        cert: dir.join(cert),
        key,
    }
}

fn new_csr(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let key = new_key(dir, name);
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            s(&key),
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    (key, dir.join(csr))
}

fn new_signed(dir: &Path, name: &str, cn: &str, ca: &Pair, ext: &str) -> Pair {
    let (key, csr) = new_csr(dir, name, cn);
    let extfile = dir.join(format!("{name}.ext"));
    fs::write(&extfile, ext).expect("writing extensions");
    let cert = format!("{name}.crt");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&ca.cert),
            "-CAkey",
            s(&ca.key),
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "365",
            "-extfile",
            s(&extfile),
        ],
    );
    Pair {
        cert: dir.join(cert),
        key,
    }
}

const CLIENT_EXT: &str =
    "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n";

/// A client certificate valid from 2020-01-01 to 2020-02-01, signed by `ca` (`openssl ca`
/// takes explicit dates; `openssl x509 -req` on OpenSSL 3.0 does not).
fn new_expired(dir: &Path, name: &str, ca: &Pair) -> Pair {
    let (key, csr) = new_csr(dir, name, "root");
    let db = dir.join(format!("{name}-db"));
    fs::create_dir_all(&db).expect("mkdir");
    fs::write(db.join("index.txt"), b"").expect("index");
    fs::write(db.join("serial"), b"1000\n").expect("serial");
    let conf = dir.join(format!("{name}.cnf"));
    fs::write(
        &conf,
        format!(
            "[ca]\ndefault_ca = test\n[test]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n\
             serial = {db}/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
             copy_extensions = none\n[any]\ncommonName = supplied\n[ext]\n{CLIENT_EXT}",
            db = s(&db)
        ),
    )
    .expect("writing openssl ca config");
    let cert = format!("{name}.crt");
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-notext",
            "-config",
            s(&conf),
            "-cert",
            s(&ca.cert),
            "-keyfile",
            s(&ca.key),
            "-in",
            s(&csr),
            "-out",
            &cert,
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
            "-extensions",
            "ext",
        ],
    );
    Pair {
        cert: dir.join(cert),
        key,
    }
}

impl Certs {
    /// Generate every certificate.
    pub fn generate() -> Certs {
        let tmp = crate::scratch();
        let dir = tmp.path().to_path_buf();
        let ca = new_ca(&dir, "cairn-test-ca");
        let server = new_signed(
            &dir,
            "server",
            "etcd-server",
            &ca,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n\
             basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n",
        );
        let client = new_signed(&dir, "client", "root", &ca, CLIENT_EXT);
        let other_ca = new_ca(&dir, "unrelated-ca");
        let other_client = new_signed(&dir, "other-client", "root", &other_ca, CLIENT_EXT);
        let expired_client = new_expired(&dir, "expired-client", &ca);
        Certs {
            _tmp: tmp,
            ca,
            server,
            client,
            other_ca,
            other_client,
            expired_client,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A running single-member etcd; killed (SIGKILL) and its directory removed on drop.
pub struct Etcd {
    child: Option<Child>,
    /// Everything of this server: data directory, log.
    pub tmp: Scratch,
    /// Certificates (shared with servers started on a restored data directory).
    pub certs: Arc<Certs>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Member name.
    pub name: String,
    /// Client port (TLS).
    pub client_port: u16,
    /// Peer port (plain http).
    pub peer_port: u16,
    log: PathBuf,
}

impl Etcd {
    /// A fresh server with new certificates.
    pub fn start() -> Etcd {
        Etcd::start_with(Arc::new(Certs::generate()), None)
    }

    /// A server with `certs` on `restored` (a data directory made by
    /// `etcdctl snapshot restore` with member `name` and peer port), or on a fresh directory.
    pub fn start_with(mut certs: Arc<Certs>, restored: Option<(PathBuf, String, u16)>) -> Etcd {
        let mut tmp = crate::scratch();
        let log = tmp.path().join("etcd.log");
        let (data_dir, name, fixed_peer) = match restored {
            Some((d, n, p)) => (d, n, Some(p)),
            None => (tmp.path().join("data"), "cairn-test".to_string(), None),
        };
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let client_port = free_port();
            let peer_port = fixed_peer.unwrap_or_else(free_port);
            let mut etcd = Etcd {
                child: None,
                tmp,
                certs,
                data_dir: data_dir.clone(),
                name: name.clone(),
                client_port,
                peer_port,
                log: log.clone(),
            };
            if etcd.spawn_and_wait() {
                return etcd;
            }
            // A port was taken meanwhile: try again with others.
            last_log = etcd.log();
            etcd.kill();
            if fixed_peer.is_none() {
                let _ = fs::remove_dir_all(&data_dir);
            }
            tmp = std::mem::replace(&mut etcd.tmp, crate::scratch());
            certs = etcd.certs.clone();
        }
        panic!("etcd did not start after 5 attempts; its log:\n{last_log}");
    }

    fn spawn_and_wait(&mut self) -> bool {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = fs::File::create(&self.log).expect("etcd log file");
        let child = Command::new("etcd")
            .args([
                "--name",
                &self.name,
                "--data-dir",
                s(&self.data_dir),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("{}={peer}", self.name),
                "--initial-cluster-state",
                "new",
                "--cert-file",
                s(&self.certs.server.cert),
                "--key-file",
                s(&self.certs.server.key),
                "--client-cert-auth",
                "--trusted-ca-file",
                s(&self.certs.ca.cert),
                "--max-txn-ops",
                "1000",
                "--quota-backend-bytes",
                "4294967296",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                eprintln!("etcd exited early ({st}); retrying");
                return false;
            }
            let out = self
                .etcdctl_cmd(&["endpoint", "health", "--command-timeout", "2s"])
                .output()
                .expect("running etcdctl");
            if out.status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not become healthy within 30 s; its log:\n{}",
            self.log()
        );
    }

    /// `https://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// The process id (None once killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// cairn's connection arguments with the valid client certificate:
    /// `--endpoints URL --cacert CA --cert CRT --cert-key KEY`.
    pub fn cairn_args(&self) -> Vec<String> {
        self.cairn_args_with(
            &self.endpoint(),
            Some(&self.certs.ca),
            Some(&self.certs.client),
        )
    }

    /// cairn's connection arguments with `endpoints`, CA `ca` and client pair `client`.
    pub fn cairn_args_with(
        &self,
        endpoints: &str,
        ca: Option<&Pair>,
        client: Option<&Pair>,
    ) -> Vec<String> {
        let mut a = vec!["--endpoints".to_string(), endpoints.to_string()];
        if let Some(ca) = ca {
            a.extend(["--cacert".into(), s(&ca.cert).into()]);
        }
        if let Some(c) = client {
            a.extend([
                "--cert".into(),
                s(&c.cert).into(),
                "--cert-key".into(),
                s(&c.key).into(),
            ]);
        }
        a
    }

    fn etcdctl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.endpoint(),
                "--cacert",
                s(&self.certs.ca.cert),
                "--cert",
                s(&self.certs.client.cert),
                "--key",
                s(&self.certs.client.key),
                "--dial-timeout",
                "5s",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run `etcdctl` against this server; panics unless it succeeds. Returns stdout.
    #[track_caller]
    pub fn etcdctl(&self, args: &[&str]) -> Vec<u8> {
        self.etcdctl_stdin(args, &[])
    }

    /// Run `etcdctl` with `stdin`; panics unless it succeeds. Returns stdout.
    #[track_caller]
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut cmd = self.etcdctl_cmd(args);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("starting etcdctl");
        let mut input = child.stdin.take().expect("piped stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("waiting for etcdctl");
        writer.join().expect("stdin writer");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `etcdctl endpoint status -w json` of this server.
    pub fn status(&self) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_slice(&self.etcdctl(&["endpoint", "status", "-w", "json"]))
                .expect("endpoint status JSON");
        v[0]["Status"].clone()
    }

    /// The member id as cairn prints it (lower-case hex).
    pub fn member_id(&self) -> String {
        format!(
            "{:x}",
            self.status()["header"]["member_id"]
                .as_u64()
                .expect("member_id")
        )
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.status()["header"]["revision"]
            .as_i64()
            .expect("revision")
    }

    /// `etcdctl snapshot save` into `file`.
    pub fn snapshot_save(&self, file: &Path) {
        self.etcdctl(&["snapshot", "save", s(file)]);
    }

    /// Bytes this etcd process has written with write(2) (sockets included), from
    /// /proc/PID/io.
    pub fn written_bytes(&self) -> u64 {
        let pid = self.pid().expect("etcd is running");
        let io = fs::read_to_string(format!("/proc/{pid}/io")).expect("reading /proc/PID/io");
        io.lines()
            .find_map(|l| l.strip_prefix("wchar: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("wchar in /proc/PID/io")
    }

    /// SIGKILL the server and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// Words for annotation values.
const WORDS: [&str; 8] = [
    "openshift.io/scc: restricted-v2",
    "kubectl.kubernetes.io/last-applied-configuration",
    "k8s.ovn.org/pod-networks",
    "operator.openshift.io/spec-hash",
    "release.openshift.io/version",
    "include.release.openshift.io/self-managed-high-availability",
    "config.openshift.io/inject-proxy",
    "target.workload.openshift.io/management",
];

const KINDS: [&str; 6] = [
    "pods",
    "configmaps",
    "secrets",
    "services/specs",
    "deployments",
    "events",
];

/// The key of object `i` of the keyspace: `/registry/<kind>/<ns>/<name>`.
pub fn key_of(i: usize) -> String {
    let kind = KINDS[i % KINDS.len()];
    format!(
        "/registry/{kind}/openshift-ns-{:02}/{}-{i:05}",
        (i / KINDS.len()) % 40,
        kind.split('/').next().unwrap_or(kind).trim_end_matches('s')
    )
}

/// A JSON object of 1-4 KB for object `i`, version `generation` (different generations give
/// different values). Some structure, mostly random-looking text, like a real object's
/// annotations and managed fields: it compresses less than 2×.
pub fn value_of(i: usize, generation: u64) -> String {
    let mut rng = crate::Rng::new((i as u64) << 16 | generation);
    let len = 1000 + (rng.next_u64() % 3000) as usize;
    let key = key_of(i);
    let mut v = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"{}\",\"metadata\":{{\"name\":\"{}\",\"namespace\":\"{}\",\"resourceVersion\":\"{generation}\",\"uid\":\"{:016x}\",\"annotations\":{{",
        KINDS[i % KINDS.len()],
        key.rsplit('/').next().unwrap_or_default(),
        key.split('/').nth(3).unwrap_or_default(),
        rng.next_u64()
    );
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    let mut n = 0;
    while v.len() + 40 < len {
        let word = WORDS[(rng.next_u64() % WORDS.len() as u64) as usize];
        let mut noise = String::new();
        for _ in 0..64 {
            noise.push(ALNUM[(rng.next_u64() % 64) as usize] as char);
        }
        let _ = write!(v, "\"a{n}\":\"{} {noise}\",", word.trim());
        n += 1;
    }
    v.push_str("\"end\":\"1\"}}}");
    v
}

/// One `put` line of `etcdctl txn`'s input (the value Go-quoted: ASCII only).
fn txn_put(key: &str, value: &str) -> String {
    debug_assert!(value.is_ascii());
    format!("put {key} {value:?}\n")
}

/// Run `etcdctl txn` batches of puts, two processes at a time.
fn txn_batches(etcd: &Etcd, puts: Vec<(String, String)>, batch: usize) {
    let batches: Vec<String> = puts
        .chunks(batch)
        .map(|c| {
            let mut t = String::from("\n");
            for (k, v) in c {
                t.push_str(&txn_put(k, v));
            }
            t.push_str("\n\n");
            t
        })
        .collect();
    std::thread::scope(|sc| {
        for part in [0, 1] {
            let batches = &batches;
            sc.spawn(move || {
                for b in batches.iter().skip(part).step_by(2) {
                    let out = etcd.etcdctl_stdin(&["txn"], b.as_bytes());
                    assert!(
                        out.starts_with(b"SUCCESS"),
                        "txn: {}",
                        String::from_utf8_lossy(&out)
                    );
                }
            });
        }
    });
}

/// Load a Kubernetes-like keyspace of `n` objects (1-4 KB JSON values under /registry) plus
/// namespaces and the OpenShift ClusterVersion object (version [`CLUSTER_VERSION`]).
/// Checks one value came back intact.
pub fn load_keyspace(etcd: &Etcd, n: usize) {
    let mut puts: Vec<(String, String)> = (0..n).map(|i| (key_of(i), value_of(i, 1))).collect();
    for ns in 0..40 {
        puts.push((
            format!("/registry/namespaces/openshift-ns-{ns:02}"),
            format!(
                "{{\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"openshift-ns-{ns:02}\"}}}}"
            ),
        ));
    }
    puts.push((
        CLUSTER_VERSION_KEY.to_string(),
        format!("{{\"status\":{{\"desired\":{{\"version\":\"{CLUSTER_VERSION}\"}}}}}}"),
    ));
    txn_batches(etcd, puts, 200);
    let probe = n / 2;
    let got = etcd.etcdctl(&["get", &key_of(probe), "--print-value-only"]);
    assert_eq!(
        String::from_utf8_lossy(&got).trim_end(),
        value_of(probe, 1),
        "the loader stored a different value"
    );
}

/// Give every `every`-th object of the keyspace a new value (generation `generation`).
/// Returns how many were updated.
pub fn update_keys(etcd: &Etcd, n: usize, every: usize, generation: u64) -> usize {
    let puts: Vec<(String, String)> = (0..n)
        .step_by(every)
        .map(|i| (key_of(i), value_of(i, generation)))
        .collect();
    let count = puts.len();
    txn_batches(etcd, puts, 200);
    count
}

/// Store `count` incompressible 1 MB values under /registry/blobs/ (two `etcdctl put`s at a
/// time, each reading its value from stdin).
pub fn load_big(etcd: &Etcd, count: usize) {
    load_big_from(etcd, 0, count);
}

/// [`load_big`] of the values numbered `from..to` (more of them after an earlier call).
pub fn load_big_from(etcd: &Etcd, from: usize, to: usize) {
    std::thread::scope(|sc| {
        for part in [0, 1] {
            sc.spawn(move || {
                for i in (from + part..to).step_by(2) {
                    let v = crate::random_bytes(0xb16_0000 + i as u64, 1_000_000);
                    etcd.etcdctl_stdin(&["put", &format!("/registry/blobs/b{i:04}")], &v);
                }
            });
        }
    });
}

/// Snapshots of a new etcd holding `small` and then `large` incompressible 1 MB values
/// (every page distinct, as a grown database's are), saved as `small.db` and `large.db` in
/// `dir`; the large one is checked to be over `times` the small one.
pub fn small_and_large(
    dir: &Path,
    small: usize,
    large: usize,
    times: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let e = Etcd::start();
    load_big(&e, small);
    let small_db = dir.join("small.db");
    e.snapshot_save(&small_db);
    load_big_from(&e, small, large);
    let large_db = dir.join("large.db");
    e.snapshot_save(&large_db);
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    let (small_len, large_len) = (len(&small_db), len(&large_db));
    assert!(
        large_len > times * small_len && large_len > large as u64 * 900_000,
        "{small_len} and {large_len} bytes"
    );
    (small_db, large_db)
}

/// What `etcdctl snapshot status -w json` says about a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The bbolt content hash, as cairn records it (8 lower-case hex digits).
    pub hash: String,
    /// The revision.
    pub revision: u64,
    /// Keys in every bucket.
    pub total_keys: u64,
    /// Database size (without the trailer).
    pub total_size: u64,
}

/// `etcdctl snapshot status FILE -w json`.
pub fn snapshot_status(file: &Path) -> Status {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", s(file), "-w", "json"])
        .output()
        .expect("running etcdctl");
    assert!(
        out.status.success(),
        "etcdctl snapshot status {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let num = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{k} in snapshot status {v}"))
    };
    Status {
        hash: format!("{:08x}", num("hash")),
        revision: num("revision"),
        total_keys: num("totalKey"),
        total_size: num("totalSize"),
    }
}

/// The same facts as cairn records them (`etcd.hash`, …), missing ones as None.
pub fn status_from_facts(facts: &serde_json::Value) -> Option<Status> {
    let get = |k: &str| facts[k].as_str().map(str::to_string);
    Some(Status {
        hash: get("etcd.hash")?,
        revision: get("etcd.revision")?.parse().ok()?,
        total_keys: get("etcd.total_keys")?.parse().ok()?,
        total_size: get("etcd.total_size")?.parse().ok()?,
    })
}

/// `etcdctl snapshot restore FILE` into `data_dir` for a member `name` with peer port
/// `peer_port` (hash check on unless `skip_hash_check`). Returns the command's result.
pub fn snapshot_restore(
    file: &Path,
    data_dir: &Path,
    name: &str,
    peer_port: u16,
    skip_hash_check: bool,
) -> std::process::Output {
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3").args([
        "snapshot",
        "restore",
        s(file),
        "--data-dir",
        s(data_dir),
        "--name",
        name,
        "--initial-cluster",
        &format!("{name}={peer}"),
        "--initial-advertise-peer-urls",
        &peer,
    ]);
    if skip_hash_check {
        cmd.arg("--skip-hash-check");
    }
    cmd.output().expect("running etcdctl snapshot restore")
}

/// Every key of the server with value, create/mod revision and version (from
/// `etcdctl get "" --from-key -w json`; keys and values base64 as etcdctl prints them).
pub fn dump(etcd: &Etcd) -> Vec<serde_json::Value> {
    let out = etcd.etcdctl(&["get", "", "--from-key", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("get JSON");
    v["kvs"].as_array().cloned().unwrap_or_default()
}

/// Count of the snapshot objects in a repository directory.
pub fn snapshot_objects(repo: &Path) -> usize {
    crate::files_below(&repo.join("snapshots")).len()
}
