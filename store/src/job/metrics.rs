//! Prometheus text exposition (format 0.0.4) of the jobs' state.
//!
//! One label, `job` (the configured job names: bounded), plus `outcome` from a fixed set.
//! Gauges of the last run carry `last` in their names; counters end in `_total`; units are
//! in the names (`_seconds`, `_bytes`). Served by `cairn daemon --metrics-listen` and written
//! by `--metrics-file` for node_exporter's textfile collector.

use super::runner::Status;
use super::state::JobState;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Daemon-only counters, by job.
#[derive(Debug, Clone, Default)]
pub struct DaemonCounters {
    /// Scheduled runs skipped because the previous run was still going.
    pub skipped_overlap: BTreeMap<String, u64>,
    /// Whether a run of the job is going now.
    pub running: BTreeMap<String, bool>,
}

/// One metric family and its samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        samples: Vec::new(),
    }
}

/// Escape a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Render the metrics of `jobs` (name, state), and the daemon's counters if given.
pub fn render(jobs: &[(String, JobState)], daemon: Option<&DaemonCounters>) -> String {
    let mut fams = vec![
        family(
            "cairn_job_last_start_timestamp_seconds",
            "gauge",
            "Start of the job's last run (Unix time).",
        ),
        family(
            "cairn_job_last_end_timestamp_seconds",
            "gauge",
            "End of the job's last run (Unix time).",
        ),
        family(
            "cairn_job_last_success_timestamp_seconds",
            "gauge",
            "End of the job's last fully successful run (Unix time).",
        ),
        family(
            "cairn_job_last_duration_seconds",
            "gauge",
            "Duration of the job's last run.",
        ),
        family(
            "cairn_job_last_exit_code",
            "gauge",
            "Exit code of the job's last run: 0 ok, 1 failed, 3 partial, 4 damage found.",
        ),
        family(
            "cairn_job_last_outcome",
            "gauge",
            "1 for the outcome of the job's last run, 0 for the others.",
        ),
        family(
            "cairn_job_runs_total",
            "counter",
            "Runs of the job, by outcome.",
        ),
        family(
            "cairn_job_last_source_bytes",
            "gauge",
            "Bytes of the source in the last backup.",
        ),
        family(
            "cairn_job_last_added_bytes",
            "gauge",
            "Stored bytes the last backup added to the repository.",
        ),
        family(
            "cairn_job_added_bytes_total",
            "counter",
            "Stored bytes added by all the job's backups.",
        ),
        family(
            "cairn_job_last_files",
            "gauge",
            "Files in the last backup's snapshot.",
        ),
        family(
            "cairn_job_last_files_read",
            "gauge",
            "Files the last backup read (the others were unchanged).",
        ),
        family(
            "cairn_job_snapshots",
            "gauge",
            "Snapshots of the job in its repository after the last run.",
        ),
        family(
            "cairn_job_repository_snapshots",
            "gauge",
            "Snapshots in the job's repository after the last run.",
        ),
        family(
            "cairn_job_repository_size_bytes",
            "gauge",
            "Stored bytes of the job's repository after the last run.",
        ),
        family(
            "cairn_job_last_removed_snapshots",
            "gauge",
            "Snapshots the last run's retention removed.",
        ),
        family(
            "cairn_job_last_pruned_bytes",
            "gauge",
            "Bytes the last run's prune freed.",
        ),
        family(
            "cairn_job_last_copied_bytes",
            "gauge",
            "Bytes the last run's copies sent.",
        ),
        family(
            "cairn_job_last_audit_timestamp_seconds",
            "gauge",
            "End of the run with the job's last audit (Unix time).",
        ),
        family(
            "cairn_job_last_audit_damaged_objects",
            "gauge",
            "Damaged objects the job's last audit found.",
        ),
    ];
    let mut put = |name: &str, labels: String, v: f64| {
        if let Some(f) = fams.iter_mut().find(|f| f.name == name) {
            f.samples.push((labels, v));
        }
    };
    for (name, st) in jobs {
        let job = format!("job=\"{}\"", label(name));
        if let Some(last) = &st.last {
            put(
                "cairn_job_last_start_timestamp_seconds",
                job.clone(),
                last.start_timestamp_seconds,
            );
            put(
                "cairn_job_last_end_timestamp_seconds",
                job.clone(),
                last.end_timestamp_seconds,
            );
            put(
                "cairn_job_last_duration_seconds",
                job.clone(),
                (last.end_timestamp_seconds - last.start_timestamp_seconds).max(0.0),
            );
            put(
                "cairn_job_last_exit_code",
                job.clone(),
                f64::from(last.exit_code),
            );
            for s in Status::ALL {
                let v = if last.status == Some(s) { 1.0 } else { 0.0 };
                put(
                    "cairn_job_last_outcome",
                    format!("{job},outcome=\"{}\"", s.name()),
                    v,
                );
            }
            if let Some(b) = &last.backup {
                put(
                    "cairn_job_last_source_bytes",
                    job.clone(),
                    b.source_bytes as f64,
                );
                put(
                    "cairn_job_last_added_bytes",
                    job.clone(),
                    b.added_bytes as f64,
                );
                put("cairn_job_last_files", job.clone(), b.files as f64);
                put(
                    "cairn_job_last_files_read",
                    job.clone(),
                    b.files_read as f64,
                );
            }
            if let Some(r) = &last.repository {
                put("cairn_job_snapshots", job.clone(), r.job_snapshots as f64);
                put(
                    "cairn_job_repository_snapshots",
                    job.clone(),
                    r.snapshots as f64,
                );
                put(
                    "cairn_job_repository_size_bytes",
                    job.clone(),
                    r.size_bytes as f64,
                );
            }
            if let Some(r) = &last.retention {
                put(
                    "cairn_job_last_removed_snapshots",
                    job.clone(),
                    r.removed as f64,
                );
                put(
                    "cairn_job_last_pruned_bytes",
                    job.clone(),
                    r.pruned_bytes as f64,
                );
            }
            if !last.copies.is_empty() {
                let sent: u64 = last.copies.iter().map(|c| c.bytes).sum();
                put("cairn_job_last_copied_bytes", job.clone(), sent as f64);
            }
        }
        // 0 until a run succeeds, so that "last success too old" fires for a job that never
        // succeeded, not only for one that stopped succeeding.
        put(
            "cairn_job_last_success_timestamp_seconds",
            job.clone(),
            st.last_success_timestamp_seconds.unwrap_or(0.0),
        );
        if let Some((t, damaged)) = st.last_audit {
            put("cairn_job_last_audit_timestamp_seconds", job.clone(), t);
            put(
                "cairn_job_last_audit_damaged_objects",
                job.clone(),
                damaged as f64,
            );
        }
        for s in Status::ALL {
            let n = st.outcomes.get(s.name()).copied().unwrap_or(0);
            put(
                "cairn_job_runs_total",
                format!("{job},outcome=\"{}\"", s.name()),
                n as f64,
            );
        }
        put(
            "cairn_job_added_bytes_total",
            job.clone(),
            st.added_bytes_total as f64,
        );
    }
    let mut out = String::new();
    for f in &fams {
        if f.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, v) in &f.samples {
            let _ = writeln!(out, "{}{{{labels}}} {}", f.name, number(*v));
        }
    }
    if let Some(d) = daemon {
        let _ = writeln!(out, "# HELP cairn_job_skipped_overlap_total Scheduled runs skipped because the job's previous run was still going.");
        let _ = writeln!(out, "# TYPE cairn_job_skipped_overlap_total counter");
        for (name, n) in &d.skipped_overlap {
            let _ = writeln!(
                out,
                "cairn_job_skipped_overlap_total{{job=\"{}\"}} {n}",
                label(name)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cairn_job_running 1 while a run of the job is going."
        );
        let _ = writeln!(out, "# TYPE cairn_job_running gauge");
        for (name, r) in &d.running {
            let _ = writeln!(
                out,
                "cairn_job_running{{job=\"{}\"}} {}",
                label(name),
                u8::from(*r)
            );
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::runner::{BackupFacts, RunSummary};

    #[test]
    fn renders_families_once_with_escaped_labels() {
        let mut st = JobState::default();
        st.record(&RunSummary {
            job: "a".into(),
            start_timestamp_seconds: 10.0,
            end_timestamp_seconds: 12.5,
            status: Some(Status::Ok),
            backup: Some(BackupFacts {
                added_bytes: 7,
                ..BackupFacts::default()
            }),
            ..RunSummary::default()
        });
        let text = render(
            &[
                ("a".into(), st.clone()),
                ("b\"c".into(), JobState::default()),
            ],
            None,
        );
        assert_eq!(
            text.matches("# TYPE cairn_job_runs_total counter").count(),
            1
        );
        assert!(
            text.contains("cairn_job_last_duration_seconds{job=\"a\"} 2.5"),
            "{text}"
        );
        assert!(
            text.contains("cairn_job_last_success_timestamp_seconds{job=\"a\"} 12.5"),
            "{text}"
        );
        assert!(
            text.contains("cairn_job_runs_total{job=\"b\\\"c\",outcome=\"ok\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("cairn_job_added_bytes_total{job=\"a\"} 7"),
            "{text}"
        );
    }
}
