//! Whether EC2 instance metadata answers: the AWS SDKs' last source of credentials, tried as
//! briefly as they try it (one attempt of one second by default) before cairn hands the
//! lookup to object_store, whose requests retry for minutes. Off an EC2 instance the answer
//! is "no credentials", at once, as the AWS CLI gives it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The default endpoint (IPv4).
pub(crate) const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// The session token request of IMDSv2.
const TOKEN: &str =
    "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n";
/// The credentials listing of IMDSv1.
const V1: &str = "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\n";

/// Ask `endpoint` (`http://HOST[:PORT]`) for a session token (IMDSv2), or with `v1_fallback`
/// then for its credentials listing (IMDSv1), `attempts` times, each request within
/// `timeout`. Ok when one answers 200; else why not.
pub(crate) fn answers(
    endpoint: &str,
    timeout: Duration,
    attempts: u32,
    v1_fallback: bool,
) -> Result<(), String> {
    let mut why = String::new();
    for _ in 0..attempts.max(1) {
        match ask(endpoint, TOKEN, timeout) {
            Ok(()) => return Ok(()),
            Err(e) => why = e,
        }
        if v1_fallback && ask(endpoint, V1, timeout).is_ok() {
            return Ok(());
        }
    }
    Err(why)
}

/// Send `request` (its request line and headers so far) to `endpoint`: Ok on a 200.
fn ask(endpoint: &str, request: &str, timeout: Duration) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("{endpoint} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{endpoint} is not an http:// endpoint"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{endpoint} names no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let mut connected = Err(format!("{host} has no address"));
    for addr in (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
    {
        connected = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string());
        if connected.is_ok() {
            break;
        }
    }
    let mut s = connected?;
    let timed_out = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {} s", timeout.as_secs_f64())
        }
        _ => e.to_string(),
    };
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // One write: the request whole, not in the pieces a formatter writes.
    let request =
        format!("{request}Host: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(timed_out)?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(timed_out)?;
    let line = String::from_utf8_lossy(&head[..n]);
    match line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(status) => Err(format!("it answered {status}")),
        None => Err("it closed the connection without an answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::answers;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// A server on localhost that answers each connection with `reply` (none: never).
    fn server(reply: Option<&'static str>) -> String {
        serve(move |_| reply)
    }

    /// A server on localhost that answers each request with what `reply` says for it.
    fn serve(reply: impl Fn(&str) -> Option<&'static str> + Send + 'static) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let n = c.read(&mut buf).unwrap_or(0);
                match reply(&String::from_utf8_lossy(&buf[..n])) {
                    Some(r) => {
                        let _ = c.write_all(r.as_bytes());
                    }
                    None => held.push(c),
                }
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn only_a_token_counts_and_silence_is_bounded() {
        // Servers that answer get all the time a loaded machine may need; the silent one the
        // short bound that is checked.
        let t = Duration::from_secs(10);
        let ok = server(Some("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntokn"));
        assert_eq!(answers(&ok, t, 1, false), Ok(()));
        let denied = server(Some("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(
            answers(&denied, t, 1, false).unwrap_err(),
            "it answered 403"
        );
        let silent = server(None);
        let start = Instant::now();
        let why = answers(&silent, Duration::from_millis(300), 2, false).unwrap_err();
        assert!(why.contains("no answer within 0.3 s"), "{why}");
        assert!(start.elapsed() < Duration::from_secs(2));
        // Nothing listening.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
        };
        assert!(answers(&closed, t, 1, false).is_err());
        // IMDSv1 only (a container behind a hop limit of 1): with AWS_IMDSV1_FALLBACK.
        let v1 = serve(|request| {
            Some(if request.starts_with("GET ") {
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nrole"
            } else {
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
            })
        });
        assert!(answers(&v1, t, 1, false).is_err());
        assert_eq!(answers(&v1, t, 1, true), Ok(()));
        assert!(answers("https://127.0.0.1:1", t, 1, false).is_err());
    }
}
