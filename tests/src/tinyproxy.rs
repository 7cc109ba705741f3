//! A real HTTP proxy for the end-to-end tests: tinyproxy (Debian package `tinyproxy-bin`, the
//! executable without the system service), started as the current user on 127.0.0.1 on a free
//! port with a generated configuration: in the foreground, logging to a file, clients from
//! 127.0.0.1 only, optionally with `BasicAuth` and the ports it may open tunnels (`CONNECT`)
//! to. What it forwarded is read back from its log ([`Tinyproxy::requests`]).
//!
//! Like moto in [`crate::s3`], it is spawned in its own process group with SIGKILL as its
//! parent-death signal, and killed on drop.

use crate::s3::{free_port, kill_group, spawn_owned};
use crate::{scratch, Scratch};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str =
    "the proxy tests need tinyproxy: `apt-get install tinyproxy-bin` (.ci/deps test installs it)";

/// What the proxy demands and allows.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `BasicAuth user password`: clients must send these credentials.
    pub basic_auth: Option<(String, String)>,
    /// `ConnectPort`s: the ports `CONNECT` may tunnel to (none given: tinyproxy allows all).
    pub connect_ports: Vec<u16>,
}

/// A running tinyproxy. Killed (with its process group) on drop.
pub struct Tinyproxy {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: Scratch,
}

impl Tinyproxy {
    /// A proxy without authentication that tunnels to any port.
    pub fn start() -> Tinyproxy {
        Tinyproxy::with(Config::default())
    }

    /// A proxy with `config`; retries with another port if the port was taken meanwhile.
    /// Panics, with an install hint, if tinyproxy is missing or does not start.
    pub fn with(config: Config) -> Tinyproxy {
        let mut last = String::new();
        for _ in 0..5 {
            match Tinyproxy::launch(&config, free_port()) {
                Ok(proxy) => return proxy,
                Err(e) => last = e,
            }
        }
        panic!("tinyproxy did not start after 5 tries: {last}");
    }

    fn launch(config: &Config, port: u16) -> Result<Tinyproxy, String> {
        let dir = scratch();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nLogLevel Info\n\
             LogFile \"{}\"\nAllow 127.0.0.1\n",
            log.display()
        );
        if let Some((user, password)) = &config.basic_auth {
            text.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        for p in &config.connect_ports {
            text.push_str(&format!("ConnectPort {p}\n"));
        }
        std::fs::write(&conf, text).map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let mut cmd = Command::new("tinyproxy");
        cmd.arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = spawn_owned(cmd)
            .unwrap_or_else(|e| panic!("cannot run tinyproxy ({e}); {INSTALL_HINT}"));
        let mut proxy = Tinyproxy {
            port,
            child,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = proxy.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                return Err(format!(
                    "tinyproxy exited at start ({status}) on port {port}: {}{}",
                    stderr.trim(),
                    proxy.log()
                ));
            }
            if proxy.log().contains("Accepting connections") {
                return Ok(proxy);
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "tinyproxy did not listen on port {port} within 20 s; {INSTALL_HINT}\n{}",
                    proxy.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://user:password@127.0.0.1:<port>`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The request lines it received, in order (`PUT http://127.0.0.1:…/bucket/key HTTP/1.1`,
    /// `CONNECT 127.0.0.1:443 HTTP/1.1`), including those it refused.
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("]: Request (file descriptor "))
            .filter_map(|(_, rest)| rest.split_once("): "))
            .map(|(_, request)| request.to_string())
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
