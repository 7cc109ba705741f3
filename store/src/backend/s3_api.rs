//! S3 requests object_store does not make: the bucket's Object Lock configuration, object
//! retention (read, set), uploads that carry Object Lock headers, and object versions (list,
//! read one). They are signed with object_store's own SigV4 signer and credential provider
//! (so every credential source cairn resolves works here too) and sent through the same HTTP
//! transport with the same client options; failed requests (5xx, connection errors, timeouts) are
//! retried as often as object_store's own, with backoff. A retried create that finds its
//! name taken may follow a lost answer to a create that succeeded: callers check.

use super::s3_config::S3Config;
use super::transport::Connector;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody};
use object_store::ClientOptions;
use std::sync::OnceLock;

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody, not even the account root, can shorten or remove the retention.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// The name S3 uses.
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }

    /// Parse S3's (or cairn's lower-case) name.
    pub fn parse(s: &str) -> Option<LockMode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "COMPLIANCE" => Some(LockMode::Compliance),
            "GOVERNANCE" => Some(LockMode::Governance),
            _ => None,
        }
    }
}

/// The retention of one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Mode.
    pub mode: LockMode,
    /// The version cannot be deleted before this.
    pub until: DateTime<Utc>,
}

/// The retention every object written gets: `days` from its write, in `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLock {
    /// Mode.
    pub mode: LockMode,
    /// Days of protection from the write.
    pub days: u32,
}

impl WriteLock {
    /// The retention of an object written (or extended) now.
    pub fn from_now(&self) -> Retention {
        Retention {
            mode: self.mode,
            until: Utc::now() + chrono::Duration::days(i64::from(self.days)),
        }
    }
}

/// One version of an object (or a delete marker), from ListObjectVersions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Key relative to the repository prefix.
    pub path: String,
    /// Version id.
    pub version_id: String,
    /// When this version was written.
    pub last_modified: DateTime<Utc>,
    /// Size in bytes (0 for delete markers).
    pub size: u64,
    /// A delete marker, not an object.
    pub delete_marker: bool,
}

/// A failed request: HTTP status (if any answer came) and the server's code and message.
#[derive(Debug)]
pub struct ApiError {
    /// Status of the answer; None if no answer came.
    pub status: Option<u16>,
    /// S3 error code (`AccessDenied`, `PreconditionFailed`, …) or the transport error.
    pub code: String,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s} {}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// Signed requests to one bucket, below the repository's prefix.
pub struct S3Api {
    /// Made at the first request: most commands never send one, and making a client loads
    /// the system's certificates.
    client: OnceLock<HttpClient>,
    options: ClientOptions,
    connector: Connector,
    credentials: AwsCredentialProvider,
    region: String,
    /// `scheme://host[:port]/bucket` (path style) or `https://bucket.s3.region.amazonaws.com`.
    base: String,
    /// The repository prefix, empty or ending with `/`.
    prefix: String,
    /// Retries of a request that failed with a 5xx answer or a transport error.
    retries: usize,
}

/// Percent-encode a key for a URL path (`/` kept).
fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a query value.
fn encode_value(v: &str) -> String {
    encode_key(v).replace('/', "%2F")
}

/// The text of every `<tag>…</tag>` in `xml`, entities decoded.
fn xml_all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let body = &rest[at + open.len()..];
        let Some(len) = body.find(&close) else { break };
        out.push(&body[..len]);
        rest = &body[len + close.len()..];
    }
    out
}

fn xml_one(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).first().map(|s| unescape(s))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `x-amz-object-lock-retain-until-date` and the retention XML's date format.
pub fn s3_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl S3Api {
    /// Requests to `bucket` below `prefix` with the resolved settings and `credentials` (the
    /// object_store client's own provider).
    pub fn new(
        cfg: &S3Config,
        bucket: &str,
        prefix: &str,
        credentials: AwsCredentialProvider,
        client: &ClientOptions,
        connector: Connector,
        retries: usize,
    ) -> S3Api {
        let base = match &cfg.endpoint {
            Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{}.amazonaws.com", cfg.region),
        };
        S3Api {
            client: OnceLock::new(),
            options: client.clone().with_allow_http(cfg.allow_http),
            connector,
            credentials,
            region: cfg.region.clone(),
            base,
            prefix: prefix.to_string(),
            retries,
        }
    }

    /// One signed request; `path` is relative to the repository (None: the bucket), `query`
    /// without `?`. Returns the status, headers and body of a 2xx answer.
    async fn send(
        &self,
        method: http::Method,
        path: Option<&str>,
        query: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> ApiResult<(http::HeaderMap, Bytes)> {
        let mut url = match path {
            Some(p) => format!(
                "{}/{}",
                self.base,
                encode_key(&format!("{}{p}", self.prefix))
            ),
            None => format!("{}/", self.base),
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let transport = |code: &str, e: String| ApiError {
            status: None,
            code: code.to_string(),
            message: e,
        };
        let mut last = None;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(super::remote::backoff(attempt - 1)).await;
            }
            let cred = self
                .credentials
                .get_credential()
                .await
                .map_err(|e| transport("Credentials", e.to_string()))?;
            let mut b = http::Request::builder().method(method.clone()).uri(&url);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            let mut req = b
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| transport("Request", e.to_string()))?;
            AwsAuthorizer::new(&cred, "s3", &self.region)
                .try_authorize(&mut req, None)
                .map_err(|e| transport("Signing", e.to_string()))?;
            let client = match self.client.get() {
                Some(c) => c,
                None => {
                    let made = self
                        .connector
                        .connect(&self.options)
                        .map_err(|e| transport("Client", e.to_string()))?;
                    self.client.get_or_init(|| made)
                }
            };
            let resp = match client.execute(req).await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(transport("Connection", e.to_string()));
                    continue;
                }
            };
            let status = resp.status();
            let (parts, body) = resp.into_parts();
            let bytes = match body.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = Some(transport("Connection", e.to_string()));
                    continue;
                }
            };
            if status.is_success() {
                return Ok((parts.headers, bytes));
            }
            let text = String::from_utf8_lossy(&bytes);
            let err = ApiError {
                status: Some(status.as_u16()),
                code: xml_one(&text, "Code").unwrap_or_else(|| status.to_string()),
                message: xml_one(&text, "Message").unwrap_or_default(),
            };
            if !status.is_server_error() {
                return Err(err);
            }
            last = Some(err);
        }
        Err(last.expect("at least one attempt"))
    }

    /// The bucket's Object Lock: None if not enabled.
    pub async fn bucket_lock(&self) -> ApiResult<Option<String>> {
        match self
            .send(http::Method::GET, None, "object-lock=", &[], Bytes::new())
            .await
        {
            Ok((_, body)) => {
                let text = String::from_utf8_lossy(&body);
                Ok(
                    (xml_one(&text, "ObjectLockEnabled").as_deref() == Some("Enabled"))
                        .then(|| text.into_owned()),
                )
            }
            Err(e) if e.code == "ObjectLockConfigurationNotFoundError" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create `path` with `bytes` and `retention`, unless the name is taken (false then).
    pub async fn put_locked(
        &self,
        path: &str,
        bytes: Bytes,
        retention: Retention,
    ) -> ApiResult<bool> {
        use base64::Engine;
        use md5::Digest;
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&bytes));
        let headers = [
            ("if-none-match", "*".to_string()),
            ("content-md5", md5),
            ("x-amz-object-lock-mode", retention.mode.as_s3().to_string()),
            (
                "x-amz-object-lock-retain-until-date",
                s3_time(retention.until),
            ),
        ];
        match self
            .send(http::Method::PUT, Some(path), "", &headers, bytes)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(412) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The retention of the current version of `path` (None: it has none), from the
    /// `x-amz-object-lock-*` headers of a HEAD (AWS sends them to callers allowed
    /// `s3:GetObjectRetention`; moto has no GetObjectRetention).
    pub async fn retention(&self, path: &str) -> ApiResult<Option<Retention>> {
        let (headers, _) = self
            .send(http::Method::HEAD, Some(path), "", &[], Bytes::new())
            .await?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mode = header("x-amz-object-lock-mode").and_then(|m| LockMode::parse(&m));
        let until = header("x-amz-object-lock-retain-until-date").and_then(|t| parse_time(&t));
        Ok(mode
            .zip(until)
            .map(|(mode, until)| Retention { mode, until }))
    }

    /// Set the retention of the current version of `path` (S3 allows only extending it in
    /// compliance mode).
    pub async fn set_retention(&self, path: &str, retention: Retention) -> ApiResult<()> {
        use base64::Engine;
        use md5::Digest;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode.as_s3(),
            s3_time(retention.until)
        );
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
        self.send(
            http::Method::PUT,
            Some(path),
            "retention=",
            &[("content-md5", md5)],
            Bytes::from(body),
        )
        .await
        .map(|_| ())
    }

    /// Every version and delete marker below the repository directory `dir` (`""`: the whole
    /// repository), each key's versions newest first, as S3 lists them.
    pub async fn versions(&self, dir: &str) -> ApiResult<Vec<ObjectVersion>> {
        let dir = dir.trim_matches('/');
        let prefix = if dir.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{dir}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = format!("prefix={}&versions=", encode_value(&prefix));
            if let Some((k, v)) = &marker {
                query = format!(
                    "key-marker={}&prefix={}&version-id-marker={}&versions=",
                    encode_value(k),
                    encode_value(&prefix),
                    encode_value(v)
                );
            }
            let (_, body) = self
                .send(http::Method::GET, None, &query, &[], Bytes::new())
                .await?;
            let text = String::from_utf8_lossy(&body);
            for (tag, delete_marker) in [("Version", false), ("DeleteMarker", true)] {
                for item in xml_all(&text, tag) {
                    let key = xml_one(item, "Key").unwrap_or_default();
                    let Some(path) = key.strip_prefix(&self.prefix) else {
                        continue;
                    };
                    out.push(ObjectVersion {
                        path: path.to_string(),
                        version_id: xml_one(item, "VersionId").unwrap_or_default(),
                        last_modified: xml_one(item, "LastModified")
                            .and_then(|t| parse_time(&t))
                            .unwrap_or_default(),
                        size: xml_one(item, "Size")
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                        delete_marker,
                    });
                }
            }
            if xml_one(&text, "IsTruncated").as_deref() != Some("true") {
                break;
            }
            match (
                xml_one(&text, "NextKeyMarker"),
                xml_one(&text, "NextVersionIdMarker"),
            ) {
                (Some(k), Some(v)) => marker = Some((k, v)),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Read version `version_id` of `path` (or a range of it): its bytes.
    pub async fn get_version(
        &self,
        path: &str,
        version_id: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> ApiResult<Bytes> {
        let headers: Vec<(&str, String)> = range
            .map(|r| {
                (
                    "range",
                    format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
                )
            })
            .into_iter()
            .collect();
        self.send(
            http::Method::GET,
            Some(path),
            &format!("versionId={}", encode_value(version_id)),
            &headers,
            Bytes::new(),
        )
        .await
        .map(|(_, b)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_fields_and_keys() {
        let xml = "<R><Version><Key>a&amp;b</Key><Size>3</Size></Version><Version><Key>c</Key></Version></R>";
        let v = xml_all(xml, "Version");
        assert_eq!(v.len(), 2);
        assert_eq!(xml_one(v[0], "Key").as_deref(), Some("a&b"));
        assert_eq!(encode_key("p/a b+c"), "p/a%20b%2Bc");
        assert_eq!(encode_value("p/x"), "p%2Fx");
        assert_eq!(LockMode::parse("compliance"), Some(LockMode::Compliance));
        let t = parse_time("2026-12-05T17:00:00.000Z").unwrap();
        assert_eq!(s3_time(t), "2026-12-05T17:00:00Z");
    }
}
