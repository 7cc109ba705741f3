//! Object stores over HTTP: S3 and S3-compatible servers (MinIO, Ceph RGW, ODF/NooBaa), and —
//! untested — Google Cloud Storage and Azure Blob Storage, all through the `object_store` crate.
//!
//! The [`Backend`] trait is synchronous; this backend owns a small tokio runtime and blocks on
//! it. Retries with exponential backoff and jitter (throttling, 5xx, resets, timeouts) are
//! object_store's; reads that break mid-body are retried here as well. Objects larger than
//! [`MULTIPART_THRESHOLD`] are uploaded in parts, a bounded number at a time; an upload that
//! finally fails is aborted, so nothing appears under its final name.
//!
//! Every object is written with `If-None-Match: *` (a create, never an overwrite), which AWS
//! S3, MinIO and Ceph RGW honour: backups need no permission to replace or delete objects.
//! A server that rejects the condition as unsupported is answered by unconditional writes and,
//! for [`Backend::put_new`], a HEAD-then-PUT fallback, which is not atomic; this is logged once
//! and documented in SPEC.md.

mod stream;

use super::credential_process::ProcessCredentials;
use super::s3_api::{ObjectVersion, Retention, S3Api, WriteLock};
use super::s3_config::{process_env, resolve, Credentials, S3Config};
use super::transport::{Connector, STALLED};
use super::{Backend, ObjectInfo, ReadSeek};
use crate::{ConfigError, Error, Result};
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Objects at least this large are uploaded as multipart uploads. Packs of the default size
/// (16 MiB) go up in one request: parts would cost two requests more per pack and gain nothing
/// while several packs are uploaded at once.
pub const MULTIPART_THRESHOLD: usize = 32 << 20;
/// Size of one part of a multipart upload.
const PART_SIZE: usize = 16 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Packs uploaded at once.
const PARALLEL_UPLOADS: usize = 4;
/// First read of an opened object (age header and the first segments).
const FIRST_READ: u64 = 64 << 10;
/// Largest read-ahead for sequential reads of an opened object.
const MAX_READ_AHEAD: u64 = 8 << 20;
/// Objects up to this size are fetched whole on the first read outside the first range: tree
/// packs are read in no particular order, and one request beats one per jump.
const WHOLE_READ: u64 = 4 << 20;
/// Attempts for a read whose body broke off after object_store's own retries.
const READ_ATTEMPTS: usize = 3;

/// Retries of a request when nothing says how many (`--s3-retries`, `AWS_MAX_ATTEMPTS`).
pub const DEFAULT_RETRIES: usize = 10;

/// The log target of requests cairn retries itself (object_store's are
/// `object_store::client::retry` and `::get`): shown by default, as the retries happen.
pub const RETRY_LOG: &str = "cairn::retry";

/// How to reach an object store (from flags and environment).
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// S3 endpoint URL for S3-compatible servers (path-style addressing is then used).
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: Option<String>,
    /// How long a request may go without progress (no bytes sent or received).
    pub timeout: Duration,
    /// Retries of one request before giving up; `None`: `AWS_MAX_ATTEMPTS` or the AWS
    /// profile's `max_attempts` (less one) for S3, else [`DEFAULT_RETRIES`].
    pub retries: Option<usize>,
    /// This repository's `AWS_PROFILE` (instead of the environment's).
    pub aws_profile: Option<String>,
    /// This repository's `AWS_SHARED_CREDENTIALS_FILE` (instead of the environment's).
    pub aws_credentials_file: Option<std::path::PathBuf>,
    /// This repository's `AWS_CA_BUNDLE` (instead of the environment's).
    pub aws_ca_bundle: Option<std::path::PathBuf>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            s3_endpoint: None,
            s3_region: None,
            timeout: Duration::from_secs(30),
            retries: None,
            aws_profile: None,
            aws_credentials_file: None,
            aws_ca_bundle: None,
        }
    }
}

/// A repository in an object store bucket, below an optional prefix. Clones share the
/// connection pool and runtime.
#[derive(Clone)]
pub struct RemoteBackend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    location: String,
    runtime: Arc<tokio::runtime::Runtime>,
    no_conditional_put: Arc<AtomicBool>,
    /// Retries of a request object_store does not retry itself.
    retries: usize,
    /// Requests object_store does not make (S3 only).
    api: Option<Arc<S3Api>>,
    /// Retention every object written gets (S3 Object Lock), once set.
    lock: Arc<Mutex<Option<WriteLock>>>,
}

impl RemoteBackend {
    /// Connect to `url` (`s3://bucket/prefix`, `gs://…`, `az://…`). Credentials come from the
    /// environment as the AWS/Google/Azure tools read them; nothing secret is kept in messages.
    pub fn open(url: &str, opts: &RemoteOptions) -> Result<RemoteBackend> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::Invalid(format!("{url} is not a URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ConfigError::NoBucket {
                location: url.to_string(),
                scheme: scheme.to_string(),
            }
            .into());
        }
        let cfg = match scheme {
            "s3" => Some(resolve(opts, &process_env)?),
            _ => None,
        };
        if let Some(Credentials::InstanceMetadata {
            endpoint,
            timeout,
            attempts,
            v1_fallback,
            looked,
            advice,
        }) = cfg.as_ref().map(|c| &c.credentials)
        {
            super::imds::answers(endpoint, *timeout, *attempts, *v1_fallback).map_err(|why| {
                ConfigError::NoCredentials {
                    looked: looked.clone(),
                    why: format!("instance metadata at {endpoint} gave no credentials ({why})"),
                    advice: advice.clone(),
                }
            })?;
        }
        let retries = opts
            .retries
            .or_else(|| cfg.as_ref().and_then(|c| c.retries))
            .unwrap_or(DEFAULT_RETRIES);
        // Backoff from 1 s, growing about twofold up to 30 s (with jitter): the default 10 retries ride out
        // about four minutes of outage, a server restart or a failover.
        let retry = RetryConfig {
            max_retries: retries,
            retry_timeout: (opts.timeout + Duration::from_secs(30)) * (retries as u32 + 1),
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
                base: 2.0,
            },
        };
        // No whole-request timeout: the connector's transport times out on stalled progress.
        let client =
            ClientOptions::new().with_connect_timeout(opts.timeout.min(Duration::from_secs(10)));
        let mut connector = Connector::new(opts.timeout, Vec::new());
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut api = None;
        let store: Arc<dyn ObjectStore> = match (scheme, cfg) {
            ("s3", Some(cfg)) => {
                let client = client.with_no_system_certificates(plain_http_only(&cfg));
                connector = Connector::new(opts.timeout, ca_bundle(&cfg)?);
                let s3 = s3_builder(bucket, &cfg, retry, client.clone())
                    .with_http_connector(connector.clone())
                    .build()
                    .map_err(|e| Error::Invalid(format!("cannot use S3 repository {url}: {e}")))?;
                api = Some(Arc::new(S3Api::new(
                    &cfg,
                    bucket,
                    &prefix,
                    s3.credentials().clone(),
                    &client,
                    connector,
                    retries,
                )));
                Arc::new(s3)
            }
            ("gs", _) => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_http_connector(connector)
                    .build()
                    .map_err(|e| Error::Invalid(format!("cannot use GCS repository {url}: {e}")))?,
            ),
            ("az", _) => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_http_connector(connector)
                    .build()
                    .map_err(|e| {
                        Error::Invalid(format!("cannot use Azure repository {url}: {e}"))
                    })?,
            ),
            (other, _) => {
                return Err(Error::Invalid(format!(
                "repository scheme {other}:// is not supported (use a path, s3://, gs:// or az://)"
            )))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-remote")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting", "the object store client", e))?;
        Ok(RemoteBackend {
            store,
            location: format!("{scheme}://{bucket}/{}", prefix.trim_end_matches('/')),
            prefix,
            runtime: Arc::new(runtime),
            no_conditional_put: Arc::new(AtomicBool::new(false)),
            retries,
            api,
            lock: Arc::default(),
        })
    }

    fn key(&self, path: &str) -> Path {
        Path::from(format!("{}{}", self.prefix, path))
    }

    /// Run a future to completion from synchronous code (also from inside another runtime,
    /// as the etcd source has one).
    fn block<F: Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| self.runtime.block_on(fut))
                    .join()
                    .expect("object store thread panicked")
            })
        } else {
            self.runtime.block_on(fut)
        }
    }

    fn error(&self, op: &'static str, path: &str, e: object_store::Error) -> Error {
        let remote = |cause: String| Error::Remote {
            op,
            object: path.to_string(),
            location: self.location.clone(),
            cause,
        };
        let chain = error_chain(&e);
        if chain.contains("NoSuchBucket") {
            return remote(format!(
                "the bucket does not exist (cairn does not create buckets; create it, or fix the bucket name): {chain}"
            ));
        }
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                object: path.to_string(),
            },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => remote(format!(
                "the server refused the credentials (check AWS_ACCESS_KEY_ID / AWS_PROFILE and the bucket policy): {chain}"
            )),
            _ => remote(stall_hint(chain)),
        }
    }

    async fn put_multipart(&self, key: &Path, bytes: bytes::Bytes) -> object_store::Result<()> {
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut at = 0;
        while at < bytes.len() {
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(e);
            }
            let end = (at + PART_SIZE).min(bytes.len());
            writer.put(bytes.slice(at..end));
            at = end;
        }
        writer.finish().await.map(|_| ())
    }

    /// Upload `bytes` as `path` (see [`Backend::put_owned`]).
    fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let key = self.key(path);
        let bytes = bytes::Bytes::from(bytes);
        let locked = self.retention_for(path).is_some();
        if bytes.len() >= MULTIPART_THRESHOLD && !locked {
            if self.exists(path)? {
                return Ok(());
            }
            return self
                .block(self.put_multipart(&key, bytes))
                .map_err(|e| self.error("uploading", path, e));
        }
        if self.no_conditional_put.load(Ordering::Relaxed) && !locked {
            return self
                .block(self.store.put(&key, PutPayload::from(bytes)))
                .map(|_| ())
                .map_err(|e| self.error("uploading", path, e));
        }
        match self.put_create(&key, bytes.clone()) {
            Ok(true) => Ok(()),
            Ok(false) if self.exists(path)? => Ok(()),
            Ok(false) => Err(Error::Remote {
                op: "uploading",
                object: path.to_string(),
                location: self.location.clone(),
                cause: "the server refused to create it as already present, yet it is absent; try again".into(),
            }),
            Err(CreateError::Unsupported) => self.upload(path, bytes.to_vec()),
            Err(CreateError::Other(e)) => Err(self.error("uploading", path, e)),
            Err(CreateError::Api(p, e)) => Err(self.api_error("uploading", &p, e)),
        }
    }

    /// The S3 requests object_store lacks, or why there are none.
    fn api(&self, what: &str) -> Result<&S3Api> {
        self.api.as_deref().ok_or_else(|| {
            Error::Invalid(format!(
                "{what} needs an S3 repository; {} is not one",
                self.location
            ))
        })
    }

    /// The retention a new object at `path` gets, if any: every object but leases and gc
    /// markers (transient, and not backup data) while a lock is set.
    fn retention_for(&self, path: &str) -> Option<Retention> {
        if path.starts_with("locks/") || path.starts_with("gc/") {
            return None;
        }
        let lock = *self.lock.lock().expect("lock setting");
        lock.map(|l| l.from_now())
    }

    fn api_error(&self, op: &'static str, path: &str, e: super::s3_api::ApiError) -> Error {
        let hint = match e.status {
            Some(403) => " (the server refused the credentials; check the bucket policy)",
            _ => "",
        };
        Error::Remote {
            op,
            object: path.to_string(),
            location: self.location.clone(),
            cause: stall_hint(format!("{e}{hint}")),
        }
    }

    /// PUT with `If-None-Match: *`: true if created, false if the name was taken. A server
    /// that rejects the condition as unsupported switches this backend to unconditional writes
    /// (logged once).
    fn put_create(
        &self,
        key: &Path,
        bytes: bytes::Bytes,
    ) -> std::result::Result<bool, CreateError> {
        if let (Some(api), Some(retention)) = (
            &self.api,
            self.retention_for(&key.as_ref()[self.prefix.len()..]),
        ) {
            let path = &key.as_ref()[self.prefix.len()..];
            return self
                .block(api.put_locked(path, bytes, retention))
                .map_err(|e| CreateError::Api(path.to_string(), e));
        }
        // object_store does not retry a conditional PUT that timed out or lost its connection
        // (it is not idempotent): retry here. A retry that finds the name taken may have been
        // preceded by a create that succeeded; callers check what is stored.
        let mut attempt = 0;
        let result = loop {
            let opts = PutOptions::from(PutMode::Create);
            let r = self.block(
                self.store
                    .put_opts(key, PutPayload::from(bytes.clone()), opts),
            );
            match r {
                Err(ref e) if attempt < self.retries && is_transient(e) => {
                    tracing::info!(
                        target: RETRY_LOG,
                        "uploading {key}: {e}; retrying ({} of {})",
                        attempt + 1,
                        self.retries
                    );
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                r => break r,
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                if !self.no_conditional_put.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{} does not support conditional create (If-None-Match); falling back to unconditional writes and check-then-write, which is not atomic",
                        self.location
                    );
                }
                Err(CreateError::Unsupported)
            }
            Err(e) => Err(CreateError::Other(e)),
        }
    }

    /// Read `range` of an object; returns the bytes and the object's total size.
    fn read_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<(Vec<u8>, u64)> {
        self.fetch(path, Some(range))
    }

    /// Read `range` of an object into `out`: the bytes read, at most `out.len()`. The
    /// response's pieces are copied into `out`, the only copy.
    fn read_range_into(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
        out: &mut [u8],
    ) -> Result<usize> {
        let (pieces, _) = self.get_pieces(path, Some(range))?;
        let mut n = 0;
        for piece in pieces {
            let take = piece.len().min(out.len() - n);
            out[n..n + take].copy_from_slice(&piece[..take]);
            n += take;
        }
        Ok(n)
    }

    /// GET an object or a range of it: its bytes and the object's size.
    fn fetch(&self, path: &str, range: Option<std::ops::Range<u64>>) -> Result<(Vec<u8>, u64)> {
        let (pieces, size) = self.get_pieces(path, range)?;
        let bytes = match <[bytes::Bytes; 1]>::try_from(pieces) {
            // One piece becomes the Vec without a copy when it owns its allocation.
            Ok([one]) => Vec::from(one),
            Err(pieces) => pieces.concat(),
        };
        Ok((bytes, size))
    }

    /// GET an object or a range of it: the response body as it arrived, in pieces, and the
    /// object's size. The response is received by a task on the runtime, where the
    /// connection's events are handled: a body polled from the calling thread would wake it
    /// through another thread for each piece of a few KiB. A failed request was already
    /// retried by object_store; a body that broke off after the request succeeded (which
    /// object_store does not retry) is fetched again, up to [`READ_ATTEMPTS`] times.
    fn get_pieces(
        &self,
        path: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<(Vec<bytes::Bytes>, u64)> {
        let key = self.key(path);
        let mut last = None;
        for attempt in 1..=READ_ATTEMPTS {
            let opts = GetOptions {
                range: range.clone().map(GetRange::Bounded),
                ..GetOptions::default()
            };
            let (store, key) = (self.store.clone(), key.clone());
            let task = self.runtime.spawn(async move {
                let response = store.get_opts(&key, opts).await?;
                let size = response.meta.size;
                let mut body = response.into_stream();
                let mut pieces = Vec::new();
                let whole = async {
                    while let Some(piece) = body.next().await {
                        pieces.push(piece?);
                    }
                    Ok::<_, object_store::Error>(())
                }
                .await;
                Ok::<_, object_store::Error>(whole.map(|()| (pieces, size)))
            });
            let got = self.block(task).map_err(|e| Error::Remote {
                op: "reading",
                object: path.to_string(),
                location: self.location.clone(),
                cause: format!("the read did not complete: {e}"),
            })?;
            match got {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    if attempt < READ_ATTEMPTS {
                        tracing::info!(
                            target: RETRY_LOG,
                            "reading {path}: the answer broke off ({e}); reading it again ({attempt} of {})",
                            READ_ATTEMPTS - 1
                        );
                    }
                    last = Some(e);
                }
                Err(e) => return Err(self.error("reading", path, e)),
            }
        }
        Err(self.error("reading", path, last.expect("at least one attempt")))
    }
}

/// Whether a failed request may succeed when sent again.
fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::AlreadyExists { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotFound { .. }
    )
}

/// Wait before retry `attempt` (from 0): 1 s, doubling, at most 30 s.
pub(crate) fn backoff(attempt: usize) -> Duration {
    Duration::from_secs(1 << attempt.min(5)).min(Duration::from_secs(30))
}

/// Why a conditional create did not happen.
enum CreateError {
    /// The server does not support `If-None-Match` (now switched off).
    Unsupported,
    Other(object_store::Error),
    /// From a signed request of our own (uploads with Object Lock headers).
    Api(String, super::s3_api::ApiError),
}

/// An error with its sources, as one line (the server's answer is in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let text = crate::error::with_sources(e);
    // An S3 error body is XML; keep its code and message, not the request ids.
    match (
        xml_tag(&text, "Code"),
        xml_tag(&text, "Message"),
        text.find("<?xml"),
    ) {
        (Some(code), Some(message), Some(at)) => format!("{}{code}: {message}", &text[..at]),
        _ => text,
    }
}

fn xml_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(&text[start..start + len])
}

/// A failure's `cause`, with what to do if the connection stalled.
fn stall_hint(cause: String) -> String {
    if !cause.contains(STALLED) {
        return cause;
    }
    format!("{cause}; the connection stalled (a slow link does not time out, only one that stops): check the network path to the server (proxy, firewall, VPN), or if it pauses longer than that, raise --s3-timeout (CAIRN_S3_TIMEOUT)")
}

/// The certificates of the configured CA bundle (`AWS_CA_BUNDLE`, a profile's `ca_bundle`).
fn ca_bundle(cfg: &S3Config) -> Result<Vec<reqwest::Certificate>> {
    let Some((given_by, path)) = &cfg.ca_bundle else {
        return Ok(Vec::new());
    };
    let refuse = |cause: String| ConfigError::CaBundle {
        path: path.clone(),
        given_by: given_by.clone(),
        cause,
    };
    let pem = std::fs::read(path).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| refuse(format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(refuse("holds no certificate".into()).into());
    }
    Ok(certs)
}

/// Whether no connection can need TLS: an `http://` endpoint, static credentials (no
/// token service to call over HTTPS) and no proxy configured. Then the system's certificates
/// are not loaded (~10 ms a client).
fn plain_http_only(cfg: &S3Config) -> bool {
    let proxy = std::env::vars().any(|(name, _)| {
        let name = name.to_ascii_lowercase();
        name.ends_with("_proxy") || name == "aws_proxy_url"
    });
    cfg.allow_http
        && matches!(cfg.credentials, Credentials::Static(_))
        && cfg
            .endpoint
            .as_deref()
            .is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"))
        && !proxy
}

/// The S3 client for `bucket` with the resolved settings. Other `AWS_*` variables that
/// object_store knows (web identity, container credentials, checksums, encryption, …) are
/// passed on as they are; those `cfg` resolved are not read again.
fn s3_builder(
    bucket: &str,
    cfg: &S3Config,
    retry: RetryConfig,
    client: ClientOptions,
) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::new().with_client_options(client.with_allow_http(cfg.allow_http));
    for (name, value) in std::env::vars() {
        let Some(key) = name
            .starts_with("AWS_")
            .then(|| name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>().ok())
            .flatten()
        else {
            continue;
        };
        let resolved = matches!(
            key,
            AmazonS3ConfigKey::AccessKeyId
                | AmazonS3ConfigKey::SecretAccessKey
                | AmazonS3ConfigKey::Token
                | AmazonS3ConfigKey::Region
                | AmazonS3ConfigKey::DefaultRegion
                | AmazonS3ConfigKey::Endpoint
                | AmazonS3ConfigKey::S3Endpoint
                | AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)
        );
        if !resolved {
            b = b.with_config(key, value);
        }
    }
    b = b
        .with_bucket_name(bucket)
        .with_retry(retry)
        .with_region(&cfg.region);
    match &cfg.credentials {
        Credentials::Static(c) => {
            b = b
                .with_access_key_id(&c.key_id)
                .with_secret_access_key(&c.secret);
            if let Some(token) = &c.token {
                b = b.with_token(token);
            }
        }
        Credentials::Process { command, given_by } => {
            b = b.with_credentials(Arc::new(ProcessCredentials::new(
                command.clone(),
                given_by.clone(),
            )));
        }
        Credentials::Chain => {}
        Credentials::InstanceMetadata { endpoint, .. } => {
            b = b.with_metadata_endpoint(endpoint);
        }
    }
    if let Some(endpoint) = &cfg.endpoint {
        b = b
            .with_virtual_hosted_style_request(false)
            .with_endpoint(endpoint);
    }
    b
}

impl Backend for RemoteBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.put_owned(path, bytes.to_vec())
    }

    /// A create, never an overwrite: `If-None-Match: *` (so credentials that may not replace
    /// objects suffice). A name already taken holds the same bytes (content-addressed names),
    /// so a refused create succeeds once the object is confirmed present. Multipart uploads
    /// cannot carry the condition through object_store: a HEAD first skips names already
    /// stored.
    fn put_owned(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.upload(path, bytes)
    }

    fn replace(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.block(
            self.store
                .put(&self.key(path), PutPayload::from(bytes.to_vec())),
        )
        .map(|_| ())
        .map_err(|e| self.error("uploading", path, e))
    }

    fn parallel_writes(&self) -> usize {
        PARALLEL_UPLOADS
    }

    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<bool> {
        let key = self.key(path);
        if !self.no_conditional_put.load(Ordering::Relaxed) {
            match self.put_create(&key, bytes::Bytes::copy_from_slice(bytes)) {
                Ok(true) => return Ok(true),
                // A retried create whose first attempt succeeded finds its own object.
                Ok(false) => return Ok(self.get(path).is_ok_and(|b| b == bytes)),
                Err(CreateError::Unsupported) => {}
                Err(CreateError::Other(e)) => return Err(self.error("uploading", path, e)),
                Err(CreateError::Api(p, e)) => return Err(self.api_error("uploading", &p, e)),
            }
        }
        if self.exists(path)? {
            return Ok(false);
        }
        self.put(path, bytes)?;
        Ok(true)
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.fetch(path, None).map(|(bytes, _)| bytes)
    }

    fn open(&self, path: &str) -> Result<Box<dyn ReadSeek>> {
        let (first, size) = self.read_range(path, 0..FIRST_READ)?;
        Ok(Box::new(RemoteReader {
            backend: self.clone(),
            path: path.to_string(),
            size,
            pos: 0,
            buf_start: 0,
            buf: first,
            read_ahead: FIRST_READ,
        }))
    }

    /// One GET for the whole range, its body streamed (see [`stream`]).
    fn open_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<(Box<dyn Read + Send>, u64)> {
        if range.is_empty() {
            return super::range_of(self.open(path)?, path, range);
        }
        let (stream, size) = stream::RemoteStream::open(self, path, None, range)?;
        Ok((Box::new(stream), size))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        match self.block(self.store.head(&self.key(path))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("checking", path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir = prefix.trim_end_matches('/');
        let key = self.key(dir);
        let strip = self.prefix.len();
        let listed = self.block(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&key));
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                let full = meta.location.to_string();
                out.push(ObjectInfo {
                    path: full.get(strip..).unwrap_or_default().to_string(),
                    size: meta.size,
                });
            }
            Ok::<_, object_store::Error>(out)
        });
        let mut out = listed.map_err(|e| self.error("listing", dir, e))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn delete(&self, path: &str) -> Result<()> {
        match self.block(self.store.delete(&self.key(path))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting", path, e)),
        }
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn bucket_object_lock(&self) -> Result<Option<bool>> {
        let Some(api) = &self.api else {
            return Ok(None);
        };
        self.block(api.bucket_lock())
            .map(|c| Some(c.is_some()))
            .map_err(|e| self.api_error("reading the Object Lock configuration of", "", e))
    }

    fn set_write_lock(&self, lock: Option<WriteLock>) -> Result<()> {
        if lock.is_some() {
            self.api("S3 Object Lock")?;
        }
        *self.lock.lock().expect("lock setting") = lock;
        Ok(())
    }

    fn retention(&self, path: &str) -> Result<Option<Retention>> {
        let api = self.api("S3 Object Lock")?;
        self.block(api.retention(path)).map_err(|e| match e.status {
            Some(404) => Error::NotFound {
                object: path.to_string(),
            },
            _ => self.api_error("reading the retention of", path, e),
        })
    }

    fn set_retention(&self, path: &str, retention: Retention) -> Result<()> {
        let api = self.api("S3 Object Lock")?;
        self.block(api.set_retention(path, retention))
            .map_err(|e| self.api_error("extending the retention of", path, e))
    }

    fn versions(&self, dir: &str) -> Result<Vec<ObjectVersion>> {
        let api = self.api("reading object versions")?;
        self.block(api.versions(dir))
            .map_err(|e| self.api_error("listing the versions of", dir, e))
    }

    fn get_version(&self, path: &str, version_id: &str) -> Result<Vec<u8>> {
        let api = self.api("reading object versions")?;
        self.block(api.get_version(path, version_id, None))
            .map(|b| b.to_vec())
            .map_err(|e| match e.status {
                Some(404) => Error::NotFound {
                    object: format!("{path} (version {version_id})"),
                },
                _ => self.api_error("reading", path, e),
            })
    }

    fn open_version_range(
        &self,
        path: &str,
        version_id: &str,
        range: std::ops::Range<u64>,
    ) -> Result<(Box<dyn Read + Send>, u64)> {
        if range.is_empty() {
            let whole = io::Cursor::new(self.get_version(path, version_id)?);
            return super::range_of(Box::new(whole), path, range);
        }
        let (stream, size) =
            stream::RemoteStream::open(self, path, Some(version_id.to_string()), range)?;
        Ok((Box::new(stream), size))
    }
}

/// Random access to one remote object by range reads, with a read-ahead that grows while
/// reads are sequential (few requests for whole-pack reads, small ones for single blobs).
struct RemoteReader {
    backend: RemoteBackend,
    path: String,
    size: u64,
    pos: u64,
    buf_start: u64,
    buf: Vec<u8>,
    read_ahead: u64,
}

impl Read for RemoteReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        let missed = self.pos < self.buf_start || self.pos >= buf_end;
        if missed && out.len() as u64 >= FIRST_READ && self.size > WHOLE_READ {
            // A caller that knows what it needs (a restore's span of a pack) gets exactly that,
            // in one request, and nothing past it is read ahead or kept.
            // The response body is copied once, into `out`.
            let end = (self.pos + out.len() as u64).min(self.size);
            let n = self
                .backend
                .read_range_into(&self.path, self.pos..end, out)
                .map_err(io::Error::other)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended early", self.path),
                ));
            }
            self.pos += n as u64;
            return Ok(n);
        }
        if missed {
            // Reads that go on forward (sequentially, or past a short gap such as frames a
            // restore does not need) keep growing the read-ahead; others start small again.
            self.read_ahead = if self.pos >= buf_end && self.pos - buf_end <= self.read_ahead {
                (self.read_ahead * 2).min(MAX_READ_AHEAD)
            } else {
                FIRST_READ
            };
            let want = (out.len() as u64).max(self.read_ahead);
            let (start, end) = if self.size <= WHOLE_READ {
                (0, self.size)
            } else {
                (self.pos, (self.pos + want).min(self.size))
            };
            let (bytes, _) = self
                .backend
                .read_range(&self.path, start..end)
                .map_err(io::Error::other)?;
            if start + (bytes.len() as u64) <= self.pos {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended early", self.path),
                ));
            }
            self.buf_start = start;
            self.buf = bytes;
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RemoteReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before start of object")
        })?;
        Ok(self.pos)
    }
}
