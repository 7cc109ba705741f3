//! `cairn daemon`: real jobs on seconds-granularity schedules (6-field cron), against real
//! repositories. Overlapping runs are skipped and counted, a failing job does not stop the
//! others, SIGHUP reloads (and survives a broken file), /metrics passes promtool, and SIGTERM
//! during a backup either lets the step finish or, after --stop-timeout, kills it without
//! leaving a half snapshot: `check --read-data` is clean and the next run works.

use cairn_e2e::jobs::*;
use cairn_e2e::*;
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(fx: &Fixture, config: &Path, extra: &[&str]) -> Daemon {
        let log = fx.path(&format!(
            "daemon-{}.log",
            std::process::id() ^ rand_suffix()
        ));
        let mut cmd = Command::new(cairn_bin());
        cmd.args(["daemon", "--config", s(config), "--log-format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap());
        // Its own process group, as under a shell's job control or a service manager.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        for (k, v) in fx.env() {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().expect("starting cairn daemon"),
            log,
        }
    }

    fn events(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
    }

    fn count(&self, job: &str, event: &str, message: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| {
                e["job"] == job
                    && e["event"] == event
                    && e["message"].as_str().unwrap_or_default().contains(message)
            })
            .count()
    }

    /// Wait up to `secs` for `cond`; panics with the log otherwise.
    fn wait(&self, what: &str, secs: u64, cond: impl Fn(&Daemon) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{what} did not happen within {secs}s; log:\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            sig,
        )
        .unwrap();
    }

    /// Signal the daemon's whole process group (Ctrl-C in a terminal, `kill -- -PGID`).
    fn signal_group(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            sig,
        )
        .unwrap();
    }

    /// Wait for the daemon to exit; its exit code.
    fn exit(&mut self, secs: u64) -> i32 {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < end,
                "the daemon did not exit within {secs}s; log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to /metrics");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

#[test]
fn schedules_overlap_failing_job_reload_and_metrics() {
    let fx = Fixture::new();
    let data = fx.dir("data");
    fs::write(data.join("a"), random_bytes(1, 100_000)).unwrap();
    // An "etcd" that accepts connections and never answers: each run of `hang` waits out its
    // 3 s timeout and fails, so its every-second schedule keeps overlapping.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let base = format!(
        "state_dir = \"{}\"\n{}\n[jobs.fast]\nrepository = \"main\"\nschedule = \"*/2 * * * * *\"\nrandom_delay = \"1s\"\nsource = {{ kind = \"paths\", paths = [\"{}\"] }}\nretention = {{ max_count = 2 }}\n\n[jobs.hang]\nrepository = \"main\"\nschedule = \"* * * * * *\"\nsource = {{ kind = \"etcd\", endpoints = [\"https://127.0.0.1:{silent_port}\"], timeout = 3 }}\n",
        s(&fx.path("state")),
        repository_table("main", s(&fx.repo), &fx.identity, None),
        s(&data)
    );
    let cfg = write_config(&fx, "cairn.toml", &base);
    let port = cairn_e2e::etcd::free_port();
    let mut d = Daemon::start(
        &fx,
        &cfg,
        &["--metrics-listen", &format!("127.0.0.1:{port}")],
    );
    d.wait(
        "two good runs of fast, a failed and a skipped run of hang",
        20,
        |d| {
            d.count("fast", "finished", "ok (exit 0)") >= 2
                && d.count("hang", "finished", "failed") >= 1
                && d.count("hang", "skipped", "still going") >= 1
        },
    );
    // fast waits out a random delay below a second before each run.
    let delays: Vec<f64> = d
        .events()
        .iter()
        .filter(|e| e["job"] == "fast" && e["event"] == "delayed")
        .filter_map(|e| {
            e["message"]
                .as_str()?
                .strip_prefix("starting in ")?
                .split('s')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        delays.len() >= 2 && delays.iter().all(|d| *d < 1.0),
        "{delays:?}"
    );
    // Never two runs of one job at once: starts and finishes alternate.
    let mut running = false;
    for e in d.events().iter().filter(|e| e["job"] == "hang") {
        match e["event"].as_str().unwrap() {
            "started" => {
                assert!(!running, "hang started twice at once: {e}");
                running = true;
            }
            "finished" | "aborted" => running = false,
            _ => {}
        }
    }
    // A second daemon on the same state directory (whose runs would read the first one's
    // configuration copy) is refused, naming the holder.
    let other = write_config(
        &fx,
        "other.toml",
        &base.replace("[jobs.hang]", "[jobs.other]"),
    );
    let mut second = Daemon::start(&fx, &other, &[]);
    assert_eq!(second.exit(10), 1, "{}", second.stderr());
    let err = second.stderr();
    assert!(
        err.contains("another cairn daemon holds the state directory")
            && err.contains(&format!("pid {}", d.child.id()))
            && err.contains("cairn.toml")
            && err.contains("state_dir"),
        "{err}"
    );
    let text = http_get(port, "/metrics");
    if let Some(p) = promtool(&text) {
        panic!("promtool: {p}\n{text}");
    }
    assert!(
        metric(&text, "cairn_job_skipped_overlap_total{job=\"hang\"}").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "cairn_job_runs_total{job=\"hang\",outcome=\"failed\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "cairn_job_runs_total{job=\"fast\",outcome=\"ok\"}").unwrap() >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "cairn_job_last_exit_code{job=\"hang\"}"),
        Some(1.0),
        "{text}"
    );

    // A broken file on SIGHUP is reported and the old configuration kept.
    fs::write(&cfg, base.replace("[jobs.fast]", "[jobs.fast\n")).unwrap();
    d.signal(rustix::process::Signal::HUP);
    d.wait("the failed reload", 10, |d| {
        d.events().iter().any(|e| e["event"] == "reload-failed")
    });
    let before = d.count("fast", "finished", "ok");
    d.wait("fast going on after the failed reload", 10, |d| {
        d.count("fast", "finished", "ok") > before
    });
    // A good one adds a job.
    let added = fx.dir("added");
    fs::write(added.join("b"), b"added").unwrap();
    fs::write(
        &cfg,
        format!("{base}\n[jobs.added]\nrepository = \"main\"\nschedule = \"* * * * * *\"\nsource = {{ kind = \"paths\", paths = [\"{}\"] }}\n", s(&added)),
    )
    .unwrap();
    d.signal(rustix::process::Signal::HUP);
    d.wait("a run of the job added by the reload", 15, |d| {
        d.count("added", "finished", "ok (exit 0)") >= 1
    });

    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.exit(20), 0);
    assert!(d.events().iter().any(|e| e["event"] == "stopped"));
    drop(silent);
    // Retention runs after each backup, so max_count holds after every whole run. SIGTERM may
    // land during a run of fast: a backup step under way finishes and nothing starts after it,
    // which can leave one snapshot over the count for the next run's retention.
    let last_fast = d
        .events()
        .into_iter()
        .rev()
        .find(|e| e["job"] == "fast" && (e["event"] == "finished" || e["event"] == "aborted"))
        .expect("fast finished runs");
    let whole = last_fast["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("ok (exit 0)");
    let kept = job_snapshots(&fx, "fast").len();
    assert!(
        kept == 2 || (!whole && kept == 3),
        "max_count holds: {kept} snapshots; the last run: {last_fast}"
    );
    assert!(!job_snapshots(&fx, "added").is_empty());
    fx.id(&["check", "--read-data"]).ok();
}

/// Data packs in the local repository (files below data/).
fn packs(fx: &Fixture) -> usize {
    fx.store.list("data").len()
}

#[test]
fn sigterm_during_a_backup() {
    let fx = Fixture::on_with(Backend::Local, &["--pack-size", "2"]);
    let data = fx.dir("data");
    {
        let mut f = fs::File::create(data.join("big")).unwrap();
        for i in 0..32 {
            f.write_all(&random_bytes(1000 + i, 8 << 20)).unwrap();
        }
    }
    let config = format!(
        "state_dir = \"{}\"\n{}\n[jobs.big]\nrepository = \"main\"\nschedule = \"* * * * * *\"\nsource = {{ kind = \"paths\", paths = [\"{}\"] }}\nretention = {{ keep_last = 5 }}\naudit = {{ read_data_subset = \"all\" }}\n",
        s(&fx.path("state")),
        repository_table("main", s(&fx.repo), &fx.identity, None),
        s(&data)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);

    // 1. Stop timeout 0: the running backup is killed as soon as SIGTERM comes.
    let mut d = Daemon::start(&fx, &cfg, &["--stop-timeout", "0s"]);
    let start = packs(&fx);
    d.wait("packs of the first backup", 20, |_| packs(&fx) > start);
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.exit(20), 0);
    assert!(d.count("big", "aborted", "killed") == 1, "{:?}", d.events());
    assert!(
        job_snapshots(&fx, "big").is_empty(),
        "no snapshot from a killed backup"
    );
    assert!(packs(&fx) > start, "the killed backup left packs behind");
    fx.id(&["check", "--read-data"]).ok();
    let text = fs::read_to_string(fx.path("state/big.json")).unwrap();
    assert!(
        text.contains("killed"),
        "the aborted run is recorded: {text}"
    );

    // 2. A long stop timeout: the backup step finishes, nothing after it starts. The signal
    // goes to the daemon's process group: the run, in a group of its own, is asked once.
    let mut d = Daemon::start(&fx, &cfg, &["--stop-timeout", "60s"]);
    let start = packs(&fx);
    d.wait("packs of the second backup", 20, |_| packs(&fx) > start);
    d.signal_group(rustix::process::Signal::TERM);
    assert_eq!(d.exit(60), 0);
    assert_eq!(
        d.count("big", "finished", "failed (exit 1)"),
        1,
        "{:?}",
        d.events()
    );
    let ev = d.events();
    let finished = ev
        .iter()
        .find(|e| e["job"] == "big" && e["event"] == "finished")
        .unwrap();
    assert!(
        finished["message"]
            .as_str()
            .unwrap()
            .contains("not started: cairn was asked to stop"),
        "{finished}"
    );
    assert_eq!(
        job_snapshots(&fx, "big").len(),
        1,
        "the running backup completed"
    );
    fx.id(&["check", "--read-data"]).ok();

    // 3. The next run works (and prune removes what the killed backup left).
    let out = fx.run(&["run", "big", "--config", s(&cfg), "--json"]);
    out.ok();
    assert_eq!(out.json()["jobs"][0]["status"], "ok", "{out}");
    assert_eq!(job_snapshots(&fx, "big").len(), 2);
    fx.id(&["check", "--read-data"]).ok();
}
