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
/// The most JSON values an answer may hold. Parsed, a value takes 32 bytes and more where its
/// text may take 2 (`0,`): a bound on bytes alone would let 16 MiB of answer take 280 MB.
/// Real objects (at most ~1.5 MiB each) hold far fewer; a page over it is asked for in halves.
pub const MAX_VALUES: usize = 1 << 19;

/// At least the number of JSON values in `body` (scalars, arrays, objects; keys not counted):
/// the commas and openings outside strings, plus one.
fn json_values(body: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (1, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
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
                if json_values(&buf) > MAX_VALUES {
                    return Ok((status, retry_after, None));
                }
                Ok::<_, kube::Error>((status, retry_after, Some(buf.freeze())))
            });
            let outcome = match outcome {
                Ok((_, _, None)) => {
                    return Err(Error::TooLarge {
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
    use super::json_values;

    #[test]
    fn values_are_counted_outside_strings() {
        assert_eq!(json_values(b"0"), 1);
        assert_eq!(json_values(b"[0,1,2]"), 4);
        assert_eq!(json_values(br#"{"a":[1,{"b":2}],"c":"x,[{"}"#), 6);
        // An escaped quote does not end the string; an escaped backslash does not escape it.
        assert_eq!(json_values(br#"["a\",b", "c\\", 1]"#), 4);
        let dense = format!("[{}0]", "0,".repeat(1000));
        assert_eq!(json_values(dense.as_bytes()), 1002);
    }
}
