//! Running cairn in the background, pausing and killing it: for the concurrency and crash
//! tests.

use crate::repo_objects::leases;
use crate::{cairn_bin, env_refs, Fixture, Output, Store, TIMEOUT};
use cairn_format::gc::{LeaseKind, LeaseRecord};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A cairn process running in the background; killed on drop if still running.
pub struct Bg {
    child: Child,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    /// The command line, for messages.
    pub cmdline: String,
    done: bool,
}

/// A command for `program` without the test's own `CAIRN_*`, `ETCDCTL_*` and `AWS_*`
/// variables and proxy settings (`HTTP_PROXY`, `no_proxy`, … in either case), with `env` added, stdin closed and stdout and stderr piped. The metadata cache
/// of remote repositories is in the system's temporary directory, not the user's home, unless
/// `env` says otherwise.
pub fn clean_command(program: &Path, env: &[(&str, &OsStr)]) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let proxy = matches!(
            k.to_ascii_lowercase().as_str(),
            "http_proxy" | "https_proxy" | "all_proxy" | "no_proxy"
        );
        if k.starts_with("CAIRN_") || k.starts_with("ETCDCTL_") || k.starts_with("AWS_") || proxy {
            cmd.env_remove(&*k);
        }
    }
    cmd.env(
        "CAIRN_CACHE_DIR",
        std::env::temp_dir().join("cairn-e2e-cache"),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Start cairn with `args` and environment `env` (see [`clean_command`]).
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
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send signal `sig`.
    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    /// Pause it (SIGSTOP).
    pub fn stop(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Resume it (SIGCONT).
    pub fn cont(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// True once the process has ended.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Poll `ready` every `every` until it returns something, and return that. Panics if the
    /// process ends first or a minute passes; `what` (the awaited event) says so.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        every: Duration,
        mut ready: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = ready() {
                return v;
            }
            assert!(
                !self.exited(),
                "{} ended before {what} (make its input bigger)",
                self.cmdline
            );
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what}: not within a minute"
            );
            std::thread::sleep(every);
        }
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

impl Fixture {
    /// Start cairn on this repository with the write key, in the background, with the
    /// backend's environment and then `extra` (which wins).
    pub fn spawn_wk(&self, args: &[&str], extra: &[(&str, &OsStr)]) -> Bg {
        let env = self.env();
        let mut all = env_refs(&env);
        all.extend_from_slice(extra);
        spawn_cairn(&self.wk_args(args), &all)
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

/// Run cairn with `args` under strace, which SIGKILLs it on entering the `n`-th call of a
/// syscall of class `MUTATIONS[class]` in any one thread. Returns None if it was killed, its
/// output if it finished first (panics if it panicked).
pub fn run_killed_at_syscall(
    args: &[&str],
    env: &[(&str, &OsStr)],
    class: usize,
    n: u32,
) -> Option<Output> {
    let set = MUTATIONS[class];
    let mut cmd = clean_command(Path::new("strace"), env);
    cmd.args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={set}"))
        .arg("-e")
        .arg(format!("inject={set}:signal=KILL:when={n}"))
        .arg("--")
        .arg(cairn_bin())
        .args(args);
    let out = cmd.output().expect("running strace");
    if out.status.signal() == Some(9) || out.status.code() == Some(137) {
        return None;
    }
    let o = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("strace … cairn {}", args.join(" ")),
    };
    assert!(!o.stderr.contains("panicked"), "{o}");
    Some(o)
}

/// Wait until the writer lease of `bg` in `store` (a repository with `fx`'s keys) records the
/// markers it has seen: it has then loaded the index it will deduplicate against. Returns the
/// lease name and record; panics if `bg` ends first or no such lease appears within a minute.
pub fn wait_for_loaded_lease(fx: &Fixture, store: &Store, bg: &mut Bg) -> (String, LeaseRecord) {
    let pid = bg.pid();
    bg.wait_for(
        "its lease records the markers it has seen",
        Duration::from_micros(300),
        || {
            leases(fx, store).into_iter().find_map(|(name, rec)| {
                rec.filter(|r| {
                    r.kind == LeaseKind::Writer && r.pid == pid && r.seen_markers.is_some()
                })
                .map(|r| (name, r))
            })
        },
    )
}

/// Panic unless `what` (a command) was killed at least 3 times, and with every problem found
/// after a kill, grouped by kill point (those without problems are left out).
#[track_caller]
pub fn assert_no_kill_problems(what: &str, killed: usize, problems: Vec<(String, Vec<String>)>) {
    eprintln!("{what}: killed {killed} times");
    assert!(killed >= 3, "the {what} was hardly ever killed");
    let bad: Vec<String> = problems
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(k, p)| format!("{k}:\n  - {}", p.join("\n  - ")))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {killed} kill points went wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
