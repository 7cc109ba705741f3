//! etcd: pick one healthy member, stream its snapshot (Maintenance.Snapshot) straight into the
//! chunker, and verify the sha256 trailer etcd appends — no temporary file on the host.
//!
//! The gRPC stream runs on a small tokio runtime in a background thread and reaches the
//! synchronous pipeline through a bounded channel, so memory stays bounded whatever the
//! database size.

use crate::{Error, Result};
use crossbeam_channel::{bounded, Receiver};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// What went wrong reaching or reading etcd. Messages say what an operator can check.
#[derive(Debug, Error)]
pub enum EtcdError {
    /// The client library's error, with a hint on its likely cause.
    #[error("{0}")]
    Client(String),
    /// A request got no answer in time.
    #[error("{what}no answer within {timeout:?}")]
    Timeout {
        /// The request (with a trailing ": "), or nothing for the connection.
        what: &'static str,
        /// How long was waited.
        timeout: Duration,
    },
    /// The member reports errors in its status.
    #[error("member reports errors: {0}")]
    MemberErrors(String),
    /// A linearizable read did not complete: the cluster has no quorum.
    #[error("no quorum: a linearizable read did not complete within {0:?}")]
    NoQuorum(Duration),
    /// A linearizable read failed.
    #[error("linearizable read failed: {0}")]
    ReadFailed(String),
    /// No endpoint to try.
    #[error("no etcd endpoint given (--endpoints)")]
    NoEndpoint,
    /// Every endpoint failed its health check.
    #[error("no healthy etcd endpoint:\n  {}", .0.iter().map(|(e, why)| format!("{e}: {why}")).collect::<Vec<_>>().join("\n  "))]
    NoHealthyEndpoint(Vec<(String, String)>),
    /// A client certificate without its key, or the reverse.
    #[error("--cert and --key go together")]
    CertWithoutKey,
    /// A client certificate file that cannot be used.
    #[error("client certificate {}: {why}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The snapshot stream stopped short.
    #[error("the snapshot stream ended with {0} bytes still to come")]
    Truncated(u64),
    /// The snapshot stream held nothing.
    #[error("the snapshot stream was empty")]
    Empty,
    /// The runtime or thread the client runs on could not start.
    #[error("starting {what}: {cause}")]
    Start {
        /// The runtime or thread.
        what: &'static str,
        /// The system's answer.
        cause: io::Error,
    },
}

impl From<EtcdError> for Error {
    fn from(e: EtcdError) -> Error {
        Error::Source(e.into())
    }
}

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Client URLs, in order of preference (put the local member first).
    pub endpoints: Vec<String>,
    /// CA bundle for the server certificates.
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// Connection and health-check timeout.
    pub timeout: Duration,
}

/// What was learnt about the member chosen.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its endpoint.
    pub endpoint: String,
    /// Member id (hex).
    pub id: String,
    /// etcd server version.
    pub version: String,
    /// Database size reported by the member.
    pub db_size: i64,
    /// Revision at the time of the health check.
    pub revision: i64,
    /// Whether it was the leader.
    pub leader: bool,
}

impl Connection {
    fn options(&self) -> Result<ConnectOptions> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(20));
        if self.tls_wanted() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.cacert {
                let pem =
                    std::fs::read(ca).map_err(Error::file("reading CA bundle", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            match (&self.cert, &self.key) {
                (Some(c), Some(k)) => {
                    let cert = std::fs::read(c)
                        .map_err(Error::file("reading client certificate", c.display()))?;
                    check_validity(&cert, c)?;
                    let key =
                        std::fs::read(k).map_err(Error::file("reading client key", k.display()))?;
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => return Err(EtcdError::CertWithoutKey.into()),
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }

    /// Turn gRPC/TLS errors into something an operator can act on.
    fn explain(&self, e: etcd_client::Error) -> EtcdError {
        let text = format!("{e}");
        let detail = format!("{e:?}");
        tracing::debug!("etcd error detail: {detail}");
        let has = |needles: &[&str]| needles.iter().any(|n| detail.contains(n));
        let hint = if has(&["UnknownIssuer", "invalid peer certificate"]) {
            if self.cacert.is_some() {
                " (the server certificate is not signed by the CA given with --cacert)"
            } else {
                " (the server certificate is not signed by a CA this system trusts: give etcd's CA with --cacert)"
            }
        } else if has(&["CertificateExpired", "Expired"]) {
            " (a certificate has expired)"
        } else if has(&[
            "certificate required",
            "CertificateRequired",
            "BadCertificate",
            "bad certificate",
            "unknown ca",
            "UnknownCA",
        ]) {
            " (the server rejected the client certificate: check --cert/--cert-key)"
        } else if has(&["Connection refused", "ConnectionRefused"]) {
            " (connection refused: is etcd listening there?)"
        } else if has(&[
            "connection closed",
            "Broken pipe",
            "BrokenPipe",
            "operation was canceled",
            "ConnectionReset",
        ]) && self.cert.is_none()
            && self.tls_wanted()
        {
            // With TLS 1.3 the server's rejection can arrive after the request went out.
            " (the connection closed right after the TLS handshake: etcd requires a client certificate; give --cert and --cert-key)"
        } else if has(&[
            "connection closed",
            "Broken pipe",
            "BrokenPipe",
            "operation was canceled",
        ]) && self.cert.is_some()
        {
            " (the connection closed right after the TLS handshake: etcd probably rejected the client certificate; check --cert/--cert-key and that etcd trusts its CA)"
        } else {
            ""
        };
        EtcdError::Client(format!("{text}{hint}"))
    }

    fn tls_wanted(&self) -> bool {
        self.cacert.is_some()
            || self.cert.is_some()
            || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    async fn connect(&self, endpoint: &str) -> Result<Client> {
        let client = tokio::time::timeout(
            self.timeout,
            Client::connect([endpoint], Some(self.options()?)),
        )
        .await
        .map_err(|_| EtcdError::Timeout {
            what: "",
            timeout: self.timeout,
        })?
        .map_err(|e| self.explain(e))?;
        Ok(client)
    }

    /// Health of one endpoint: status plus a linearizable read (as `etcdctl endpoint health`).
    async fn check(&self, endpoint: &str) -> Result<Member> {
        let mut client = self.connect(endpoint).await?;
        let status = tokio::time::timeout(self.timeout, client.status())
            .await
            .map_err(|_| EtcdError::Timeout {
                what: "status: ",
                timeout: self.timeout,
            })?
            .map_err(|e| self.explain(e))?;
        if !status.errors().is_empty() {
            return Err(EtcdError::MemberErrors(status.errors().join("; ")).into());
        }
        match tokio::time::timeout(self.timeout, client.get("health", None)).await {
            Err(_) => return Err(EtcdError::NoQuorum(self.timeout).into()),
            Ok(Err(e)) if !e.to_string().contains("permission denied") => {
                return Err(EtcdError::ReadFailed(self.explain(e).to_string()).into());
            }
            Ok(_) => {}
        }
        let header = status.header();
        let id = header.map(|h| h.member_id()).unwrap_or_default();
        Ok(Member {
            endpoint: endpoint.to_string(),
            id: format!("{id:x}"),
            version: status.version().to_string(),
            db_size: status.db_size(),
            revision: header.map(|h| h.revision()).unwrap_or_default(),
            leader: status.leader() == id,
        })
    }

    /// Check endpoints in order and return the first healthy member, with the reasons the
    /// others before it were skipped.
    pub fn select(&self) -> Result<(Member, Vec<(String, String)>)> {
        if self.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint.into());
        }
        let rt = runtime()?;
        let mut skipped = Vec::new();
        for e in &self.endpoints {
            match rt.block_on(self.check(e)) {
                Ok(m) => return Ok((m, skipped)),
                Err(err) => skipped.push((e.clone(), err.to_string())),
            }
        }
        Err(EtcdError::NoHealthyEndpoint(skipped).into())
    }

    /// The OpenShift cluster version (`status.desired.version` of the ClusterVersion object),
    /// if the cluster has one. Best effort: None on any error.
    pub fn cluster_version(&self, endpoint: &str) -> Option<String> {
        let rt = runtime().ok()?;
        let value = rt.block_on(async {
            let mut client = self.connect(endpoint).await.ok()?;
            let resp = tokio::time::timeout(self.timeout, client.get(CLUSTER_VERSION_KEY, None))
                .await
                .ok()?
                .ok()?;
            resp.kvs().first().map(|kv| kv.value().to_vec())
        })?;
        cluster_version_from_json(&value)
    }

    /// Start streaming a snapshot from `endpoint`. The reader yields the exact bytes
    /// `etcdctl snapshot save` writes (database + sha256 trailer).
    pub fn snapshot(&self, endpoint: &str) -> Result<ChannelReader> {
        let (tx, rx) = bounded::<io::Result<Vec<u8>>>(32);
        let conn = self.clone();
        let endpoint = endpoint.to_string();
        let rt = runtime()?;
        std::thread::Builder::new()
            .name("cairn-etcd".into())
            .spawn(move || {
                let result: Result<()> = rt.block_on(async {
                    let mut client = conn.connect(&endpoint).await?;
                    let mut stream = client.snapshot().await.map_err(|e| conn.explain(e))?;
                    let mut remaining = None;
                    while let Some(msg) = stream.message().await.map_err(|e| conn.explain(e))? {
                        remaining = Some(msg.remaining_bytes());
                        if tx.send(Ok(msg.blob().to_vec())).is_err() {
                            return Ok(()); // the reader gave up
                        }
                    }
                    match remaining {
                        Some(0) => Ok(()),
                        Some(n) => Err(EtcdError::Truncated(n).into()),
                        None => Err(EtcdError::Empty.into()),
                    }
                });
                if let Err(e) = result {
                    let _ = tx.send(Err(io::Error::other(format!(
                        "etcd snapshot stream from {endpoint} failed: {e}"
                    ))));
                }
            })
            .map_err(|cause| EtcdError::Start {
                what: "the etcd stream thread",
                cause,
            })?;
        Ok(ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
        })
    }
}

/// Refuse a client certificate that is expired or not yet valid, naming its dates (etcd would
/// only close the connection).
fn check_validity(pem: &[u8], path: &std::path::Path) -> Result<()> {
    let bad = |why: String| EtcdError::BadCertificate {
        path: path.to_path_buf(),
        why,
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem) else {
        return Err(bad("not a PEM certificate".into()).into());
    };
    let cert = pem
        .parse_x509()
        .map_err(|e| bad(format!("not a valid X.509 certificate: {e}")))?;
    let v = cert.validity();
    if !v.is_valid() {
        return Err(bad(format!(
            "not valid now: valid from {} to {}{}",
            v.not_before,
            v.not_after,
            if v.not_after.timestamp() < chrono::Utc::now().timestamp() {
                " (it has expired)"
            } else {
                " (not valid yet: check the clock)"
            }
        ))
        .into());
    }
    Ok(())
}

/// Where OpenShift keeps its ClusterVersion object in etcd.
pub const CLUSTER_VERSION_KEY: &str = "/kubernetes.io/config.openshift.io/clusterversions/version";

/// `status.desired.version` from a ClusterVersion object stored as JSON.
pub fn cluster_version_from_json(value: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    v.pointer("/status/desired/version")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| {
            EtcdError::Start {
                what: "the async runtime for etcd",
                cause,
            }
            .into()
        })
}

/// Reads the bytes the stream thread sends; an error from the stream surfaces as a read error.
pub struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // sender finished cleanly
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
