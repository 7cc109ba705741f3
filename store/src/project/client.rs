//! The connection to an API server: credentials from a kubeconfig or the pod's service account,
//! and every request retried in one place (429 and 5xx with backoff, honouring Retry-After).

use super::{Error, Result};
use http::{Method, Request, StatusCode};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the cluster and its credentials come from.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// A kubeconfig file; else `KUBECONFIG`, `~/.kube/config`, then the in-cluster service
    /// account.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    pub context: Option<String>,
}

/// Attempts per request before an overloaded or failing server is reported.
const ATTEMPTS: u32 = 8;
/// The longest wait between attempts, whatever Retry-After asks.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The largest answer read (a page of objects, one object): larger ones are refused, and a
/// list asks for smaller pages. Kubernetes objects are at most ~1.5 MiB (etcd's request limit).
pub const MAX_ANSWER: usize = 16 << 20;
/// The most memory an answer may be estimated to take parsed ([`parsed_cost`]). Parsed JSON
/// can take far more than its text: `0,` two bytes, its value 32 (and twice that while the
/// array grows); `{"":` five bytes, its map node some 640. A bound on bytes alone let 16 MiB
/// of answer take 280 MB, and 2.6 MB of nested objects 313 MB. A page of real objects
/// (at most ~1.5 MiB each) is estimated at about ten times its size; one over the bound is
/// asked for in halves.
pub const MAX_PARSED: usize = 64 << 20;

/// An upper estimate of the memory `body` takes parsed into `serde_json::Value`s: its bytes
/// (string contents), 640 for each object (a map node), 64 for each array and each element or
/// entry after a comma (a value, and its array growing), and 32 for each string (its
/// allocation). Strings are skipped as JSON skips them (`\"` does not end one).
fn parsed_cost(body: &[u8]) -> usize {
    let (mut cost, mut in_string, mut escaped) = (body.len() + 64, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            cost += match b {
                b'"' => {
                    in_string = true;
                    32
                }
                b'{' => 640,
                b',' | b'[' => 64,
                _ => 0,
            };
        }
    }
    cost
}

/// An answer from the server.
pub struct Answer {
    pub status: StatusCode,
    pub body: bytes::Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self, what: &str) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| Error::invalid(what, e))
    }

    /// The `message` of a Kubernetes Status body, or the body itself.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }
}

/// Why `context` cannot be used from `kc`: it names none of its contexts (listed).
fn missing_context(kc: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let context = context?;
    if kc.contexts.iter().any(|n| n.name == context) {
        return None;
    }
    let names: Vec<&str> = kc.contexts.iter().map(|n| n.name.as_str()).collect();
    Some(format!(
        "no context {context:?} in the kubeconfig; it has: {} (`kubectl config get-contexts`)",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// A blocking client for one API server.
pub struct Kube {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    server: String,
    requests: AtomicU64,
}

impl Kube {
    /// Connect as `c` describes (no request is made yet).
    pub fn connect(c: &Connection) -> Result<Kube> {
        // rustls has both providers compiled in (object_store brings aws-lc-rs), so it cannot
        // pick one by itself: kube's connections use ring. Fails only if one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("starting the I/O runtime: {e}")))?;
        let options = KubeConfigOptions {
            context: c.context.clone(),
            ..Default::default()
        };
        let mut config = rt.block_on(async {
            if let Some(path) = &c.kubeconfig {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                if let Some(why) = missing_context(&kc, c.context.as_deref()) {
                    return Err(Error::Config(format!("{}: {why}", path.display())));
                }
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
            } else {
                match kube::Config::from_kubeconfig(&options).await {
                    Ok(config) => Ok(config),
                    Err(kubeconfig) if c.context.is_none() => kube::Config::incluster().map_err(
                        |incluster| {
                            Error::Config(format!(
                            "no kubeconfig ({kubeconfig}; pass --kubeconfig or set KUBECONFIG) and not in a pod ({incluster})"
                        ))
                        },
                    ),
                    Err(e) => Err(Error::Config(
                        Kubeconfig::read()
                            .ok()
                            .and_then(|kc| missing_context(&kc, c.context.as_deref()))
                            .unwrap_or_else(|| e.to_string()),
                    )),
                }
            }
        })?;
        // Retries happen below, where they are counted and Retry-After is honoured for every
        // 5xx too.
        config.default_retry = false;
        let server = config.cluster_url.to_string();
        let client = {
            let _guard = rt.enter();
            kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?
        };
        Ok(Kube {
            rt,
            client,
            server,
            requests: AtomicU64::new(0),
        })
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GET `path` (with its query).
    pub fn get(&self, path: &str) -> Result<Answer> {
        self.send(Method::GET, path, None)
    }

    /// Send a request; 429 and 5xx answers and transport errors are retried with exponential
    /// backoff (or the server's Retry-After), other answers are returned as they are.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer> {
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::ACCEPT, "application/json");
            let payload = match &body {
                Some((content_type, bytes)) => {
                    req = req.header(http::header::CONTENT_TYPE, *content_type);
                    Body::from(bytes.clone())
                }
                None => Body::empty(),
            };
            let fail = |why: String| Error::Transport {
                method: method.to_string(),
                server: self.server.trim_end_matches('/').to_string(),
                path: path.to_string(),
                attempts: attempt,
                why,
            };
            let req = req.body(payload).map_err(|e| fail(e.to_string()))?;
            let outcome = self.rt.block_on(async {
                let res = self.client.send(req).await?;
                let status = res.status();
                let retry_after = res
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                // Read up to the bound: a hostile server's answer must not take the memory.
                let mut body = res.into_body();
                let mut buf = bytes::BytesMut::new();
                while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                    if let Ok(data) = frame?.into_data() {
                        if buf.len() + data.len() > MAX_ANSWER {
                            return Ok((status, retry_after, None));
                        }
                        buf.extend_from_slice(&data);
                    }
                }
                if parsed_cost(&buf) > MAX_PARSED {
                    return Ok((status, retry_after, None));
                }
                Ok::<_, kube::Error>((status, retry_after, Some(buf.freeze())))
            });
            let outcome = match outcome {
                Ok((_, _, None)) => {
                    return Err(Error::TooLarge {
                        method: method.to_string(),
                        path: path.to_string(),
                    })
                }
                Ok((status, retry_after, Some(body))) => Ok((status, retry_after, body)),
                Err(e) => Err(e),
            };
            let wait = match outcome {
                Ok((status, retry_after, body))
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() =>
                {
                    if attempt >= ATTEMPTS {
                        return Ok(Answer { status, body });
                    }
                    let wait = retry_after.unwrap_or(backoff);
                    tracing::info!(
                        target: crate::backend::RETRY_LOG,
                        "{method} {path}: {status}; retrying in {:.1}s (attempt {attempt} of {ATTEMPTS}{})",
                        wait.min(MAX_WAIT).as_secs_f64(),
                        if wait > MAX_WAIT { format!("; the server asked for {}s", wait.as_secs()) } else { String::new() }
                    );
                    wait
                }
                Ok((status, _, body)) => return Ok(Answer { status, body }),
                Err(e) if attempt >= ATTEMPTS => return Err(fail(crate::error::with_sources(&e))),
                Err(e) => {
                    tracing::info!(
                        target: crate::backend::RETRY_LOG,
                        "{method} {}{path}: {}; retrying in {:.1}s (attempt {attempt} of {ATTEMPTS})",
                        self.server.trim_end_matches('/'),
                        crate::error::with_sources(&e),
                        backoff.min(MAX_WAIT).as_secs_f64()
                    );
                    backoff
                }
            };
            std::thread::sleep(wait.min(MAX_WAIT));
            backoff = (backoff * 2).min(MAX_WAIT);
        }
    }

    /// GET `path` and decode a successful JSON answer; any other status is an error.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let a = self.get(path)?;
        if !a.status.is_success() {
            return Err(status_error("GET", path, &a));
        }
        a.json(path)
    }
}

/// The error for an unexpected answer.
pub fn status_error(method: &str, path: &str, a: &Answer) -> Error {
    Error::Status {
        method: method.to_string(),
        path: path.to_string(),
        status: a.status.as_u16(),
        message: a.message(),
    }
}

#[cfg(test)]
mod tests {
    use super::parsed_cost;

    #[test]
    fn the_estimate_skips_strings_and_weighs_objects() {
        assert_eq!(parsed_cost(b"0"), 65);
        assert_eq!(parsed_cost(b"[0,1]"), 5 + 64 + 128);
        // Only the first quote of each string counts; brackets inside strings do not.
        assert_eq!(parsed_cost(br#"{"a":"x,[{"}"#), 12 + 64 + 640 + 2 * 32);
        // An escaped quote does not end the string; an escaped backslash does not escape it.
        assert_eq!(
            parsed_cost(br#"["a\",b", "c\\", 1]"#),
            19 + 64 + 64 + 2 * 64 + 2 * 32
        );
        // Nested objects cost what their map nodes take, not what their text takes.
        let nested = format!("{}0{}", r#"{"":"#.repeat(100), "}".repeat(100));
        assert!(parsed_cost(nested.as_bytes()) > 100 * 600);
    }
}
