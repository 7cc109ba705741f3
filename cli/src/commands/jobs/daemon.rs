//! `cairn daemon`: the jobs on their schedules.
//!
//! The daemon is a scheduler and supervisor; each run is `cairn run JOB --json` in a child
//! process (the same in-process runner as a timer's). A child, unlike a thread, can be
//! stopped: SIGTERM asks it to finish the running step and start no other, and when the stop
//! timeout passes it is killed, which is clean because a snapshot object is written last (an
//! interrupted backup leaves only unreferenced packs for prune). A job still running when its
//! next time comes is not started again: the skipped run is logged and counted. SIGHUP
//! reloads the configuration (a file that does not load is reported and the old one kept).
//! One daemon holds a state directory (`.daemon.lock`, locked while it runs): its runs read
//! the configuration copy kept there, which a second daemon would overwrite.

use super::run::render_metrics;
use super::ConfigFile;
use crate::args::Global;
use crate::exit::Code;
use anyhow::{Context, Result};
use cairn_store::job::config::Loaded;
use cairn_store::job::metrics::DaemonCounters;
use cairn_store::job::runner::{RunSummary, StepReport};
use cairn_store::job::{schedule, state};
use chrono::{DateTime, Utc};
use clap::Args;
use crossbeam_channel::{Receiver, Sender};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the daemon logs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL job=NAME event=...: message` lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `cairn daemon`.
#[derive(Args, Debug)]
#[command(after_help = "\
Each job with a `schedule` runs at its times in its `timezone` (see the README for what happens
on daylight-saving changes), after an optional random delay (`random_delay`). A job never runs
twice at once: a time that comes while the previous run goes on is skipped and logged
(cairn_job_skipped_overlap_total). SIGHUP reloads the configuration. SIGTERM or SIGINT: no new
run starts, running jobs finish their current step, and after --stop-timeout they are killed
(no snapshot is half written).

Examples:
  cairn daemon --metrics-listen 127.0.0.1:9901
  cairn daemon --config ./cairn.toml --log-format json --stop-timeout 5m")]
pub struct DaemonArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// After SIGTERM, how long running jobs may take to finish their current step before they
    /// are killed (`30s`, `5m`).
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = schedule::parse_duration)]
    pub stop_timeout: Duration,
}

enum Event {
    Signal(i32),
    Exited {
        job: String,
        code: Option<i32>,
        stdout: Vec<u8>,
        started: f64,
    },
}

struct Logger(LogFormat);

impl Logger {
    fn log(&self, level: &str, job: Option<&str>, event: &str, message: &str) {
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // One line per event: a cause spanning lines is joined.
        let message = message
            .split('\n')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let message = message.as_str();
        let line = match self.0 {
            LogFormat::Json => json!({
                "time": now, "level": level, "job": job, "event": event, "message": message,
            })
            .to_string(),
            LogFormat::Text => match job {
                Some(j) => format!("{now} {level} job={j} event={event}: {message}"),
                None => format!("{now} {level} event={event}: {message}"),
            },
        };
        // Log lines go to stdout (the journal keeps both streams); runs' own warnings come
        // on stderr from the children. JSON lines as serialized, text with controls escaped.
        let _ = match self.0 {
            LogFormat::Json => crate::output::write_raw(format!("{line}\n").as_bytes()),
            LogFormat::Text => crate::outln!("{line}"),
        };
    }
}

struct Daemon {
    base: Global,
    file: ConfigFile,
    loaded: Loaded,
    /// The copy of the configuration the daemon holds, which runs read: a file edited but not
    /// yet reloaded (or that failed to reload) does not reach them.
    held: PathBuf,
    /// The lock on the state directory that holds `held`.
    lock: StateLock,
    log: Logger,
    next: BTreeMap<String, DateTime<Utc>>,
    /// Runs waiting out their random delay.
    delayed: BTreeMap<String, DateTime<Utc>>,
    /// Running jobs' process ids.
    running: BTreeMap<String, u32>,
    counters: DaemonCounters,
    metrics: Arc<Mutex<String>>,
    tx: Sender<Event>,
}

fn unix_now() -> f64 {
    Utc::now().timestamp_millis() as f64 / 1000.0
}

impl Daemon {
    fn plan(&mut self) {
        let now = Utc::now();
        self.next.clear();
        for name in self.loaded.config.jobs.keys() {
            if let Some(s) = self.loaded.schedule(name) {
                if let Some(t) = s.next_after(now) {
                    self.next.insert(name.clone(), t.with_timezone(&Utc));
                    self.log.log(
                        "info",
                        Some(name),
                        "scheduled",
                        &format!("next run {}", t.format("%Y-%m-%d %H:%M:%S %Z")),
                    );
                }
            }
        }
        self.delayed
            .retain(|j, _| self.loaded.config.jobs.contains_key(j));
    }

    fn publish(&mut self) {
        for j in self.loaded.config.jobs.keys() {
            self.counters.skipped_overlap.entry(j.clone()).or_default();
        }
        self.counters.running = self
            .loaded
            .config
            .jobs
            .keys()
            .map(|j| (j.clone(), self.running.contains_key(j)))
            .collect();
        let text = render_metrics(&self.loaded, Some(&self.counters));
        if let Ok(mut m) = self.metrics.lock() {
            *m = text;
        }
    }

    fn fire(&mut self, job: &str, at: DateTime<Utc>) {
        if self.running.contains_key(job) || self.delayed.contains_key(job) {
            *self
                .counters
                .skipped_overlap
                .entry(job.to_string())
                .or_default() += 1;
            self.log.log(
                "warn",
                Some(job),
                "skipped",
                &format!(
                    "the run due at {} was skipped: the previous run is still going",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            );
            self.publish();
            return;
        }
        let delay = self
            .loaded
            .job(job)
            .ok()
            .and_then(|j| j.random_delay.as_ref())
            .and_then(|d| schedule::parse_duration(d.get_ref()).ok())
            .unwrap_or_default();
        if delay.is_zero() {
            self.start(job);
        } else {
            let ms = rand::random::<u64>() % (delay.as_millis() as u64).max(1);
            let when = Utc::now() + chrono::Duration::milliseconds(ms as i64);
            self.log.log(
                "info",
                Some(job),
                "delayed",
                &format!("starting in {:.3}s (random_delay)", ms as f64 / 1000.0),
            );
            self.delayed.insert(job.to_string(), when);
        }
    }

    fn start(&mut self, job: &str) {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                self.log.log(
                    "error",
                    Some(job),
                    "failed",
                    &format!("cannot find cairn's own executable: {e}"),
                );
                return;
            }
        };
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg(job)
            .arg("--json")
            .arg("--config")
            .arg(&self.held)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A process group of its own: a signal to the daemon's group (Ctrl-C, `kill -- -PGID`)
        // reaches the daemon alone, which asks the run to stop once; a second signal straight
        // to the run would end it at once.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if let Some(c) = &self.base.cache_dir {
            cmd.arg("--cache-dir").arg(c);
        }
        let started = unix_now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.log.log(
                    "error",
                    Some(job),
                    "failed",
                    &format!("starting `cairn run {job}`: {e}"),
                );
                return;
            }
        };
        self.log.log(
            "info",
            Some(job),
            "started",
            &format!("run started (pid {})", child.id()),
        );
        let stdout = child.stdout.take();
        let tx = self.tx.clone();
        let name = job.to_string();
        let pid = child.id();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut s) = stdout {
                let _ = s.read_to_end(&mut out);
            }
            let code = child.wait().ok().and_then(|st| st.code());
            let _ = tx.send(Event::Exited {
                job: name,
                code,
                stdout: out,
                started,
            });
        });
        self.running.insert(job.to_string(), pid);
        self.publish();
    }

    fn exited(&mut self, job: &str, code: Option<i32>, stdout: &[u8], started: f64) {
        self.running.remove(job);
        let parsed: Option<RunSummary> = serde_json::from_slice::<serde_json::Value>(stdout)
            .ok()
            .and_then(|v| v.get("jobs")?.get(0).cloned())
            .and_then(|v| serde_json::from_value(v).ok());
        match parsed {
            Some(s) => {
                let failed: Vec<String> = s
                    .steps
                    .iter()
                    .filter(|st| st.status.is_some_and(|x| x.exit_code() != 0))
                    .map(|st| {
                        format!(
                            "{}: {}",
                            st.step,
                            st.message
                                .clone()
                                .unwrap_or_else(|| st.status.map_or("", |x| x.name()).into())
                        )
                    })
                    .collect();
                let level = if s.exit_code == 0 { "info" } else { "error" };
                self.log.log(
                    level,
                    Some(job),
                    "finished",
                    &format!(
                        "{} (exit {}) in {:.1}s{}",
                        s.status.map_or("failed", |x| x.name()),
                        s.exit_code,
                        s.end_timestamp_seconds - s.start_timestamp_seconds,
                        if failed.is_empty() {
                            String::new()
                        } else {
                            format!("; {}", failed.join("; "))
                        }
                    ),
                );
            }
            None => {
                // Killed, or failed before it could report: record it so the metrics say so.
                let why = match code {
                    Some(c) => format!("`cairn run` exited with {c} without a summary"),
                    None => "the run was killed (stop timeout passed, or a signal)".to_string(),
                };
                self.log.log("error", Some(job), "aborted", &why);
                let dir = self.loaded.state_dir();
                if let Ok(mut st) = state::load(&dir, job) {
                    let failed = cairn_store::job::runner::Status::Failed;
                    st.record(&RunSummary {
                        job: job.to_string(),
                        start_timestamp_seconds: started,
                        end_timestamp_seconds: unix_now(),
                        status: Some(failed),
                        exit_code: failed.exit_code(),
                        steps: vec![StepReport {
                            step: "run".into(),
                            status: Some(failed),
                            message: Some(why),
                            duration_seconds: unix_now() - started,
                        }],
                        ..RunSummary::default()
                    });
                    if let Err(e) = state::save(&dir, job, &st) {
                        self.log.log("error", Some(job), "state", &e.to_string());
                    }
                }
            }
        }
        self.publish();
    }

    fn signal_children(&self, sig: rustix::process::Signal) {
        for pid in self.running.values() {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    }

    fn reload(&mut self) {
        match hold(&self.file, Some(&self.lock)) {
            Ok((l, held, lock)) => {
                self.loaded = l;
                self.held = held;
                if let Some(lock) = lock {
                    self.lock = lock;
                }
                self.log.log(
                    "info",
                    None,
                    "reloaded",
                    &format!(
                        "configuration {} reloaded: {} jobs",
                        self.file.config.display(),
                        self.loaded.config.jobs.len()
                    ),
                );
                self.plan();
                self.publish();
            }
            Err(e) => self.log.log(
                "error",
                None,
                "reload-failed",
                &format!("{e:#}; keeping the previous configuration"),
            ),
        }
    }
}

fn serve_metrics(addr: SocketAddr, metrics: Arc<Mutex<String>>) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("listening on {addr} for /metrics"))?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    crate::output::error(format_args!("metrics server: {e}"));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        crate::output::error(format_args!("metrics server: {e}"));
                        return;
                    }
                };
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let m = metrics.clone();
                        async move {
                            let body = m.lock().map(|s| s.clone()).unwrap_or_default();
                            (
                                [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                                body,
                            )
                        }
                    }),
                );
                if let Err(e) = axum::serve(listener, app).await {
                    crate::output::error(format_args!("metrics server: {e}"));
                }
            });
        })?;
    Ok(())
}

fn signals(tx: Sender<Event>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut sigs = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in sigs.forever() {
                if tx.send(Event::Signal(s)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// A daemon's exclusive lock on its state directory (`.daemon.lock`, which names the holder;
/// job names never start with a dot, so no job's lock file is it).
struct StateLock {
    dir: PathBuf,
    _file: std::fs::File,
}

impl StateLock {
    /// Lock `dir` for this daemon, or say which daemon holds it.
    fn take(dir: &Path, config: &Path) -> Result<StateLock> {
        use std::io::{Seek, Write};
        let path = dir.join(".daemon.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(anyhow::anyhow!(
                    "another cairn daemon holds the state directory {} ({}); its runs read the \
                     configuration kept there, so two daemons cannot share it. Give each \
                     configuration its own `state_dir`, or stop the other daemon",
                    dir.display(),
                    if holder.is_empty() {
                        "holder unknown"
                    } else {
                        holder
                    }
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let who = format!(
            "pid {}, configuration {}\n",
            std::process::id(),
            config.display()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(who.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(StateLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }
}

/// Load the configuration and keep a copy of exactly what was loaded in the state directory
/// (`daemon-config.toml`), for the runs to read. The state directory is locked first, unless
/// `current` already holds it; a new lock is returned when the directory changed.
fn hold(
    file: &ConfigFile,
    current: Option<&StateLock>,
) -> Result<(Loaded, PathBuf, Option<StateLock>)> {
    let text = std::fs::read_to_string(&file.config).map_err(|e| {
        crate::exit::usage(
            format!("reading configuration {}: {e}", file.config.display()),
            "pass --config FILE or set CAIRN_CONFIG",
        )
    })?;
    let loaded = cairn_store::job::config::parse(&file.config, &text).map_err(|e| {
        crate::exit::usage(e.to_string(), "fix the file, then run `cairn config check`")
    })?;
    let dir = loaded.state_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    let lock = match current {
        Some(l) if l.dir == dir => None,
        _ => Some(StateLock::take(&dir, &file.config)?),
    };
    let held = dir.join("daemon-config.toml");
    state::write_atomic(&held, text.as_bytes())
        .with_context(|| format!("writing {}", held.display()))?;
    Ok((loaded, held, lock))
}

pub fn run(g: &Global, a: DaemonArgs) -> Result<Code> {
    let (loaded, held, lock) = hold(&a.file, None)?;
    let lock = lock.context("the state directory was not locked")?;
    let (tx, rx): (Sender<Event>, Receiver<Event>) = crossbeam_channel::unbounded();
    signals(tx.clone())?;
    let metrics = Arc::new(Mutex::new(String::new()));
    let mut d = Daemon {
        base: Global {
            cache_dir: g.cache_dir.clone(),
            ..global_placeholder()
        },
        file: a.file.clone(),
        loaded,
        held,
        lock,
        log: Logger(a.log_format),
        next: BTreeMap::new(),
        delayed: BTreeMap::new(),
        running: BTreeMap::new(),
        counters: DaemonCounters::default(),
        metrics: metrics.clone(),
        tx,
    };
    if let Some(addr) = a.metrics_listen {
        serve_metrics(addr, metrics)?;
        d.log.log(
            "info",
            None,
            "listening",
            &format!("metrics at http://{addr}/metrics"),
        );
    }
    d.log.log(
        "info",
        None,
        "started",
        &format!(
            "configuration {}: {} jobs, {} scheduled",
            d.file.config.display(),
            d.loaded.config.jobs.len(),
            d.loaded.schedules.values().filter(|s| s.is_some()).count()
        ),
    );
    d.plan();
    d.publish();
    let mut stopping: Option<Instant> = None;
    let mut killed = false;
    loop {
        let now = Utc::now();
        if stopping.is_none() {
            let due: Vec<(String, DateTime<Utc>)> = d
                .next
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(j, t)| (j.clone(), *t))
                .collect();
            for (job, at) in due {
                d.fire(&job, at);
                let after = now.max(at);
                match d.loaded.schedule(&job).and_then(|s| s.next_after(after)) {
                    Some(t) => {
                        d.next.insert(job, t.with_timezone(&Utc));
                    }
                    None => {
                        d.next.remove(&job);
                    }
                }
            }
            let ready: Vec<String> = d
                .delayed
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(j, _)| j.clone())
                .collect();
            for job in ready {
                d.delayed.remove(&job);
                d.start(&job);
            }
        }
        let wake = d.next.values().chain(d.delayed.values()).min().copied();
        let mut timeout = wake
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        if let Some(deadline) = stopping {
            timeout = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
        }
        match rx.recv_timeout(timeout) {
            Ok(Event::Signal(signal_hook::consts::SIGHUP)) => d.reload(),
            Ok(Event::Signal(_)) => {
                if stopping.is_none() {
                    d.log.log("info", None, "stopping", &format!(
                        "stop requested: no new runs; {} running job(s) may finish their current step within {:?}",
                        d.running.len(),
                        a.stop_timeout
                    ));
                    d.delayed.clear();
                    d.signal_children(rustix::process::Signal::TERM);
                    stopping = Some(Instant::now() + a.stop_timeout);
                }
            }
            Ok(Event::Exited {
                job,
                code,
                stdout,
                started,
            }) => d.exited(&job, code, &stdout, started),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(deadline) = stopping {
            if d.running.is_empty() {
                break;
            }
            if Instant::now() >= deadline && !killed {
                d.log.log("warn", None, "aborting", &format!(
                    "stop timeout passed: killing {} running job(s); no snapshot is half written, their packs are left for prune",
                    d.running.len()
                ));
                d.signal_children(rustix::process::Signal::KILL);
                killed = true;
            }
        }
    }
    d.log.log("info", None, "stopped", "daemon stopped");
    Ok(Code::Ok)
}

/// A Global with nothing set (the daemon's children get everything from the configuration).
fn global_placeholder() -> Global {
    Global {
        repo: None,
        identity: None,
        key: None,
        passphrase_file: None,
        s3: crate::args::S3Args {
            s3_endpoint: None,
            s3_region: None,
            s3_timeout: 30,
            s3_retries: None,
            aws_profile: None,
            aws_credentials_file: None,
            aws_ca_bundle: None,
        },
        cache_dir: None,
        no_cache: false,
        as_of: None,
        json: false,
        verbose: 0,
        quiet: false,
    }
}
