//! What a job remembers between runs: how many runs, where the audit rotation stands, and
//! the last results (the metrics are rendered from them, so a `cairn run` from a timer still
//! reports the last success time of earlier runs).

use super::runner::{RunSummary, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A job's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobState {
    /// Runs so far.
    pub runs: u64,
    /// Audits done (the rotating subset's position).
    pub audit_next: u64,
    /// Runs by outcome name.
    pub outcomes: BTreeMap<String, u64>,
    /// The last run.
    pub last: Option<RunSummary>,
    /// End of the last run that succeeded (Unix seconds).
    pub last_success_timestamp_seconds: Option<f64>,
    /// The last audit's results and time.
    pub last_audit: Option<(f64, u64)>,
    /// Stored bytes added by all backups.
    pub added_bytes_total: u64,
}

impl JobState {
    /// Fold a finished run in.
    pub fn record(&mut self, s: &RunSummary) {
        self.runs += 1;
        let status = s.status.unwrap_or(Status::Failed);
        *self.outcomes.entry(status.name().into()).or_default() += 1;
        if status == Status::Ok {
            self.last_success_timestamp_seconds = Some(s.end_timestamp_seconds);
        }
        if let Some(a) = &s.audit {
            self.last_audit = Some((s.end_timestamp_seconds, a.damaged_objects));
        }
        if let Some(b) = &s.backup {
            self.added_bytes_total = self.added_bytes_total.saturating_add(b.added_bytes);
        }
        self.last = Some(s.clone());
    }
}

/// Errors reading or writing state files.
#[derive(Debug, thiserror::Error)]
#[error("{op} job state {path}: {cause}; check that the state directory (state_dir) is writable")]
pub struct StateError {
    op: &'static str,
    path: String,
    cause: String,
}

/// The state file of job `name` in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Read a job's state; a missing file is a fresh job.
pub fn load(dir: &Path, name: &str) -> Result<JobState, StateError> {
    let p = path(dir, name);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError {
            op: "reading",
            path: p.display().to_string(),
            cause: format!("{e} (delete the file to start the job's counters afresh)"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JobState::default()),
        Err(e) => Err(StateError {
            op: "reading",
            path: p.display().to_string(),
            cause: e.to_string(),
        }),
    }
}

/// Write a job's state atomically.
pub fn save(dir: &Path, name: &str, state: &JobState) -> Result<(), StateError> {
    let p = path(dir, name);
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| StateError {
        op: "encoding",
        path: p.display().to_string(),
        cause: e.to_string(),
    })?;
    std::fs::create_dir_all(dir)
        .and_then(|()| write_atomic(&p, &bytes))
        .map_err(|e| StateError {
            op: "writing",
            path: p.display().to_string(),
            cause: e.to_string(),
        })
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename, so
/// readers never see a partial file. The file's mode follows the umask.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, None)
}

/// [`write_atomic`] for a file other users must read (a metrics file for node_exporter's
/// textfile collector, which runs as its own user; systemd units): mode 0644 whatever the
/// umask (the generated service's is 0077).
pub fn write_atomic_readable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, Some(0o644))
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
