//! Helpers for the tests of configured jobs (`cairn run`, `daemon`, `generate`): the
//! configuration file, `promtool`, and job snapshots.

use crate::{s, Fixture};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Write `text` as the configuration `name` in the fixture; returns its path.
pub fn write_config(fx: &Fixture, name: &str, text: &str) -> PathBuf {
    let p = fx.path(name);
    std::fs::write(&p, text).expect("writing the configuration");
    p
}

/// A `[repositories.NAME]` table for the fixture's repository opened with the identity
/// (local) or the identity and the S3 server of the fixture (S3).
pub fn repository_table(
    name: &str,
    url: &str,
    identity: &Path,
    s3_endpoint: Option<&str>,
) -> String {
    let mut t = format!(
        "[repositories.{name}]\nurl = \"{url}\"\nidentity = \"{}\"\n",
        s(identity)
    );
    if let Some(e) = s3_endpoint {
        t.push_str(&format!(
            "s3 = {{ endpoint = \"{e}\", timeout = 10, retries = 2 }}\n"
        ));
    }
    t
}

/// `promtool check metrics` on `text`: None when it is clean, else its complaints. Panics when
/// promtool is missing (the tests need it: `.ci/deps test` installs Debian's prometheus).
pub fn promtool(text: &str) -> Option<String> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (apt-get install prometheus, or .ci/deps test)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        None
    } else {
        Some(said)
    }
}

/// Ids of the snapshots of job `job` in the fixture's repository, oldest first.
pub fn job_snapshots(fx: &Fixture, job: &str) -> Vec<String> {
    let out = fx.id(&["--json", "snapshots", "--tag", &format!("job:{job}")]);
    out.ok();
    out.json()
        .as_array()
        .expect("snapshot list")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_string())
        .collect()
}

/// The value of the metric line starting with `prefix` (name and labels) in `text`.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
