//! Which HTTP proxy a request goes through, and errors that name it.
//!
//! The proxy is chosen as reqwest chooses it, by the same matcher (hyper-util's, which reqwest
//! uses): object_store's `proxy_url`/`proxy_excludes` (`AWS_PROXY_URL`, `AWS_PROXY_EXCLUDES`)
//! when set, otherwise the environment as curl and the AWS tools read it — `HTTPS_PROXY` for
//! https endpoints, `HTTP_PROXY` for http ones, `ALL_PROXY` for either, each upper case first,
//! then lower case, with `NO_PROXY`/`no_proxy` naming the hosts reached directly. Loopback
//! addresses are not exempt unless `NO_PROXY` names them.
//!
//! A failure through a proxy names it by its URL without credentials, and the setting to fix.
//!
//! A request forwarded through a proxy (to an http endpoint; https goes through a `CONNECT`
//! tunnel) asks for its connection to be closed after the answer: some proxies (tinyproxy)
//! close it after each answer without saying so, and a request sent on it in the meantime is
//! lost until the stall timeout.

use hyper_util::client::proxy::matcher::Matcher;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::{ClientConfigKey, ClientOptions};

/// The proxy settings of one client.
pub(super) struct Proxies {
    matcher: Matcher,
    /// Whether the proxy came from object_store's options rather than the environment.
    configured: bool,
}

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The matcher's own Debug leaves credentials out.
        f.debug_struct("Proxies")
            .field("matcher", &self.matcher)
            .finish()
    }
}

impl Proxies {
    /// What a reqwest client built from `o` by [`super::reqwest_client`] proxies through.
    pub(super) fn new(o: &ClientOptions) -> Proxies {
        match o.get_config_value(&ClientConfigKey::ProxyUrl) {
            Some(url) => Proxies {
                matcher: Matcher::builder()
                    .all(url)
                    .no(o
                        .get_config_value(&ClientConfigKey::ProxyExcludes)
                        .unwrap_or_default())
                    .build(),
                configured: true,
            },
            None => Proxies {
                matcher: Matcher::from_system(),
                configured: false,
            },
        }
    }

    /// The proxy a request for `uri` goes through, if any.
    pub(super) fn route(&self, uri: &http::Uri) -> Option<Route> {
        let proxy = self.matcher.intercept(uri)?;
        let at = proxy.uri();
        let (given_by, excluded_by) = match self.configured {
            true => ("AWS_PROXY_URL", "AWS_PROXY_EXCLUDES"),
            false => (env_source(uri.scheme_str() == Some("https")), "NO_PROXY"),
        };
        Some(Route {
            proxy: format!(
                "{}://{}",
                at.scheme_str().unwrap_or("http"),
                at.authority().map_or("", |a| a.as_str())
            ),
            given_by,
            excluded_by,
            credentials: proxy.basic_auth().is_some() || proxy.raw_auth().is_some(),
            tunnel: uri.scheme_str() == Some("https"),
        })
    }
}

/// The variable that named the proxy for http or https requests (the first set, in the
/// matcher's order).
fn env_source(https: bool) -> &'static str {
    let names: [&'static str; 4] = match https {
        true => ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
        false => ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
    };
    names
        .into_iter()
        .find(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
        .unwrap_or(names[0])
}

/// The proxy of one request.
#[derive(Debug, Clone)]
pub(super) struct Route {
    /// `scheme://host:port`, never with credentials.
    proxy: String,
    /// The setting that named the proxy.
    given_by: &'static str,
    /// The setting that exempts hosts from it.
    excluded_by: &'static str,
    /// Whether credentials are sent to it.
    credentials: bool,
    /// Whether the request goes through a `CONNECT` tunnel (https) rather than being
    /// forwarded (http).
    tunnel: bool,
}

/// A failure at or through a proxy.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ProxyError(String);

impl Route {
    fn error(&self, kind: HttpErrorKind, message: String) -> HttpError {
        HttpError::new(kind, ProxyError(message))
    }

    /// Whether the request is forwarded by the proxy (so its connection must not be reused)
    /// rather than tunnelled.
    pub(super) fn forwarded(&self) -> bool {
        !self.tunnel
    }

    /// The proxy answered `status` where a forwarded request's answer was due: an error if it
    /// is the proxy refusing the credentials (not retried: the same credentials would be
    /// refused again).
    pub(super) fn check_answer(&self, status: http::StatusCode) -> Result<(), HttpError> {
        let code = status.as_u16();
        if self.tunnel || !(code == 407 || code == 401 && self.credentials) {
            return Ok(());
        }
        Err(self.error(HttpErrorKind::Unknown, self.refused_credentials(status)))
    }

    fn refused_credentials(&self, status: impl std::fmt::Display) -> String {
        let (proxy, var) = (&self.proxy, self.given_by);
        let which = match self.credentials {
            true => "correct the user and password in",
            false => "give the proxy's user and password in",
        };
        format!(
            "the proxy {proxy} refused the credentials ({status}): {which} {var} (http://user:password@host:port)"
        )
    }

    /// A request that could not be sent: connecting to the proxy failed, or it refused the
    /// tunnel. Connection failures stay retried (a proxy restarting is an outage like a server
    /// restarting); refused credentials are not.
    pub(super) fn send_failed(&self, e: &reqwest::Error) -> Option<HttpError> {
        if !e.is_connect() {
            return None;
        }
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let cause = cause.to_string();
        let (proxy, var, no) = (&self.proxy, self.given_by, self.excluded_by);
        // hyper-util's tunnel errors are not public: recognised by their text.
        Some(if cause.contains("proxy authorization required") {
            let status = "407 Proxy Authentication Required";
            self.error(HttpErrorKind::Unknown, self.refused_credentials(status))
        } else if cause.starts_with("tunnel error") {
            self.error(HttpErrorKind::Connect, format!(
                "the proxy {proxy} did not open a tunnel (CONNECT) to the endpoint ({cause}): it refused it (credentials, a port it does not allow) or could not reach the endpoint; check {var} and the proxy's log, or name the endpoint's host in {no} to reach it without the proxy"
            ))
        } else {
            self.error(HttpErrorKind::Connect, format!(
                "cannot connect to the proxy {proxy} ({cause}): check {var}, or name the endpoint's host in {no} to reach it without the proxy"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(proxy: &str, excludes: &str, uri: &str) -> Option<Route> {
        let o = ClientOptions::new()
            .with_proxy_url(proxy)
            .with_proxy_excludes(excludes);
        Proxies::new(&o).route(&uri.parse().expect("uri"))
    }

    #[test]
    fn a_route_names_the_proxy_without_credentials() {
        let r = route("http://u:secret@proxy:3128", "", "http://s3.local/b/k").expect("proxied");
        assert_eq!(r.proxy, "http://proxy:3128");
        assert!(r.credentials && !r.tunnel);
        assert!(!format!("{r:?}").contains("secret"));
        let e = r
            .check_answer(http::StatusCode::UNAUTHORIZED)
            .expect_err("refused");
        assert_eq!(e.kind(), HttpErrorKind::Unknown);
        let text = e.to_string();
        assert!(text.contains("the proxy http://proxy:3128 refused the credentials (401"));
        assert!(text.contains("AWS_PROXY_URL") && !text.contains("secret"));
        assert!(r.check_answer(http::StatusCode::FORBIDDEN).is_ok());
    }

    #[test]
    fn excluded_hosts_and_tunnels_are_told_apart() {
        assert!(route("http://proxy:3128", "s3.local", "http://s3.local/b").is_none());
        let r = route("http://proxy:3128", "other", "https://s3.local/b").expect("proxied");
        assert!(r.tunnel && !r.credentials);
        // Through a tunnel the answers are the server's, never the proxy's.
        assert!(r
            .check_answer(http::StatusCode::PROXY_AUTHENTICATION_REQUIRED)
            .is_ok());
        // Without credentials, a 401 is the server's too.
        let r = route("http://proxy:3128", "", "http://s3.local/b").expect("proxied");
        assert!(r.check_answer(http::StatusCode::UNAUTHORIZED).is_ok());
        assert!(r
            .check_answer(http::StatusCode::PROXY_AUTHENTICATION_REQUIRED)
            .is_err());
    }
}
