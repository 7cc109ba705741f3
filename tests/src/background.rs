//! Running cairn in the background, pausing and killing it: for the concurrency and crash
//! tests.

use crate::{cairn_bin, Output, TIMEOUT};
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A cairn process running in the background; killed on drop if still running.
pub struct Bg {
    child: Child,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    pub cmdline: String,
    done: bool,
}

pub fn clean_command(program: &Path, env: &[(&str, &OsStr)]) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CAIRN_") || k.starts_with("ETCDCTL_") || k.starts_with("AWS_") {
            cmd.env_remove(&*k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub fn spawn_cairn(args: &[&str], env: &[(&str, &OsStr)]) -> Bg {
    let mut cmd = clean_command(&cairn_bin(), env);
    cmd.args(args);
    let cmdline = format!("cairn {}", args.join(" "));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmdline}: {e}"));
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    Bg {
        child,
        out: Some(std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = so.read_to_end(&mut v);
            v
        })),
        err: Some(std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = se.read_to_end(&mut v);
            v
        })),
        cmdline,
        done: false,
    }
}

impl Bg {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    pub fn stop(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    pub fn cont(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Wait for the process (at most [`TIMEOUT`]) and collect its output.
    pub fn finish(mut self) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "{} did not finish within {TIMEOUT:?}",
                self.cmdline
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        self.done = true;
        let stdout_bytes = self.out.take().expect("once").join().expect("reader");
        let stderr =
            String::from_utf8_lossy(&self.err.take().expect("once").join().expect("reader"))
                .into_owned();
        let out = Output {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
            stdout_bytes,
            stderr,
            cmdline: self.cmdline.clone(),
        };
        assert!(!out.stderr.contains("panicked"), "cairn panicked\n{out}");
        out
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.done = true;
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The syscalls that change a local repository's visible state, in three classes: strace
/// counts each syscall of each thread separately, so one class at a time gives exact points.
pub const MUTATIONS: [&str; 3] = [
    "?rename,?renameat,renameat2",
    "?unlink,unlinkat",
    "?link,linkat",
];

/// True if strace can trace and inject signals here.
pub fn strace_works() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        let ok = Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=none",
                "--",
                "true",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("note: strace is not usable here; only timed kills are tried");
        }
        ok
    })
}
