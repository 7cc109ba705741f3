//! A real S3 server for the end-to-end tests, and a TCP proxy that breaks connections to it.
//!
//! * [`S3Server`]: moto's server (`python3 -m moto.server`, from PyPI: `pip install
//!   'moto[server]'`) on 127.0.0.1 on a free port. It keeps everything in memory: a
//!   [`S3Server::restart`] loses every bucket and object. The tests therefore simulate a server
//!   restart during a backup with [`FaultProxy::outage`] (connections refused for a while, the
//!   open ones cut) in front of a server that keeps running.
//! * [`shared`]: one server per test binary, started on first use; [`fresh_bucket`] gives each
//!   test its own bucket on it.
//! * [`FaultProxy`]: a TCP proxy, with std threads, whose behaviour can be switched while a
//!   backup runs: pass through, cut connections after N bytes of request or response, drop
//!   every k-th connection, stall responses, refuse connections for a period; it counts
//!   connections, faults and bytes.
//! * [`http`] and the object helpers ([`S3Server::list`], [`S3Server::get`], …): plain HTTP/1.1
//!   over a `TcpStream`, with a dummy signature (moto does not check them), to look into buckets
//!   without going through cairn.
//! * [`TlsFront`]: TLS in front of the shared server (a private CA's certificate), for https
//!   endpoints.
//!
//! Processes started here never outlive the test binary: they are spawned from one thread that
//! lives as long as the process, with `PR_SET_PDEATHSIG` = SIGKILL, in their own process group,
//! which [`S3Server`]'s `Drop` kills.

use crate::Env;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Access key id the tests give cairn (moto accepts any).
pub const ACCESS_KEY: &str = "test";
/// Secret access key the tests give cairn (moto accepts any).
pub const SECRET_KEY: &str = "test";
/// `CAIRN_S3_TIMEOUT` for tests: seconds per request.
pub const TIMEOUT_SECS: u64 = 5;
/// `CAIRN_S3_RETRIES` for tests.
pub const RETRIES: u32 = 4;

const INSTALL_HINT: &str = "the S3 tests need moto's server: `pip install 'moto[server]'` \
     (python3 -m moto.server must start; .ci/run should install it)";

// ---------------------------------------------------------------------------------------------
// Child processes that die with the test binary
// ---------------------------------------------------------------------------------------------

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` in its own process group, with SIGKILL as its parent-death signal. The spawn
/// happens on a thread that lives as long as the test process: the parent-death signal fires
/// when the *thread* that forked exits, and test threads end after each test.
pub(crate) fn spawn_owned(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(io::Error::from)
        });
    }
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            std::thread::Builder::new()
                .name("e2e-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("starting the spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (reply, answer) = mpsc::channel();
    tx.send((cmd, reply)).expect("spawner thread is alive");
    answer.recv().expect("spawner thread answers")
}

/// SIGKILL the process group of `child` and reap it.
pub(crate) fn kill_group(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

// ---------------------------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------------------------

/// moto's S3 server, on 127.0.0.1. Killed (with its process group) on drop.
pub struct S3Server {
    port: u16,
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Why a start attempt failed.
enum StartError {
    PortInUse,
    Other(String),
}

impl S3Server {
    /// Start moto on a free port; retries with another port if the port was taken in the
    /// meantime. Panics, with an install hint, if python3 or moto is missing.
    pub fn start() -> S3Server {
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = S3Server {
                port: free_port(),
                child: None,
                log: Arc::default(),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(StartError::PortInUse) => {
                    last = format!("port {} was taken", server.port);
                    continue;
                }
                Err(StartError::Other(msg)) => panic!("{msg}"),
            }
        }
        panic!("moto's server could not get a free port after 5 tries ({last})");
    }

    fn launch(&mut self) -> Result<(), StartError> {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_owned(cmd).unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); {INSTALL_HINT}");
        });
        self.log = Arc::default();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&self.log);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() >= 200 {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                // Let the log readers drain the pipes (they end with the process).
                std::thread::sleep(Duration::from_millis(100));
                let log = self.log();
                if log.contains("Address already in use") {
                    return Err(StartError::PortInUse);
                }
                return Err(StartError::Other(format!(
                    "moto's server exited at start ({status}); {INSTALL_HINT}\n--- its output ---\n{log}"
                )));
            }
            if matches!(http(self.addr(), "GET", "/", b""), Ok(r) if r.status == 200) {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                let log = self.log();
                self.kill();
                return Err(StartError::Other(format!(
                    "moto's server did not answer on port {} within 60 s; {INSTALL_HINT}\n--- its output ---\n{log}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the server and start it again on the same port. moto keeps everything in memory:
    /// **every bucket and object is lost**. (Tests that need a restart with the data intact use
    /// [`FaultProxy::outage`].)
    pub fn restart(&mut self) {
        self.kill();
        let start = Instant::now();
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(StartError::PortInUse) if start.elapsed() < Duration::from_secs(15) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(StartError::PortInUse) => {
                    panic!("port {} stayed taken after moto was killed", self.port)
                }
                Err(StartError::Other(msg)) => panic!("{msg}"),
            }
        }
    }

    /// Kill the server (and its process group) now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines the server printed.
    pub fn log(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Environment for cairn to use this server: fake credentials, region, endpoint, and short
    /// timeouts ([`TIMEOUT_SECS`], [`RETRIES`]).
    pub fn env(&self) -> Env {
        env_for(&self.endpoint())
    }

    /// Create bucket `name` (an unsigned `PUT /name`); panics unless the server agrees.
    pub fn create_bucket(&self, name: &str) {
        let r = http(self.addr(), "PUT", &format!("/{name}"), b"")
            .unwrap_or_else(|e| panic!("creating bucket {name}: {e}\n{}", self.log()));
        assert_eq!(
            r.status,
            200,
            "creating bucket {name}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Every object of `bucket` whose key starts with `prefix`: (key, size), sorted by key.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("/{bucket}?list-type=2&prefix={}", url_encode(prefix));
            if let Some(t) = &token {
                q.push_str(&format!("&continuation-token={}", url_encode(t)));
            }
            let r = http(self.addr(), "GET", &q, b"")
                .unwrap_or_else(|e| panic!("listing {bucket}/{prefix}: {e}"));
            let body = String::from_utf8_lossy(&r.body).into_owned();
            assert_eq!(r.status, 200, "listing {bucket}/{prefix}: {body}");
            for item in body.split("<Contents>").skip(1) {
                let key = xml_text(item, "Key").expect("Key in Contents");
                let size = xml_text(item, "Size")
                    .and_then(|s| s.parse().ok())
                    .expect("Size in Contents");
                out.push((key, size));
            }
            if xml_text(&body, "IsTruncated").as_deref() == Some("true") {
                token = Some(xml_text(&body, "NextContinuationToken").expect("continuation"));
            } else {
                break;
            }
        }
        out.sort();
        out
    }

    /// Send `method` for object `key` of `bucket` with `body`; panics (saying `doing`) if no
    /// answer comes.
    fn object_request(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        body: &[u8],
        doing: &str,
    ) -> HttpResponse {
        let path = format!("/{bucket}/{}", url_encode_path(key));
        http(self.addr(), method, &path, body)
            .unwrap_or_else(|e| panic!("{doing} {bucket}/{key}: {e}"))
    }

    /// The bytes of object `key` in `bucket`, None if there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = self.object_request("GET", bucket, key, b"", "reading");
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!(
                "reading {bucket}/{key}: status {s}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }

    /// Store `bytes` as `key` in `bucket` (overwriting).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let r = self.object_request("PUT", bucket, key, bytes, "writing");
        assert_eq!(
            r.status,
            200,
            "writing {bucket}/{key}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Delete `key` from `bucket`.
    pub fn delete(&self, bucket: &str, key: &str) {
        let r = self.object_request("DELETE", bucket, key, b"", "deleting");
        assert!(
            r.status == 204 || r.status == 200,
            "deleting {bucket}/{key}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Multipart uploads that were started and neither completed nor aborted:
    /// (key, upload id).
    pub fn open_uploads(&self, bucket: &str) -> Vec<(String, String)> {
        let r = http(self.addr(), "GET", &format!("/{bucket}?uploads"), b"")
            .unwrap_or_else(|e| panic!("listing uploads of {bucket}: {e}"));
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 200, "listing uploads of {bucket}: {body}");
        body.split("<Upload>")
            .skip(1)
            .map(|u| {
                (
                    xml_text(u, "Key").unwrap_or_default(),
                    xml_text(u, "UploadId").unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Environment for cairn to reach an S3 endpoint: credentials ([`ACCESS_KEY`],
/// [`SECRET_KEY`]), region us-east-1, `CAIRN_S3_ENDPOINT`, `CAIRN_S3_TIMEOUT` =
/// [`TIMEOUT_SECS`], `CAIRN_S3_RETRIES` = [`RETRIES`], and no HTTP proxy for 127.0.0.1.
pub fn env_for(endpoint: &str) -> Env {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("CAIRN_S3_ENDPOINT", endpoint.to_string()),
        ("CAIRN_S3_TIMEOUT", TIMEOUT_SECS.to_string()),
        ("CAIRN_S3_RETRIES", RETRIES.to_string()),
        ("NO_PROXY", "127.0.0.1,localhost".to_string()),
        ("no_proxy", "127.0.0.1,localhost".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), OsString::from(v)))
    .collect()
}

/// The moto server this test binary shares between its tests, started on first use and
/// killed when the binary exits (parent-death signal). Never restart or kill it: other tests
/// use it at the same time; start an own [`S3Server`] for that.
pub fn shared() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(S3Server::start)
}

/// A new bucket on the [`shared`] server, named uniquely within this test binary (its name
/// carries `label`, lower-cased and cut to fit S3's naming rules).
pub fn fresh_bucket(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(40);
    let name = format!("e2e-{n}-{}", clean.trim_matches('-'));
    let name = name.trim_end_matches('-').to_string();
    shared().create_bucket(&name);
    name
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------------------------

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

/// An `Authorization` header: moto then treats a request as authenticated without checking
/// the signature (unsigned requests are anonymous and may not read private objects).
const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n";

/// One HTTP/1.1 request (`Connection: close`, a dummy `Authorization` that moto does not
/// check) to `addr`; 30 s timeout.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> io::Result<HttpResponse> {
    http_with(addr, method, path, &[], body)
}

/// [`http`] with extra request headers.
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n{AUTH}{extra}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = raw[end + 4..].to_vec();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if method != "HEAD" {
            body.truncate(n);
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Percent-encode everything but unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a key for a path (slashes kept).
fn url_encode_path(s: &str) -> String {
    s.split('/').map(url_encode).collect::<Vec<_>>().join("/")
}

/// The text of the first `<tag>…</tag>` in `xml`, with entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

// ---------------------------------------------------------------------------------------------
// Fault-injecting proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy does to connections (switchable at any time with [`FaultProxy::set`]).
/// Connection numbers count from 1, from the last `set`; `every: 1` means every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Cut every `every`-th connection once it has carried `after` request bytes (client →
    /// server): the rest is not forwarded and both sides are closed at once.
    CutRequest {
        /// Which connections.
        every: u64,
        /// Request bytes let through on each.
        after: u64,
    },
    /// Cut every `every`-th connection once it has carried `after` response bytes.
    CutResponse {
        /// Which connections.
        every: u64,
        /// Response bytes let through on each.
        after: u64,
    },
    /// Accept every `k`-th new connection and close it at once, unanswered.
    DropEvery(u64),
    /// On every `every`-th new connection, hold each response for `delay` before forwarding
    /// it.
    Stall {
        /// Which connections.
        every: u64,
        /// How long each response is held.
        delay: Duration,
    },
    /// A slow link: every connection carries at most this many bytes a second each way.
    Throttle(u64),
    /// A link that goes silent mid-request: every `every`-th connection, once it has carried
    /// `after` request bytes, forwards nothing more either way but stays open (until the
    /// proxy stops).
    FreezeRequest {
        /// Which connections.
        every: u64,
        /// Request bytes let through on each.
        after: u64,
    },
    /// Like [`Fault::FreezeRequest`], after `after` response bytes.
    FreezeResponse {
        /// Which connections.
        every: u64,
        /// Response bytes let through on each.
        after: u64,
    },
}

impl Fault {
    /// Whether connection number `nth` is one this fault strikes.
    fn strikes(&self, nth: u64) -> bool {
        let every = match *self {
            Fault::Pass => return false,
            Fault::Throttle(_) => return true,
            Fault::CutRequest { every, .. }
            | Fault::CutResponse { every, .. }
            | Fault::Stall { every, .. }
            | Fault::FreezeRequest { every, .. }
            | Fault::FreezeResponse { every, .. } => every,
            Fault::DropEvery(k) => k,
        };
        every > 0 && nth.is_multiple_of(every)
    }
}

/// Something the proxy does by itself once enough request bytes have passed
/// ([`FaultProxy::arm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Switch to this fault.
    Fault(Fault),
    /// Refuse connections for this long, cutting the open ones (a server restart).
    Outage(Duration),
}

/// What went through a [`FaultProxy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections dropped unanswered ([`Fault::DropEvery`]).
    pub dropped: u64,
    /// Connections cut mid-stream ([`Fault::CutRequest`], [`Fault::CutResponse`],
    /// outages).
    pub cut: u64,
    /// Responses held back ([`Fault::Stall`]).
    pub stalled: u64,
    /// Connections gone silent ([`Fault::FreezeRequest`], [`Fault::FreezeResponse`]).
    pub frozen: u64,
    /// Outages begun.
    pub outages: u64,
    /// Request bytes forwarded (client → server).
    pub bytes_up: u64,
    /// Response bytes forwarded (server → client).
    pub bytes_down: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    dropped: AtomicU64,
    cut: AtomicU64,
    stalled: AtomicU64,
    frozen: AtomicU64,
    outages: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

struct ProxyState {
    fault: Fault,
    /// Faults still to inject before the fault turns into [`Fault::Pass`] (None: no limit).
    budget: Option<u64>,
    /// Connections accepted since the fault was set.
    seq: u64,
    armed: Option<(u64, Trigger)>,
    outage_until: Option<Instant>,
    /// The listener is bound (false during an outage).
    listening: bool,
    open: HashMap<u64, TcpStream>,
    next_id: u64,
}

struct Shared {
    target: SocketAddr,
    port: u16,
    state: Mutex<ProxyState>,
    changed: Condvar,
    stop: AtomicBool,
    n: Counters,
    /// `KEYID/REGION` of the signatures seen ([`FaultProxy::take_signers`]).
    signers: Mutex<Vec<String>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take one fault from the budget: false if it is used up (the fault is then switched
    /// off).
    fn take_fault(&self) -> bool {
        let mut st = self.lock();
        match st.budget {
            None => true,
            Some(0) => {
                st.fault = Fault::Pass;
                false
            }
            Some(n) => {
                st.budget = Some(n - 1);
                if n == 1 {
                    st.fault = Fault::Pass;
                }
                true
            }
        }
    }

    /// Begin an outage of `d` (state locked by the caller).
    fn begin_outage(&self, st: &mut ProxyState, d: Duration) {
        st.outage_until = Some(Instant::now() + d);
        self.n.outages.fetch_add(1, Ordering::Relaxed);
        for (_, s) in st.open.drain() {
            let _ = s.shutdown(Shutdown::Both);
            self.n.cut.fetch_add(1, Ordering::Relaxed);
        }
        self.changed.notify_all();
    }

    /// Note the `KEYID/REGION` of every AWS signature in `request` (a head split between
    /// two reads is missed; every request of a command carries one).
    fn record_signers(&self, request: &[u8]) {
        let text = String::from_utf8_lossy(request);
        for (at, tag) in text.match_indices("Credential=") {
            let rest = &text[at + tag.len()..];
            let scope: Vec<&str> = rest
                .split([',', ' ', '\r'])
                .next()
                .unwrap_or("")
                .split('/')
                .collect();
            if let [key, _date, region, ..] = scope[..] {
                let signer = format!("{key}/{region}");
                let mut seen = self.signers.lock().unwrap_or_else(|e| e.into_inner());
                if !seen.contains(&signer) {
                    seen.push(signer);
                }
            }
        }
    }

    /// Count `n` request bytes and fire the armed trigger when its threshold is passed.
    fn count_up(&self, n: u64) {
        let total = self.n.bytes_up.fetch_add(n, Ordering::Relaxed) + n;
        let mut st = self.lock();
        if let Some((at, trigger)) = st.armed {
            if total >= at {
                st.armed = None;
                match trigger {
                    Trigger::Fault(f) => {
                        st.fault = f;
                        st.budget = None;
                        st.seq = 0;
                    }
                    Trigger::Outage(d) => self.begin_outage(&mut st, d),
                }
            }
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of `target` that injects faults on demand. Stops (and
/// cuts every connection) on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free port forwarding to `target`, passing everything through.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            target,
            port,
            state: Mutex::new(ProxyState {
                fault: Fault::Pass,
                budget: None,
                seq: 0,
                armed: None,
                outage_until: None,
                listening: true,
                open: HashMap::new(),
                next_id: 0,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            n: Counters::default(),
            signers: Mutex::new(Vec::new()),
        });
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(sh, listener))
            .expect("starting the proxy thread");
        FaultProxy {
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.shared.port))
    }

    /// `http://127.0.0.1:<port>`, for `CAIRN_S3_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// cairn's environment to reach the server through this proxy (see [`env_for`]).
    pub fn env(&self) -> Env {
        env_for(&self.endpoint())
    }

    /// Switch to `fault` for new connections and new traffic (connection numbering restarts).
    pub fn set(&self, fault: Fault) {
        let mut st = self.shared.lock();
        st.fault = fault;
        st.budget = None;
        st.seq = 0;
    }

    /// Like [`FaultProxy::set`], but only `times` faults are injected (cuts, drops, stalls);
    /// then the proxy passes everything again: a transient problem that retries overcome.
    pub fn set_limited(&self, fault: Fault, times: u64) {
        let mut st = self.shared.lock();
        st.fault = fault;
        st.budget = Some(times);
        st.seq = 0;
    }

    /// Fire `trigger` once `after_request_bytes` request bytes in total (counted from the
    /// proxy's start) have passed.
    pub fn arm(&self, after_request_bytes: u64, trigger: Trigger) {
        self.shared.lock().armed = Some((after_request_bytes, trigger));
    }

    /// True while an armed trigger has not fired yet.
    pub fn armed(&self) -> bool {
        self.shared.lock().armed.is_some()
    }

    /// Refuse connections (the port is closed) for `d` from now, cutting the open ones: what
    /// a client sees when the server restarts.
    pub fn outage(&self, d: Duration) {
        let mut st = self.shared.lock();
        self.shared.begin_outage(&mut st, d);
    }

    /// End an outage now (the port is bound again shortly; see [`FaultProxy::wait_listening`]).
    pub fn end_outage(&self) {
        let mut st = self.shared.lock();
        if st.outage_until.is_some() {
            st.outage_until = Some(Instant::now());
        }
        self.shared.changed.notify_all();
    }

    /// Block until no outage is in progress and the port accepts connections again (at most
    /// `max`); true if so.
    pub fn wait_listening(&self, max: Duration) -> bool {
        self.wait_until(max, |st| st.outage_until.is_none() && st.listening)
    }

    /// Block until the port is closed for an outage (at most `max`); true if so.
    pub fn wait_refusing(&self, max: Duration) -> bool {
        self.wait_until(max, |st| !st.listening)
    }

    /// Block until `done` holds of the proxy's state (at most `max`); true if so.
    fn wait_until(&self, max: Duration, done: impl Fn(&ProxyState) -> bool) -> bool {
        let deadline = Instant::now() + max;
        let mut st = self.shared.lock();
        while !done(&st) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Who signed the requests since the last call: `KEYID/REGION` from each AWS signature
    /// (`Authorization: AWS4-HMAC-SHA256 Credential=KEYID/DATE/REGION/s3/aws4_request`),
    /// distinct, in order of appearance. The secret never travels, so it cannot be seen here.
    pub fn take_signers(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .shared
                .signers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        let n = &self.shared.n;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            connections: g(&n.connections),
            dropped: g(&n.dropped),
            cut: g(&n.cut),
            stalled: g(&n.stalled),
            frozen: g(&n.frozen),
            outages: g(&n.outages),
            bytes_up: g(&n.bytes_up),
            bytes_down: g(&n.bytes_down),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        {
            let mut st = self.shared.lock();
            for (_, s) in st.open.drain() {
                let _ = s.shutdown(Shutdown::Both);
            }
            self.shared.changed.notify_all();
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(sh: Arc<Shared>, first: TcpListener) {
    let mut listener = Some(first);
    while !sh.stop.load(Ordering::Relaxed) {
        // An outage: close the port until it is over, then bind it again.
        let outage = sh.lock().outage_until;
        if let Some(until) = outage {
            if listener.take().is_some() {
                sh.lock().listening = false;
                sh.changed.notify_all();
            }
            let now = Instant::now();
            if now < until {
                let st = sh.lock();
                let _ = sh
                    .changed
                    .wait_timeout(st, until - now)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let mut st = sh.lock();
            if st.outage_until == Some(until) {
                st.outage_until = None;
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => {
                match TcpListener::bind(("127.0.0.1", sh.port)) {
                    Ok(l) => {
                        l.set_nonblocking(true).expect("non-blocking listener");
                        listener = Some(l);
                        sh.lock().listening = true;
                        sh.changed.notify_all();
                    }
                    Err(e) => {
                        eprintln!("fault proxy: port {} not free again yet: {e}", sh.port);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                continue;
            }
        };
        l.set_nonblocking(true).expect("non-blocking listener");
        match l.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                handle(&sh, client);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The proxy's own event loop: a short nap between polls of the listener.
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                eprintln!("fault proxy: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Decide what to do with a new connection and start its two pumps.
fn handle(sh: &Arc<Shared>, client: TcpStream) {
    if sh.lock().outage_until.is_some() {
        // Accepted in the moment before the port closed: part of the outage.
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    sh.n.connections.fetch_add(1, Ordering::Relaxed);
    let (fault, nth) = {
        let mut st = sh.lock();
        st.seq += 1;
        (st.fault, st.seq)
    };
    let strikes = fault.strikes(nth);
    if matches!(fault, Fault::DropEvery(_)) && strikes && sh.take_fault() {
        sh.n.dropped.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let stall = match fault {
        Fault::Stall { delay, .. } if strikes => Some(delay),
        _ => None,
    };
    let server = match TcpStream::connect_timeout(&sh.target, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fault proxy: connecting to {}: {e}", sh.target);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = {
        let mut st = sh.lock();
        st.next_id += 1;
        let id = st.next_id;
        if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
            st.open.insert(id * 2, c);
            st.open.insert(id * 2 + 1, s);
        }
        id
    };
    let pending_request = Arc::new(AtomicBool::new(false));
    let conn = Conn {
        sh: Arc::clone(sh),
        id,
        nth,
        cut: Arc::new(AtomicBool::new(false)),
    };
    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let up = conn.clone();
    let pr = Arc::clone(&pending_request);
    std::thread::spawn(move || up.pump(client, server, true, pr, None));
    std::thread::spawn(move || conn.pump(s2, c2, false, pending_request, stall));
}

#[derive(Clone)]
struct Conn {
    sh: Arc<Shared>,
    id: u64,
    /// The connection's number (for [`Fault::strikes`]).
    nth: u64,
    cut: Arc<AtomicBool>,
}

impl Conn {
    /// Close both sides at once (unread data makes the kernel send a reset).
    fn cut(&self, a: &TcpStream, b: &TcpStream) {
        if !self.cut.swap(true, Ordering::Relaxed) {
            self.sh.n.cut.fetch_add(1, Ordering::Relaxed);
        }
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }

    fn forget(&self) {
        let mut st = self.sh.lock();
        st.open.remove(&(self.id * 2));
        st.open.remove(&(self.id * 2 + 1));
    }

    /// Copy `from` → `to`; `up` is the request direction.
    fn pump(
        self,
        mut from: TcpStream,
        mut to: TcpStream,
        up: bool,
        pending_request: Arc<AtomicBool>,
        stall: Option<Duration>,
    ) {
        let mut buf = vec![0u8; 64 << 10];
        let mut carried: u64 = 0;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown(Shutdown::Write);
                    if !up {
                        let _ = from.shutdown(Shutdown::Both);
                    }
                    break;
                }
                Ok(n) => n,
            };
            if self.sh.stop.load(Ordering::Relaxed) || self.cut.load(Ordering::Relaxed) {
                self.cut(&from, &to);
                break;
            }
            let fault = self.sh.lock().fault;
            let limit = match (fault, up) {
                (Fault::CutRequest { after, .. }, true)
                | (Fault::CutResponse { after, .. }, false)
                | (Fault::FreezeRequest { after, .. }, true)
                | (Fault::FreezeResponse { after, .. }, false)
                    if fault.strikes(self.nth) =>
                {
                    Some(after)
                }
                _ => None,
            };
            let mut send = n;
            let (mut cut_now, mut freeze_now) = (false, false);
            if let Some(l) = limit {
                if carried + n as u64 >= l && self.sh.take_fault() {
                    send = l.saturating_sub(carried) as usize;
                    let freeze = matches!(
                        fault,
                        Fault::FreezeRequest { .. } | Fault::FreezeResponse { .. }
                    );
                    (cut_now, freeze_now) = (!freeze, freeze);
                }
            }
            if up {
                pending_request.store(true, Ordering::Relaxed);
                self.sh.record_signers(&buf[..n]);
            } else if let Some(d) = stall {
                if pending_request.swap(false, Ordering::Relaxed) && self.sh.take_fault() {
                    self.sh.n.stalled.fetch_add(1, Ordering::Relaxed);
                    let until = Instant::now() + d;
                    while Instant::now() < until && !self.sh.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            if send > 0 && to.write_all(&buf[..send]).is_err() {
                self.cut(&from, &to);
                break;
            }
            if let Fault::Throttle(rate) = fault {
                std::thread::sleep(Duration::from_secs_f64(send as f64 / rate.max(1) as f64));
            }
            carried += send as u64;
            if up {
                self.sh.count_up(send as u64);
            } else {
                self.sh
                    .n
                    .bytes_down
                    .fetch_add(send as u64, Ordering::Relaxed);
            }
            if cut_now {
                self.cut(&from, &to);
                break;
            }
            if freeze_now {
                // Read nothing more (the sender's buffers fill up), send nothing more, and keep
                // both sides open: the connection is alive but nothing moves.
                self.sh.n.frozen.fetch_add(1, Ordering::Relaxed);
                while !self.sh.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                break;
            }
        }
        self.forget();
    }
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A TLS front for the [`shared`] moto server (python3's `ssl` terminating TLS with the server
/// certificate of [`crate::etcd::Certs`], IP SAN 127.0.0.1, and relaying to moto). Killed on
/// drop.
pub struct TlsFront {
    child: Child,
    port: u16,
}

const TLS_RELAY: &str = r#"
import asyncio, ssl, sys
cert, key, port, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
async def pump(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pump(cr, sw), pump(sr, cw))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=ctx)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

impl TlsFront {
    /// Listen on a free port with `certs`' server certificate.
    pub fn start(certs: &crate::etcd::Certs) -> TlsFront {
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.args(["-c", TLS_RELAY])
            .arg(&certs.server.cert)
            .arg(&certs.server.key)
            .arg(port.to_string())
            .arg(shared().addr().port().to_string())
            .stdin(Stdio::null());
        let child = spawn_owned(cmd).expect("python3 runs the TLS front");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the TLS front did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsFront { child, port }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
