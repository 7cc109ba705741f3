//! One run of a job: backup, then retention and prune, then copies, then the audit.
//!
//! The steps themselves are the commands' own code, reached through [`Steps`] (the CLI
//! implements it by calling the same functions `cairn backup`, `forget`, `copy` and `check`
//! run). This module decides what runs (prune every N-th run, the audit's rotating subset,
//! nothing new once a stop was asked for), times each step, and folds the results into one
//! summary whose status is the worst step's.

use super::config::{AuditSubset, Job};
use super::state::JobState;
use crate::check::Subset;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How a step or run ended, in order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Done.
    Ok,
    /// Done, with something left out (unreadable files, a copy that skipped a damaged
    /// snapshot, space a running backup still holds).
    Partial,
    /// The audit found damage.
    Damage,
    /// Failed, or not done because the run was stopped.
    Failed,
}

impl Status {
    /// The process exit code cairn uses for it (see the README's exit codes).
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Partial => 3,
            Status::Damage => 4,
            Status::Failed => 1,
        }
    }

    /// The name used in summaries and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Partial => "partial",
            Status::Damage => "damage",
            Status::Failed => "failed",
        }
    }

    /// Every status, for metrics.
    pub const ALL: [Status; 4] = [Status::Ok, Status::Partial, Status::Damage, Status::Failed];
}

/// What the backup saved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupFacts {
    /// Snapshot id (hex).
    pub snapshot: String,
    /// Files in the snapshot.
    pub files: u64,
    /// Files actually read (the others were unchanged).
    pub files_read: u64,
    /// Bytes of the source.
    pub source_bytes: u64,
    /// Stored bytes the backup added to the repository.
    pub added_bytes: u64,
}

/// What retention and prune did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetentionFacts {
    /// Snapshots removed.
    pub removed: u64,
    /// Snapshots of the job kept.
    pub kept: u64,
    /// Whether prune ran this time.
    pub pruned: bool,
    /// Bytes prune freed.
    pub pruned_bytes: u64,
}

/// What one copy did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CopyFacts {
    /// Destination repository name.
    pub to: String,
    /// Snapshots copied.
    pub snapshots: u64,
    /// Bytes sent.
    pub bytes: u64,
}

/// What the audit found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditFacts {
    /// The subset read (`3/7`, `10%`, `all`, or `structure` when no data was read).
    pub subset: String,
    /// Packs read.
    pub packs_read: u64,
    /// Damaged objects found.
    pub damaged_objects: u64,
}

/// The repository after the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepositoryFacts {
    /// Snapshots of this job in the repository.
    pub job_snapshots: u64,
    /// Snapshots in the repository.
    pub snapshots: u64,
    /// Stored bytes of the whole repository.
    pub size_bytes: u64,
}

/// One step's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// `backup`, `retention`, `copy NAME`, `audit`.
    pub step: String,
    /// How it ended; `None`: not run.
    pub status: Option<Status>,
    /// Why it failed or was not run.
    pub message: Option<String>,
    /// Seconds it took.
    pub duration_seconds: f64,
}

/// One run's summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSummary {
    /// The job.
    pub job: String,
    /// Start, Unix seconds.
    pub start_timestamp_seconds: f64,
    /// End, Unix seconds.
    pub end_timestamp_seconds: f64,
    /// The worst step status.
    pub status: Option<Status>,
    /// Its exit code.
    pub exit_code: u8,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// The backup's facts.
    pub backup: Option<BackupFacts>,
    /// Retention's facts.
    pub retention: Option<RetentionFacts>,
    /// Each copy's facts.
    pub copies: Vec<CopyFacts>,
    /// The audit's facts.
    pub audit: Option<AuditFacts>,
    /// The repository afterwards.
    pub repository: Option<RepositoryFacts>,
}

/// A step's outcome: its status and facts, or why it failed.
pub type StepResult<T> = Result<(Status, T), String>;

/// The steps, as the commands run them.
pub trait Steps {
    /// Back up the job's source into its repository.
    fn backup(&mut self) -> StepResult<BackupFacts>;
    /// Apply the retention policy to the job's snapshots; with `prune`, prune after.
    fn retention(&mut self, prune: bool) -> StepResult<RetentionFacts>;
    /// Copy the job's snapshots the repository `to` lacks.
    fn copy(&mut self, to: &str) -> StepResult<CopyFacts>;
    /// Check the repository, reading `subset` of the packs (none: structure only).
    fn audit(&mut self, subset: Option<Subset>) -> StepResult<AuditFacts>;
    /// Count the job's snapshots and measure the repository.
    fn repository(&mut self) -> StepResult<RepositoryFacts>;
}

/// The tag every snapshot of job `name` carries, so retention and copies see only its own.
pub fn job_tag(name: &str) -> String {
    format!("job:{name}")
}

/// Now, in Unix seconds.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Run job `name` once. `stop` asks for no new step to start; the state is updated (run count,
/// audit rotation, last results) for the caller to save.
pub fn run(
    name: &str,
    job: &Job,
    state: &mut JobState,
    steps: &mut dyn Steps,
    stop: &AtomicBool,
) -> RunSummary {
    let mut summary = RunSummary {
        job: name.to_string(),
        start_timestamp_seconds: now_seconds(),
        ..RunSummary::default()
    };
    let run_number = state.runs + 1;
    let step =
        |summary: &mut RunSummary, label: String, f: &mut dyn FnMut() -> Result<Status, String>| {
            if stop.load(Ordering::SeqCst) {
                summary.steps.push(StepReport {
                    step: label,
                    status: Some(Status::Failed),
                    message: Some("not started: cairn was asked to stop".into()),
                    duration_seconds: 0.0,
                });
                return None;
            }
            let t = Instant::now();
            let r = f();
            let (status, message) = match r {
                Ok(s) => (s, None),
                Err(e) => (Status::Failed, Some(e)),
            };
            summary.steps.push(StepReport {
                step: label,
                status: Some(status),
                message,
                duration_seconds: t.elapsed().as_secs_f64(),
            });
            Some(status)
        };

    let mut facts = None;
    let backup = step(&mut summary, "backup".into(), &mut || {
        steps.backup().map(|(s, f)| {
            facts = Some(f);
            s
        })
    });
    summary.backup = facts;

    if let Some(r) = &job.retention {
        if backup.is_some_and(|s| s < Status::Failed) {
            let every = r
                .prune_every
                .as_ref()
                .map_or(1, |p| u64::from(*p.get_ref()));
            let prune = r.max_size.is_some() || run_number.is_multiple_of(every);
            let mut facts = None;
            step(&mut summary, "retention".into(), &mut || {
                steps.retention(prune).map(|(s, f)| {
                    facts = Some(f);
                    s
                })
            });
            summary.retention = facts;
        } else {
            summary.steps.push(StepReport {
                step: "retention".into(),
                status: None,
                message: Some("not run: the backup failed, so older snapshots are kept".into()),
                duration_seconds: 0.0,
            });
        }
    }

    for to in &job.copy_to {
        let to = to.get_ref();
        let mut facts = None;
        step(&mut summary, format!("copy {to}"), &mut || {
            steps.copy(to).map(|(s, f)| {
                facts = Some(f);
                s
            })
        });
        summary.copies.extend(facts);
    }

    if let Some(a) = &job.audit {
        let configured = a
            .read_data_subset
            .as_ref()
            .and_then(|s| AuditSubset::parse(s.get_ref()).ok());
        let (subset, label) = match configured {
            None => (None, "structure".to_string()),
            Some(AuditSubset::All) => (Some(Subset::All), "all".into()),
            Some(AuditSubset::Fraction(f)) => {
                (Some(Subset::Fraction(f)), format!("{}%", f * 100.0))
            }
            Some(AuditSubset::Rotating(n)) => {
                let part = state.audit_next % n + 1;
                (Some(Subset::Part(part, n)), format!("{part}/{n}"))
            }
        };
        let mut facts = None;
        let done = step(&mut summary, "audit".into(), &mut || {
            steps.audit(subset).map(|(s, mut f)| {
                f.subset = label.clone();
                facts = Some(f);
                s
            })
        });
        if done.is_some_and(|s| s != Status::Failed) {
            state.audit_next += 1;
        }
        summary.audit = facts;
    }

    // Measuring is not a step of its own: it never makes a run fail.
    if !stop.load(Ordering::SeqCst) {
        summary.repository = steps.repository().ok().map(|(_, f)| f);
    }

    let worst = summary
        .steps
        .iter()
        .filter_map(|s| s.status)
        .max()
        .unwrap_or(Status::Ok);
    summary.status = Some(worst);
    summary.exit_code = worst.exit_code();
    summary.end_timestamp_seconds = now_seconds();
    state.record(&summary);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    struct Fake {
        backup: StepResult<BackupFacts>,
        calls: Vec<String>,
    }

    impl Steps for Fake {
        fn backup(&mut self) -> StepResult<BackupFacts> {
            self.calls.push("backup".into());
            self.backup.clone()
        }
        fn retention(&mut self, prune: bool) -> StepResult<RetentionFacts> {
            self.calls.push(format!("retention prune={prune}"));
            Ok((Status::Ok, RetentionFacts::default()))
        }
        fn copy(&mut self, to: &str) -> StepResult<CopyFacts> {
            self.calls.push(format!("copy {to}"));
            Err("unreachable".into())
        }
        fn audit(&mut self, subset: Option<Subset>) -> StepResult<AuditFacts> {
            self.calls.push(format!("audit {subset:?}"));
            Ok((Status::Ok, AuditFacts::default()))
        }
        fn repository(&mut self) -> StepResult<RepositoryFacts> {
            Ok((Status::Ok, RepositoryFacts::default()))
        }
    }

    const CONFIG: &str = r#"
[repositories.a]
url = "/a"
key = "/k"
[repositories.b]
url = "/b"
key = "/k"
[jobs.j]
repository = "a"
copy_to = ["b"]
source = { kind = "paths", paths = ["/etc"] }
retention = { keep_last = 3, prune_every = 2 }
audit = { read_data_subset = "1/3" }
"#;

    #[test]
    fn order_rotation_prune_every_and_worst_status() {
        let loaded = super::super::config::parse(Path::new("c.toml"), CONFIG).unwrap();
        let job = loaded.job("j").unwrap();
        let mut state = JobState::default();
        let stop = AtomicBool::new(false);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut fake = Fake {
                backup: Ok((Status::Ok, BackupFacts::default())),
                calls: Vec::new(),
            };
            let s = run("j", job, &mut state, &mut fake, &stop);
            assert_eq!(s.status, Some(Status::Failed), "the copy fails every time");
            assert_eq!(s.exit_code, 1);
            seen.push(fake.calls.join("; "));
        }
        assert_eq!(
            seen[0],
            "backup; retention prune=false; copy b; audit Some(Part(1, 3))"
        );
        assert_eq!(
            seen[1],
            "backup; retention prune=true; copy b; audit Some(Part(2, 3))"
        );
        assert_eq!(
            seen[2],
            "backup; retention prune=false; copy b; audit Some(Part(3, 3))"
        );
        assert_eq!(
            seen[3],
            "backup; retention prune=true; copy b; audit Some(Part(1, 3))"
        );
        assert_eq!(state.runs, 4);

        // A failed backup keeps old snapshots; a stop request starts nothing.
        let mut fake = Fake {
            backup: Err("no".into()),
            calls: Vec::new(),
        };
        run("j", job, &mut state, &mut fake, &stop);
        assert_eq!(
            fake.calls[..2],
            ["backup".to_string(), "copy b".to_string()]
        );
        stop.store(true, Ordering::SeqCst);
        let mut fake = Fake {
            backup: Ok((Status::Partial, BackupFacts::default())),
            calls: Vec::new(),
        };
        let s = run("j", job, &mut state, &mut fake, &stop);
        assert!(fake.calls.is_empty());
        assert_eq!(s.status, Some(Status::Failed));
    }
}
