//! `cairn run JOB…`: one run of each job now, in this process.
//!
//! Each step calls the function its command runs (`backup::save`, `forget::apply`,
//! `copy::transfer`, `check::audit_silent`) with the arguments the configuration implies, so
//! a job does exactly what the equivalent command lines would; `cairn_store::job::runner`
//! orders the steps and folds them into one summary and one exit code.

use super::{global_for, ConfigFile};
use crate::args::{
    BackupArgs, BackupCommon, BackupSource, ClusterArgs, EtcdArgs, Global, KubeArgs, ProjectArgs,
    SnapshotFilter, StaticPodsArgs, WalkArgs,
};
use crate::commands::backup::host::HostArgs;
use crate::commands::{backup, check, copy, forget};
use crate::exit::Code;
use crate::output;
use anyhow::{Context, Result};
use cairn_store::check::Subset;
use cairn_store::job::config::{self, Job, Loaded, Source};
use cairn_store::job::runner::{
    self, AuditFacts, BackupFacts, CopyFacts, RepositoryFacts, RetentionFacts, RunSummary, Status,
    StepResult, Steps,
};
use cairn_store::job::{metrics, schedule, state};
use cairn_store::retention::{self, GroupBy};
use cairn_store::snapshots::{self, Filter};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `cairn run`.
#[derive(Args, Debug)]
#[command(after_help = "\
Runs, in order: the backup; retention and prune (as [jobs.NAME.retention] says); a copy to each
repository in copy_to; the audit. One summary, and one exit code: the worst step's (0 ok, 3
partial: some files unreadable, a copy skipped a damaged snapshot, a running backup holds
space, or the audit could not read snapshots a newer cairn wrote; 4 the audit found damage;
1 a step failed or the run was stopped). SIGTERM lets the running step finish and starts no
other; a second SIGTERM ends the process at once (no snapshot is half written: snapshots are
written last).

Examples:
  cairn run etcd
  cairn run etcd etc --metrics-file /var/lib/node_exporter/textfile/cairn.prom
  cairn run etcd --config ./cairn.toml --json")]
pub struct RunArgs {
    /// Jobs to run (names of [jobs.NAME] tables), one after the other.
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub file: ConfigFile,
    /// Write every job's metrics (Prometheus text format) to this file afterwards, atomically,
    /// for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Host name to record, instead of the job's `host` or this host's name (a CronJob passes
    /// the node name).
    #[arg(long)]
    pub host: Option<String>,
}

/// The job's steps, reached through the commands' own functions.
struct CliSteps<'a> {
    loaded: &'a Loaded,
    name: &'a str,
    job: &'a Job,
    base: &'a Global,
    g: Global,
    host: String,
}

fn status(code: Code) -> Status {
    match code {
        Code::Ok => Status::Ok,
        Code::Partial => Status::Partial,
        Code::Damage => Status::Damage,
        Code::Error | Code::Usage | Code::Unfit | Code::StdoutClosed => Status::Failed,
    }
}

fn message(e: anyhow::Error) -> String {
    format!("{e:#}")
}

impl CliSteps<'_> {
    fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            host: Some(self.host.clone()),
            tags: vec![runner::job_tag(self.name)],
            ..SnapshotFilter::default()
        }
    }

    fn common(&self) -> BackupCommon {
        let mut tags = self.job.tags.clone();
        tags.push(runner::job_tag(self.name));
        BackupCommon {
            tags,
            host: Some(self.host.clone()),
        }
    }

    fn repo_config(&self) -> Result<&config::Repository, String> {
        // Validated when the file was loaded.
        self.loaded
            .repository(self.job.repository.get_ref())
            .ok_or_else(|| format!("no repository {:?}", self.job.repository.get_ref()))
    }

    fn backup_args(&self) -> BackupArgs {
        let common = self.common();
        let etcd = |e: &config::Etcd| EtcdArgs {
            endpoints: e.endpoints.clone(),
            cacert: e.cacert.clone(),
            cert: e.cert.clone(),
            cert_key: e.key.clone(),
            timeout: std::time::Duration::from_secs(e.timeout.unwrap_or(10)),
            snapshot_file: None,
            skip_hash_check: false,
            cluster_version: None,
            common: common.clone(),
        };
        let static_dir = |d: &Option<PathBuf>| {
            d.clone()
                .unwrap_or_else(|| PathBuf::from(cairn_store::source::static_pods::DEFAULT_DIR))
        };
        let (source, paths, walk) = match &self.job.source {
            Source::Paths {
                paths,
                exclude,
                one_file_system,
            } => (
                None,
                paths.clone(),
                WalkArgs {
                    excludes: exclude.clone(),
                    exclude_files: Vec::new(),
                    one_file_system: *one_file_system,
                    force: false,
                },
            ),
            Source::Etcd(e) => (
                Some(BackupSource::Etcd(etcd(e))),
                vec![],
                WalkArgs::default(),
            ),
            Source::StaticPods { dir } => (
                Some(BackupSource::StaticPods(StaticPodsArgs {
                    dir: static_dir(dir),
                    common: common.clone(),
                })),
                vec![],
                WalkArgs::default(),
            ),
            Source::Cluster {
                etcd: e,
                static_pods_dir,
            } => (
                Some(BackupSource::Cluster(ClusterArgs {
                    etcd: etcd(e),
                    static_pods_dir: static_dir(static_pods_dir),
                })),
                vec![],
                WalkArgs::default(),
            ),
            Source::Project {
                namespaces,
                all_namespaces,
                kubeconfig,
                context,
            } => (
                Some(BackupSource::Project(ProjectArgs {
                    namespaces: namespaces.clone(),
                    all_namespaces: *all_namespaces,
                    exclude_namespaces: Vec::new(),
                    include_owned: false,
                    page_size: 500,
                    kube: KubeArgs {
                        kubeconfig: kubeconfig.clone(),
                        context: context.clone(),
                    },
                    common: common.clone(),
                })),
                vec![],
                WalkArgs::default(),
            ),
            Source::Host {
                presets,
                paths,
                root,
                inventory,
            } => (
                Some(BackupSource::Host(Box::new(HostArgs {
                    presets: presets.clone(),
                    root: root.clone().unwrap_or_else(|| PathBuf::from("/")),
                    no_inventory: !inventory,
                    config: Some(self.loaded.path.clone()),
                    paths: paths.clone(),
                    common: common.clone(),
                    walk: WalkArgs::default(),
                }))),
                vec![],
                WalkArgs::default(),
            ),
        };
        BackupArgs {
            source,
            paths,
            common,
            walk,
        }
    }

    fn forget_args(&self, prune: bool) -> Result<forget::ForgetArgs> {
        let r = self.job.retention.clone().unwrap_or_default();
        let tz = match &self.job.timezone {
            Some(t) => schedule::zone(t.get_ref()).map_err(anyhow::Error::msg)?,
            None => chrono_tz::UTC,
        };
        Ok(forget::ForgetArgs {
            snapshots: Vec::new(),
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within: r
                .keep_within
                .as_ref()
                .map(|w| retention::parse_span(w.get_ref()))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            keep_tags: Vec::new(),
            // One group: the job's own snapshots (its tag and host), so max_count is the job's.
            group_by: GroupBy {
                host: false,
                source: false,
                paths: false,
            },
            timezone: tz,
            max_count: r.max_count.as_ref().map(|m| *m.get_ref()),
            max_size: r
                .max_size
                .as_ref()
                .map(|m| retention::parse_size(m.get_ref()))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            unsafe_allow_remove_all: false,
            filter: self.filter(),
            dry_run: false,
            prune,
        })
    }
}

impl Steps for CliSteps<'_> {
    fn backup(&mut self) -> StepResult<BackupFacts> {
        let saved = backup::save(&self.g, &self.backup_args()).map_err(message)?;
        let code = backup::code(&saved);
        // Warnings (unreadable or changing files) go to stderr as `cairn backup` prints them.
        for (path, e) in &saved.unreadable {
            output::warn(format_args!(
                "job {}: {path} could not be read: {e}",
                self.name
            ));
        }
        for path in &saved.changed {
            output::warn(format_args!(
                "job {}: {path} changed while being read",
                self.name
            ));
        }
        let st = saved.snapshot.stats;
        Ok((
            status(code),
            BackupFacts {
                snapshot: saved.id.to_hex(),
                files: st.files,
                files_read: st.files_read,
                source_bytes: st.bytes,
                added_bytes: st.stored_added,
            },
        ))
    }

    fn retention(&mut self, prune: bool) -> StepResult<RetentionFacts> {
        let a = self.forget_args(prune).map_err(message)?;
        let done = forget::apply(&self.g, &a).map_err(message)?;
        Ok((
            status(done.code),
            RetentionFacts {
                removed: done.removed,
                kept: done.kept,
                pruned: prune,
                pruned_bytes: done.freed,
            },
        ))
    }

    fn copy(&mut self, to: &str) -> StepResult<CopyFacts> {
        let dst = self
            .loaded
            .repository(to)
            .ok_or_else(|| format!("no repository {to:?}"))?;
        let g_to = global_for(self.base, dst);
        let from = self.repo_config()?.url.clone();
        let src = Arc::new(crate::credentials::open_at(&self.g, &from).map_err(message)?);
        let dst_repo = Arc::new(crate::credentials::open_at(&g_to, &dst.url).map_err(message)?);
        let a = copy::CopyArgs {
            snapshots: Vec::new(),
            from: Some(from.clone()),
            to: dst.url.clone(),
            filter: self.filter(),
        };
        let (code, report) =
            copy::transfer_open(&self.g, &from, &src, &dst_repo, &a).map_err(message)?;
        Ok((
            status(code),
            CopyFacts {
                to: to.to_string(),
                snapshots: report.snapshots_copied.len() as u64,
                bytes: report.bytes_copied,
            },
        ))
    }

    fn audit(&mut self, subset: Option<Subset>) -> StepResult<AuditFacts> {
        let a = check::CheckArgs {
            no_key: false,
            read_data: matches!(subset, Some(Subset::All)),
            read_data_subset: subset.filter(|s| !matches!(s, Subset::All)),
        };
        let (code, report) = check::audit_silent(&self.g, &a).map_err(message)?;
        for p in &report.problems {
            output::remark(format_args!(
                "job {}: audit: DAMAGED {}: {}; {}",
                self.name, p.object, p.cause, p.hint
            ));
        }
        for p in &report.unchecked {
            output::remark(format_args!(
                "job {}: audit: NOT CHECKED {}: {}; {}",
                self.name, p.object, p.cause, p.hint
            ));
        }
        Ok((
            status(code),
            AuditFacts {
                subset: String::new(),
                packs_read: report.packs_read,
                damaged_objects: report.problems.len() as u64,
            },
        ))
    }

    fn repository(&mut self) -> StepResult<RepositoryFacts> {
        let repo = crate::credentials::open(&self.g).map_err(message)?;
        let listing = snapshots::list(&repo).map_err(|e| e.to_string())?;
        listing.warn_unreadable();
        let filter = Filter::from(&self.filter());
        Ok((
            Status::Ok,
            RepositoryFacts {
                job_snapshots: listing
                    .snapshots
                    .iter()
                    .filter(|(_, s)| filter.matches(s))
                    .count() as u64,
                snapshots: listing.snapshots.len() as u64,
                size_bytes: cairn_store::footprint::stored_total(&repo)
                    .map_err(|e| e.to_string())?,
            },
        ))
    }
}

/// Hold `<state_dir>/<job>.lock` while the job runs, so a timer, the daemon and a person
/// never run one job twice at once. `None`: another process holds it.
fn lock(dir: &Path, name: &str) -> Result<Option<std::fs::File>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("locking {}: {e}", path.display())),
    }
}

/// Run one job now: lock, load state, run, save state.
pub fn run_job(
    base: &Global,
    loaded: &Loaded,
    name: &str,
    host: Option<&str>,
    stop: &AtomicBool,
) -> Result<RunSummary> {
    let job = loaded.job(name).map_err(|e| {
        crate::exit::usage(e, "run `cairn jobs` to list the jobs of the configuration")
    })?;
    let dir = loaded.state_dir();
    let Some(_lock) = lock(&dir, name)? else {
        anyhow::bail!(
            "job {name} is already running (another `cairn run` or the daemon holds {}); this run was skipped",
            dir.join(format!("{name}.lock")).display()
        );
    };
    let mut st = state::load(&dir, name)?;
    let repo = loaded
        .repository(job.repository.get_ref())
        .context("repository references are validated at load")?;
    let host = host
        .map(str::to_string)
        .or_else(|| job.host.clone())
        .unwrap_or_else(backup::hostname);
    crate::hints::check_host(&host)?;
    let mut steps = CliSteps {
        loaded,
        name,
        job,
        base,
        g: global_for(base, repo),
        host,
    };
    let summary = runner::run(name, job, &mut st, &mut steps, stop);
    state::save(&dir, name, &st)?;
    Ok(summary)
}

/// Render every configured job's metrics from its state.
pub fn render_metrics(loaded: &Loaded, daemon: Option<&metrics::DaemonCounters>) -> String {
    let dir = loaded.state_dir();
    let jobs: Vec<(String, state::JobState)> = loaded
        .config
        .jobs
        .keys()
        .map(|n| (n.clone(), state::load(&dir, n).unwrap_or_default()))
        .collect();
    metrics::render(&jobs, daemon)
}

pub fn run(g: &Global, a: RunArgs) -> Result<Code> {
    let loaded = a.file.load()?;
    for name in &a.jobs {
        loaded.job(name).map_err(|e| {
            crate::exit::usage(e, "run `cairn jobs` to list the jobs of the configuration")
        })?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    let mut summaries = Vec::new();
    let mut worst = Status::Ok;
    for name in &a.jobs {
        let started = runner::now_seconds();
        let summary = match run_job(g, &loaded, name, a.host.as_deref(), &stop) {
            Ok(s) => s,
            // Not recorded in the job state (it may be another run's: "already running"), so
            // not in the metrics either; the exit code and this summary say it.
            Err(e) => RunSummary {
                job: name.clone(),
                start_timestamp_seconds: started,
                end_timestamp_seconds: runner::now_seconds(),
                status: Some(Status::Failed),
                exit_code: Status::Failed.exit_code(),
                steps: vec![runner::StepReport {
                    step: "start".into(),
                    status: Some(Status::Failed),
                    message: Some(message(e)),
                    duration_seconds: 0.0,
                }],
                ..RunSummary::default()
            },
        };
        worst = worst.max(summary.status.unwrap_or(Status::Failed));
        if !g.json && !g.quiet {
            print_summary(&summary)?;
        }
        summaries.push(summary);
    }
    let mut metrics_error = None;
    if let Some(file) = &a.metrics_file {
        let text = render_metrics(&loaded, None);
        if let Err(e) = state::write_atomic_readable(file, text.as_bytes()) {
            // The runs stand as reported; monitoring will not see them, which fails the run.
            let said = format!(
                "writing the metrics file {}: {e}; the results above stand, but monitoring \
                 does not see them (check that its directory exists and is writable)",
                file.display()
            );
            if !g.json {
                output::error(format_args!("{said}"));
            }
            metrics_error = Some(said);
            worst = worst.max(Status::Failed);
        }
    }
    if g.json {
        output::json(&serde_json::json!({
            "jobs": summaries,
            "status": worst.name(),
            "exit_code": worst.exit_code(),
            "metrics_error": metrics_error,
        }))?;
    }
    Ok(match worst {
        Status::Ok => Code::Ok,
        Status::Partial => Code::Partial,
        Status::Damage => Code::Damage,
        Status::Failed => Code::Error,
    })
}

/// SIGTERM or SIGINT sets `stop` (no step starts after the running one); a second one ends
/// the process at once, saying so (the run is then not recorded; nothing is half written).
fn stop_on_signals(stop: Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing the signal handlers")?;
    std::thread::Builder::new()
        .name("cairn-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if stop.swap(true, Ordering::SeqCst) {
                    output::error(format_args!(
                        "a second signal: stopping now, in the middle of the \
                         step; this run is not recorded in the job state (no snapshot is half \
                         written: an interrupted backup leaves only packs for prune)"
                    ));
                    // At once, as the process ends on a signal: no exit handlers while
                    // uploads are going on other threads.
                    // SAFETY: _exit ends the process; nothing runs after it.
                    unsafe { libc::_exit(1) };
                }
                output::remark(format_args!(
                    "stopping after the running step (a second signal stops at once)"
                ));
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn print_summary(s: &RunSummary) -> Result<()> {
    let status = s.status.unwrap_or(Status::Failed);
    crate::outln!(
        "job {}: {} (exit {}) in {:.1}s",
        s.job,
        status.name(),
        s.exit_code,
        (s.end_timestamp_seconds - s.start_timestamp_seconds).max(0.0)
    )?;
    for st in &s.steps {
        let detail = match st.step.as_str() {
            "backup" => s.backup.as_ref().map(|b| {
                format!(
                    "snapshot {}: {} ({} read), {}, {} added",
                    b.snapshot.get(..8).unwrap_or_default(),
                    output::count(b.files, "file"),
                    b.files_read,
                    output::bytes(b.source_bytes),
                    output::bytes(b.added_bytes)
                )
            }),
            "retention" => s.retention.as_ref().map(|r| {
                format!(
                    "removed {}, kept {}{}",
                    r.removed,
                    r.kept,
                    if r.pruned {
                        format!(", pruned {}", output::bytes(r.pruned_bytes))
                    } else {
                        ", no prune this run".into()
                    }
                )
            }),
            "audit" => s.audit.as_ref().map(|a| {
                format!(
                    "read {} ({}), {}",
                    a.subset,
                    output::count(a.packs_read, "pack"),
                    output::count(a.damaged_objects, "damaged object")
                )
            }),
            other => other.strip_prefix("copy ").and_then(|to| {
                s.copies.iter().find(|c| c.to == to).map(|c| {
                    format!(
                        "{}, {} sent",
                        output::count(c.snapshots, "snapshot"),
                        output::bytes(c.bytes)
                    )
                })
            }),
        };
        crate::outln!(
            "  {:<16} {:<8} {:>6.1}s  {}",
            st.step,
            st.status.map_or("not run", |s| s.name()),
            st.duration_seconds,
            st.message.clone().or(detail).unwrap_or_default()
        )?;
    }
    if let Some(r) = &s.repository {
        crate::outln!(
            "  repository: {} of this job, {} in all, {}",
            output::count(r.job_snapshots, "snapshot"),
            r.snapshots,
            output::bytes(r.size_bytes)
        )?;
    }
    Ok(())
}
