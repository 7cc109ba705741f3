//! cairn's HTTP transport for object stores, used by object_store's S3/GCS/Azure clients and by
//! [`super::s3_api::S3Api`]: object_store's [`ClientOptions`] applied to a reqwest client, with
//! a timeout on progress instead of on whole requests (like restic's stuck-request detection
//! and the AWS SDKs' stalled-stream protection). A request fails when no bytes have moved for
//! the timeout; a slow but steady upload or download never times out.
//!
//! * The request body is handed to the connection in slices of [`SLICE`] bytes (views of the
//!   caller's buffers, no copies); each slice taken is progress. The connection takes one only
//!   when its buffers have room, that is as the link drains them.
//! * Once the whole body is taken, the answer's head may take the timeout plus as long as the
//!   request took until then: what is still in socket buffers drains at the link's pace.
//! * Each piece of the answer's body received is progress.
//!
//! There is no ceiling on a request's total duration: a transfer that keeps moving is let
//! finish (object_store stops retrying a request after its retry timeout).
//!
//! A stalled request fails with [`HttpErrorKind::Timeout`], which object_store retries when the
//! request is idempotent; its message starts with [`STALLED`].
//!
//! Requests go through an HTTP proxy as reqwest chooses it (see [`proxy`]); failures at the
//! proxy name it.

mod proxy;

use async_trait::async_trait;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Bytes of a request body handed to the connection at a time.
const SLICE: usize = 64 << 10;

/// How a stall error's message begins.
pub const STALLED: &str = "no bytes moved for";

/// Makes object_store's HTTP clients: reqwest clients with `options` and a timeout on progress.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Longest time without progress.
    timeout: Duration,
    /// Root certificates trusted besides (or, with `no_system_certificates`, instead of) the
    /// system's.
    roots: Vec<reqwest::Certificate>,
}

impl Connector {
    /// Requests fail after `timeout` without progress; `roots` are the extra trusted CAs.
    pub fn new(timeout: Duration, roots: Vec<reqwest::Certificate>) -> Connector {
        Connector { timeout, roots }
    }
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client =
            reqwest_client(options, &self.roots).map_err(|e| object_store::Error::Generic {
                store: "HTTP client",
                source: e,
            })?;
        Ok(HttpClient::new(Service {
            client,
            timeout: self.timeout,
            proxies: proxy::Proxies::new(options),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A reqwest client with what object_store's own would get from `o` (see
/// `ClientOptions::client` in object_store), except the whole-request timeout.
fn reqwest_client(
    o: &ClientOptions,
    roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, BoxError> {
    use ClientConfigKey as K;
    let get = |k: K| o.get_config_value(&k);
    let on = |k: K| {
        get(k).is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "1" | "true" | "on" | "yes" | "y"
            )
        })
    };
    let duration = |k: K| -> Result<Option<Duration>, BoxError> {
        Ok(get(k).map(|v| humantime::parse_duration(&v)).transpose()?)
    };
    let mut b = reqwest::Client::builder()
        .user_agent(get(K::UserAgent).unwrap_or_else(|| {
            concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")).into()
        }))
        // No compression: it would hide objects' sizes (Content-Length).
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate()
        .https_only(!on(K::AllowHttp));
    if let Some(url) = get(K::ProxyUrl) {
        let mut proxy = reqwest::Proxy::all(url)?;
        if let Some(pem) = get(K::ProxyCaCertificate) {
            b = b.tls_certs_merge([reqwest::Certificate::from_pem(pem.as_bytes())?]);
        }
        if let Some(excludes) = get(K::ProxyExcludes) {
            proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&excludes));
        }
        b = b.proxy(proxy);
    }
    b = if on(K::NoSystemCertificates) {
        b.tls_certs_only(roots.iter().cloned())
    } else {
        b.tls_certs_merge(roots.iter().cloned())
    };
    if let Some(d) = duration(K::ConnectTimeout)? {
        b = b.connect_timeout(d);
    }
    if let Some(d) = duration(K::ReadTimeout)? {
        b = b.read_timeout(d);
    }
    if let Some(d) = duration(K::PoolIdleTimeout)? {
        b = b.pool_idle_timeout(d);
    }
    if let Some(n) = get(K::PoolMaxIdlePerHost) {
        b = b.pool_max_idle_per_host(n.parse()?);
    }
    if let Some(d) = duration(K::Http2KeepAliveInterval)? {
        b = b.http2_keep_alive_interval(d);
    }
    if let Some(d) = duration(K::Http2KeepAliveTimeout)? {
        b = b.http2_keep_alive_timeout(d);
    }
    if on(K::Http2KeepAliveWhileIdle) {
        b = b.http2_keep_alive_while_idle(true);
    }
    if let Some(n) = get(K::Http2MaxFrameSize) {
        b = b.http2_max_frame_size(Some(n.parse()?));
    }
    if on(K::Http1Only) {
        b = b.http1_only();
    }
    if on(K::Http2Only) {
        b = b.http2_prior_knowledge();
    }
    if on(K::AllowInvalidCertificates) {
        b = b.danger_accept_invalid_certs(true);
    }
    if on(K::RandomizeAddresses) {
        b = b.dns_resolver(Arc::new(ShuffleResolver));
    }
    Ok(b.build()?)
}

/// Resolves names as the system does, the addresses in random order (spreads connections over
/// a service's servers, as object_store's own client does by default).
struct ShuffleResolver;

impl reqwest::dns::Resolve for ShuffleResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = tokio::task::spawn_blocking(move || {
                use rand::seq::SliceRandom;
                use std::net::ToSocketAddrs;
                let mut addrs: Vec<_> = (host.as_str(), 0).to_socket_addrs()?.collect();
                addrs.shuffle(&mut rand::thread_rng());
                Ok::<_, std::io::Error>(addrs)
            })
            .await??;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends requests with a reqwest client, failing those that stall.
#[derive(Debug)]
struct Service {
    client: reqwest::Client,
    timeout: Duration,
    /// The proxies `client` sends through, to name them in errors.
    proxies: proxy::Proxies,
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let route = self.proxies.route(&parts.uri);
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut request = reqwest::Request::new(parts.method, url);
        *request.headers_mut() = parts.headers;
        if route.as_ref().is_some_and(proxy::Route::forwarded) {
            request.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        let watch = Arc::new(Watch::new(self.timeout));
        *request.body_mut() = Some(if body.content_length() == 0 {
            watch.sent.store(true, Ordering::Relaxed);
            reqwest::Body::from(Bytes::new())
        } else {
            reqwest::Body::wrap(Sliced {
                inner: body,
                piece: Bytes::new(),
                watch: Arc::clone(&watch),
            })
        });
        let response = match watch.bound(self.client.execute(request)).await? {
            Ok(response) => response,
            Err(e) => {
                let at_proxy = route.as_ref().and_then(|r| r.send_failed(&e));
                return Err(at_proxy.unwrap_or_else(|| classify(e)));
            }
        };
        if let Some(route) = &route {
            route.check_answer(response.status())?;
        }
        let (parts, body) = http::Response::from(response).into_parts();
        let body = Received {
            inner: body,
            timeout: self.timeout,
            last: Instant::now(),
            sleep: Box::pin(tokio::time::sleep(self.timeout)),
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// The progress of one request until its answer's head arrives.
struct Watch {
    start: Instant,
    timeout: Duration,
    /// When the last progress was made, in ms from `start`.
    last: AtomicU64,
    /// How long the body took to hand over (ms), once it was.
    grace: AtomicU64,
    /// Whether the whole body was handed over.
    sent: AtomicBool,
}

impl Watch {
    fn new(timeout: Duration) -> Watch {
        Watch {
            start: Instant::now(),
            timeout,
            last: AtomicU64::new(0),
            grace: AtomicU64::new(0),
            sent: AtomicBool::new(false),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Some bytes moved.
    fn touch(&self) {
        self.last.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// The whole body was handed over.
    fn body_sent(&self) {
        let now = self.elapsed_ms();
        self.last.store(now, Ordering::Relaxed);
        self.grace.store(now, Ordering::Relaxed);
        self.sent.store(true, Ordering::Relaxed);
    }

    /// When the request has stalled unless more progress is made.
    fn deadline(&self) -> Instant {
        let ms = self.last.load(Ordering::Relaxed) + self.grace.load(Ordering::Relaxed);
        self.start + Duration::from_millis(ms) + self.timeout
    }

    /// Await the answer's head while the request makes progress: the request's own result,
    /// or an error if it stalled.
    async fn bound(
        &self,
        answer: impl Future<Output = reqwest::Result<reqwest::Response>>,
    ) -> Result<reqwest::Result<reqwest::Response>, HttpError> {
        let mut answer = std::pin::pin!(answer);
        loop {
            match tokio::time::timeout_at(self.deadline(), &mut answer).await {
                Ok(r) => return Ok(r),
                Err(_) if Instant::now() >= self.deadline() => {
                    let during = match self.sent.load(Ordering::Relaxed) {
                        true => "waiting for the answer",
                        false => "sending the request",
                    };
                    return Err(stalled(self.timeout, during));
                }
                Err(_) => {}
            }
        }
    }
}

/// A request body handed over in slices of at most [`SLICE`] bytes, each noted as progress.
struct Sliced {
    inner: HttpRequestBody,
    /// What is left of the inner body's current frame.
    piece: Bytes,
    watch: Arc<Watch>,
}

impl Body for Sliced {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.piece.is_empty() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.piece = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                None => {
                    this.watch.body_sent();
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            }
        }
        let slice = this.piece.split_to(this.piece.len().min(SLICE));
        if this.is_end_stream() {
            this.watch.body_sent();
        } else {
            this.watch.touch();
        }
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.piece.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + self.piece.len() as u64);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + self.piece.len() as u64);
        }
        hint
    }
}

/// An answer's body that fails when nothing arrives for the timeout.
struct Received {
    inner: reqwest::Body,
    timeout: Duration,
    /// When the last piece arrived.
    last: Instant,
    /// Fires at `last + timeout` or earlier (re-armed when it fires early).
    sleep: Pin<Box<Sleep>>,
}

impl Body for Received {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.last = Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(classify(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => loop {
                ready!(this.sleep.as_mut().poll(cx));
                let deadline = this.last + this.timeout;
                if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(stalled(this.timeout, "receiving the answer"))));
                }
                this.sleep.as_mut().reset(deadline);
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// No bytes moved for the timeout.
#[derive(Debug, thiserror::Error)]
#[error("{STALLED} {} s while {during} (--s3-timeout)", timeout.as_secs_f32())]
struct Stalled {
    timeout: Duration,
    during: &'static str,
}

fn stalled(timeout: Duration, during: &'static str) -> HttpError {
    HttpError::new(HttpErrorKind::Timeout, Stalled { timeout, during })
}

/// A reqwest error as object_store classifies it (which decides whether it is retried).
fn classify(e: reqwest::Error) -> HttpError {
    let mut kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else {
        HttpErrorKind::Unknown
    };
    let mut source = e.source();
    while let (HttpErrorKind::Unknown, Some(s)) = (kind, source) {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_closed() || h.is_incomplete_message() || h.is_body_write_aborted() {
                kind = HttpErrorKind::Request;
            } else if h.is_timeout() {
                kind = HttpErrorKind::Timeout;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            kind = match io.kind() {
                K::TimedOut => HttpErrorKind::Timeout,
                K::ConnectionAborted | K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof => {
                    HttpErrorKind::Interrupted
                }
                _ => kind,
            };
        }
        source = s.source();
    }
    HttpError::new(kind, e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_handed_over_in_slices_of_its_own_buffer() {
        let bytes = Bytes::from(vec![7u8; 3 * SLICE + 100]);
        let watch = Arc::new(Watch::new(Duration::from_secs(30)));
        let mut body = Sliced {
            inner: HttpRequestBody::from(bytes.clone()),
            piece: Bytes::new(),
            watch: Arc::clone(&watch),
        };
        let mut at = 0;
        let mut lens = Vec::new();
        while !body.is_end_stream() {
            assert_eq!(body.size_hint().exact(), Some((bytes.len() - at) as u64));
            assert!(!watch.sent.load(Ordering::Relaxed));
            let frame = futures::executor::block_on(std::future::poll_fn(|cx| {
                Pin::new(&mut body).poll_frame(cx)
            }));
            let data = frame
                .expect("a frame")
                .expect("no error")
                .into_data()
                .expect("data");
            assert_eq!(data.as_ptr(), bytes[at..].as_ptr(), "a copy");
            at += data.len();
            lens.push(data.len());
        }
        assert_eq!(lens, [SLICE, SLICE, SLICE, 100]);
        assert!(watch.sent.load(Ordering::Relaxed));
    }

    #[test]
    fn a_stall_says_how_long_nothing_moved_and_is_retried_as_a_timeout() {
        let e = stalled(Duration::from_secs(30), "sending the request");
        assert_eq!(e.kind(), HttpErrorKind::Timeout);
        assert!(e
            .to_string()
            .contains("no bytes moved for 30 s while sending the request (--s3-timeout)"));
    }
}
