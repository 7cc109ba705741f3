//! Whether EC2 instance metadata answers: the AWS SDKs' last source of credentials, tried as
//! briefly as they try it (one attempt of one second by default) before cairn hands the
//! lookup to object_store, whose requests retry for minutes. Off an EC2 instance the answer
//! is "no credentials", at once, as the AWS CLI gives it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The default endpoint (IPv4).
pub(crate) const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// Ask `endpoint` (`http://HOST[:PORT]`) for a session token (IMDSv2), `attempts` times,
/// each within `timeout`. Ok when one answers 200; else why not.
pub(crate) fn answers(endpoint: &str, timeout: Duration, attempts: u32) -> Result<(), String> {
    let mut why = String::new();
    for _ in 0..attempts.max(1) {
        match ask(endpoint, timeout) {
            Ok(()) => return Ok(()),
            Err(e) => why = e,
        }
    }
    Err(why)
}

fn ask(endpoint: &str, timeout: Duration) -> Result<(), String> {
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
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
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
    write!(
        s,
        "PUT /latest/api/token HTTP/1.1\r\nHost: {host}\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(timed_out)?;
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
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut c in l.incoming().flatten() {
                let _ = c.read(&mut [0u8; 1024]);
                match reply {
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
        let t = Duration::from_millis(300);
        let ok = server(Some("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntokn"));
        assert_eq!(answers(&ok, t, 1), Ok(()));
        let denied = server(Some("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(answers(&denied, t, 1).unwrap_err(), "it answered 403");
        let silent = server(None);
        let start = Instant::now();
        let why = answers(&silent, t, 2).unwrap_err();
        assert!(why.contains("no answer within 0.3 s"), "{why}");
        assert!(start.elapsed() < Duration::from_secs(2));
        // Nothing listening.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
        };
        assert!(answers(&closed, t, 1).is_err());
        assert!(answers("https://127.0.0.1:1", t, 1).is_err());
    }
}
