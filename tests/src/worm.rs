//! A write-once S3 front: an HTTP proxy that forwards to an S3 server what storage
//! credentials without delete and overwrite permission may do, and refuses the rest with
//! `403 AccessDenied`, as AWS does for such credentials with a bucket policy that denies
//! `s3:DeleteObject` and requires `s3:if-none-match` on `s3:PutObject`.
//!
//! moto can enforce IAM policies, but not their conditions: it could refuse deletes, not
//! overwrites. This proxy refuses both, deterministically:
//!
//! * `DELETE` of an object (aborting a multipart upload, `?uploadId=`, passes: that is
//!   `s3:AbortMultipartUpload`, and discards nothing stored);
//! * `POST ?delete` (DeleteObjects);
//! * `PUT` of an object without `If-None-Match: *` (an upload part, `?partNumber=`, passes;
//!   bucket-level `PUT`s — `/bucket` or `/bucket?…` — pass, the tests create buckets through
//!   it; so do other sub-resources such as `?retention`, which tests refuse by other means).
//!
//! Each request is forwarded on its own connection to the server, and every response closes
//! the client's connection (`Connection: close`): simple, and clients reconnect.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What went through a [`WriteOnceProxy`].
#[derive(Debug, Default, Clone)]
pub struct WormLog {
    /// Request lines (`METHOD /path?query`) refused.
    pub refused: Vec<String>,
    /// Object creations forwarded with `If-None-Match: *`.
    pub conditional_puts: u64,
    /// Requests forwarded.
    pub forwarded: u64,
}

/// The proxy, on 127.0.0.1; stops on drop.
pub struct WriteOnceProxy {
    addr: SocketAddr,
    log: Arc<Mutex<WormLog>>,
    stop: Arc<AtomicBool>,
}

impl WriteOnceProxy {
    /// A proxy on a free port in front of `target`.
    pub fn start(target: SocketAddr) -> WriteOnceProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let log = Arc::new(Mutex::new(WormLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("worm-proxy".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let log = Arc::clone(&l);
                            std::thread::spawn(move || {
                                let _ = client.set_nonblocking(false);
                                if let Err(e) = serve(client, target, &log) {
                                    eprintln!("write-once proxy: {e}");
                                }
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(e) => eprintln!("write-once proxy: accept: {e}"),
                    }
                }
            })
            .expect("starting the proxy thread");
        WriteOnceProxy { addr, log, stop }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for `CAIRN_S3_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// cairn's environment to reach the server through this proxy.
    pub fn env(&self) -> crate::Env {
        crate::s3::env_for(&self.endpoint())
    }

    /// What happened so far.
    pub fn log(&self) -> WormLog {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for WriteOnceProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Would credentials that may only create and read be refused this request?
fn refused(method: &str, target: &str, if_none_match: Option<&str>) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<&str> = query
        .split('&')
        .map(|p| p.split('=').next().unwrap_or(""))
        .collect();
    let has = |p: &str| params.contains(&p);
    // `/bucket/key…`: an object; `/bucket` or `/bucket/`: the bucket.
    let object = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    match method {
        "DELETE" => object && !has("uploadId"),
        "POST" => has("delete"),
        "PUT" => object && query.is_empty() && if_none_match.map(str::trim) != Some("*"),
        _ => false,
    }
}

/// Handle one client connection: one request, then close.
fn serve(client: TcpStream, target: SocketAddr, log: &Mutex<WormLog>) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(()); // closed before a request
        }
        let end = line == b"\r\n";
        head.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default().to_string();
    let mut parts = request.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if header("transfer-encoding").is_some() {
        return respond(&client, 501, "NotImplemented", "chunked requests");
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let inm = header("if-none-match");
    if refused(&method, &path, inm.as_deref()) {
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .refused
            .push(format!("{method} {path}"));
        return respond(
            &client,
            403,
            "AccessDenied",
            "write-once credentials: no deletes, no overwrites",
        );
    }
    {
        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
        l.forwarded += 1;
        if method == "PUT" && inm.is_some() {
            l.conditional_puts += 1;
        }
    }
    // Forward with `Connection: close`, read the whole answer, pass it on with the same.
    let mut up = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut fwd = format!("{request}\r\n");
    for l in lines.filter(|l| !l.is_empty()) {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            fwd.push_str(l);
            fwd.push_str("\r\n");
        }
    }
    fwd.push_str("Connection: close\r\n\r\n");
    up.write_all(fwd.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    let (ahead, abody) = answer.split_at(split);
    let mut out = String::new();
    for l in String::from_utf8_lossy(ahead).split("\r\n") {
        if !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut c = &client;
    c.write_all(out.as_bytes())?;
    c.write_all(abody)?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

fn respond(client: &TcpStream, status: u16, code: &str, message: &str) -> io::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut c = client;
    write!(
        c,
        "HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::refused;

    #[test]
    fn what_write_once_credentials_may_not_do() {
        assert!(refused("DELETE", "/b/locks/x", None));
        assert!(!refused("DELETE", "/b/big?uploadId=1", None));
        assert!(refused("POST", "/b?delete", None));
        assert!(refused("PUT", "/b/data/ab/x", None));
        assert!(!refused("PUT", "/b/data/ab/x", Some("*")));
        assert!(!refused("PUT", "/b/big?partNumber=1&uploadId=2", None));
        assert!(!refused("PUT", "/b", None));
        assert!(!refused("GET", "/b/x", None));
    }
}
