//! The configuration file: named repositories and named jobs (TOML).
//!
//! Secrets never live in the file: it names the files that hold them (write key, identity,
//! passphrase, S3 credentials, etcd client key). Every table refuses unknown keys, so a typo is
//! an error with its line and column rather than a silently ignored setting.

use super::schedule::Schedule;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::Spanned;

/// Where the configuration is read from when neither `--config` nor `CAIRN_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/cairn/cairn.toml";

/// Where job state (run counters, last results for the metrics) is kept by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cairn";

/// A configuration error, located in the file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading configuration {path}: {cause}; pass --config FILE or set CAIRN_CONFIG")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not valid, at a place in it.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for job state (counters, last results); default /var/lib/cairn.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Named repositories.
    #[serde(default)]
    pub repositories: BTreeMap<String, Spanned<Repository>>,
    /// Named jobs.
    #[serde(default)]
    pub jobs: BTreeMap<String, Spanned<Job>>,
    /// Host presets for `backup host` (defined by that command; kept opaque here so the file
    /// stays one format).
    #[serde(default)]
    pub presets: Option<toml::Table>,
}

/// A repository and how to open it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// Location: a path, file:// URL or s3://BUCKET/PREFIX.
    pub url: String,
    /// Write key file (back up and list; what control-plane hosts hold).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// age identity file (full access).
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// File whose first line is the passphrase.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// Metadata cache directory.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// S3 options.
    #[serde(default)]
    pub s3: S3,
}

/// How to reach S3; credentials come from a file in the AWS format, never from this file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    /// Endpoint URL of an S3-compatible server.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// Shared credentials file (AWS format), exported as AWS_SHARED_CREDENTIALS_FILE.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Profile in that file (AWS_PROFILE).
    #[serde(default)]
    pub profile: Option<String>,
    /// PEM file of CA certificates to trust besides the system's (AWS_CA_BUNDLE).
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Seconds one request may take.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Retries of one request.
    #[serde(default)]
    pub retries: Option<usize>,
}

/// A job: what to back up, where, when, and what to do after.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// What to back up.
    pub source: Source,
    /// Name of the repository (a `[repositories.NAME]` table).
    pub repository: Spanned<String>,
    /// Tags recorded on every snapshot (besides `job:NAME`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Host name recorded (default: this host's name).
    #[serde(default)]
    pub host: Option<String>,
    /// Cron expression: 5 fields (minute first) or 6 (seconds first).
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// IANA time zone of the schedule and of the retention calendar; default UTC.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// Start up to this long after the scheduled time, at random (`30s`, `5m`, `1h`).
    #[serde(default)]
    pub random_delay: Option<Spanned<String>>,
    /// Retention.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Repositories (names) to copy the job's snapshots to after the backup.
    #[serde(default)]
    pub copy_to: Vec<Spanned<String>>,
    /// Integrity audit after the run.
    #[serde(default)]
    pub audit: Option<Audit>,
}

/// What a job backs up.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// Files and directories.
    Paths {
        /// Paths to back up.
        paths: Vec<PathBuf>,
        /// Exclude globs.
        #[serde(default)]
        exclude: Vec<String>,
        /// Do not cross file systems.
        #[serde(default)]
        one_file_system: bool,
    },
    /// A live etcd snapshot.
    Etcd(Etcd),
    /// Static pod resources.
    StaticPods {
        /// Directory of `<component>-pod-<revision>` directories.
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// etcd and static pod resources in one snapshot.
    Cluster {
        /// etcd connection.
        #[serde(flatten)]
        etcd: Etcd,
        /// Directory of `<component>-pod-<revision>` directories.
        #[serde(default)]
        static_pods_dir: Option<PathBuf>,
    },
    /// Project (namespace) exports from the Kubernetes API.
    Project {
        /// Namespaces; empty with `all_namespaces`.
        #[serde(default)]
        namespaces: Vec<String>,
        /// Every namespace.
        #[serde(default)]
        all_namespaces: bool,
        /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, else the service account).
        #[serde(default)]
        kubeconfig: Option<PathBuf>,
        /// kubeconfig context.
        #[serde(default)]
        context: Option<String>,
    },
    /// A host's configuration by node role (`backup host`), with its inventory.
    Host {
        /// Presets (`auto`: those whose marker files exist); `[presets.NAME]` of this file too.
        #[serde(default)]
        presets: Vec<String>,
        /// More paths, which must exist.
        #[serde(default)]
        paths: Vec<PathBuf>,
        /// The host root to read below (default `/`).
        #[serde(default)]
        root: Option<PathBuf>,
        /// Record the package list, OS release, kernel and hostname (default true).
        #[serde(default = "yes")]
        inventory: bool,
    },
}

fn yes() -> bool {
    true
}

/// How to reach etcd (TLS files by path).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Etcd {
    /// Client URLs, local member first.
    pub endpoints: Vec<String>,
    /// CA bundle.
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Client key.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Seconds to wait for a member.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// Retention: keep rules and exact limits, applied to the job's own snapshots.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep the N newest.
    pub keep_last: Option<u32>,
    /// Keep one per hour, N hours.
    pub keep_hourly: Option<u32>,
    /// Keep one per day, N days.
    pub keep_daily: Option<u32>,
    /// Keep one per ISO week, N weeks.
    pub keep_weekly: Option<u32>,
    /// Keep one per month, N months.
    pub keep_monthly: Option<u32>,
    /// Keep one per year, N years.
    pub keep_yearly: Option<u32>,
    /// Keep everything within this span of the newest (`7d`).
    pub keep_within: Option<Spanned<String>>,
    /// At most this many of the job's snapshots.
    pub max_count: Option<Spanned<u32>>,
    /// At most this many stored bytes in the whole repository after the prune (`10GB`).
    pub max_size: Option<Spanned<String>>,
    /// Prune every N-th run (default 1: every run); with `max_size`, every run.
    pub prune_every: Option<Spanned<u32>>,
}

/// The audit after each run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// `1/7`: read one seventh of the packs per run, rotating, so seven runs read them all;
    /// `10%`: a random tenth; `all`: every pack. Absent: structure only.
    pub read_data_subset: Option<Spanned<String>>,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where it was read from.
    pub path: PathBuf,
    /// What it says.
    pub config: Config,
    /// Each job's schedule, if it has one.
    pub schedules: BTreeMap<String, Option<Schedule>>,
}

impl Loaded {
    /// The repositories `job` writes (its own, then each `copy_to`) that are known here.
    pub fn repositories_of<'a>(&'a self, job: &'a Job) -> impl Iterator<Item = &'a Repository> {
        std::iter::once(job.repository.get_ref())
            .chain(job.copy_to.iter().map(|c| c.get_ref()))
            .filter_map(|name| self.repository(name))
    }

    /// The directory of a local repository (a path or `file://` URL); `None` for a remote one.
    pub fn local_dir(r: &Repository) -> Option<PathBuf> {
        let url = r.url.strip_prefix("file://").unwrap_or(&r.url);
        (!url.contains("://")).then(|| PathBuf::from(url))
    }

    /// The job named `name`, or an error listing the jobs there are.
    pub fn job(&self, name: &str) -> Result<&Job, String> {
        self.config
            .jobs
            .get(name)
            .map(|j| j.get_ref())
            .ok_or_else(|| {
                let names: Vec<&str> = self.config.jobs.keys().map(String::as_str).collect();
                format!(
                    "no job {name:?} in {}; jobs defined: {}",
                    self.path.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })
    }

    /// The repository a name refers to (validated at load time).
    pub fn repository(&self, name: &str) -> Option<&Repository> {
        self.config.repositories.get(name).map(|r| r.get_ref())
    }

    /// The directory job state is kept in.
    pub fn state_dir(&self) -> PathBuf {
        self.config
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// A job's schedule.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.get(name).and_then(Option::as_ref)
    }
}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.display().to_string(),
        cause,
    })?;
    parse(path, &text)
}

/// Parse and validate `text` (read from `path`, for messages).
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let at = |span: Option<Range<usize>>, message: String| {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        ConfigError::Invalid {
            path: path.display().to_string(),
            line,
            column,
            message,
        }
    };
    let config: Config = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
    if let Some(d) = config.state_dir.as_deref().filter(|d| d.is_relative()) {
        return Err(at(None, relative("state_dir", d)));
    }
    let mut schedules = BTreeMap::new();
    for (name, repo) in &config.repositories {
        let r = repo.get_ref();
        if let Some(what) = r.relative_path() {
            return Err(at(
                Some(repo.span()),
                format!("repository {name:?}: {what}"),
            ));
        }
        let creds = [&r.key, &r.identity, &r.passphrase_file]
            .iter()
            .filter(|c| c.is_some())
            .count();
        if creds == 0 {
            return Err(at(
                Some(repo.span()),
                format!("repository {name:?} names no key: give `key` (a write key file), `identity` or `passphrase_file`"),
            ));
        }
        if r.identity.is_some() && r.passphrase_file.is_some() {
            return Err(at(
                Some(repo.span()),
                format!(
                    "repository {name:?} gives both `identity` and `passphrase_file`; give one"
                ),
            ));
        }
    }
    for (name, job) in &config.jobs {
        let span = job.span();
        let j = job.get_ref();
        if !valid_job_name(name) {
            return Err(at(Some(span), format!("job name {name:?}: use letters, digits, `-`, `_` and `.` (it names files and systemd units)")));
        }
        let known = |r: &Spanned<String>, what: &str| {
            if config.repositories.contains_key(r.get_ref()) {
                Ok(())
            } else {
                let names: Vec<&str> = config.repositories.keys().map(String::as_str).collect();
                Err(at(
                    Some(r.span()),
                    format!(
                        "job {name:?}: {what} {:?} is not a [repositories.NAME] table (defined: {})",
                        r.get_ref(),
                        if names.is_empty() { "none".into() } else { names.join(", ") }
                    ),
                ))
            }
        };
        known(&j.repository, "repository")?;
        for c in &j.copy_to {
            known(c, "copy_to")?;
            if c.get_ref() == j.repository.get_ref() {
                return Err(at(
                    Some(c.span()),
                    format!("job {name:?}: copy_to names the job's own repository"),
                ));
            }
        }
        let tz = match &j.timezone {
            Some(tz) => {
                Some(super::schedule::zone(tz.get_ref()).map_err(|e| at(Some(tz.span()), e))?)
            }
            None => None,
        };
        let schedule = match &j.schedule {
            Some(s) => Some(
                Schedule::new(s.get_ref(), tz.unwrap_or(chrono_tz::UTC))
                    .map_err(|e| at(Some(s.span()), format!("job {name:?}: {e}")))?,
            ),
            None => None,
        };
        if let Some(d) = &j.random_delay {
            super::schedule::parse_duration(d.get_ref())
                .map_err(|e| at(Some(d.span()), format!("job {name:?}: random_delay: {e}")))?;
        }
        match &j.source {
            Source::Paths { paths, .. } if paths.is_empty() => {
                return Err(at(
                    Some(span),
                    format!("job {name:?}: a paths source needs `paths = [...]`"),
                ));
            }
            Source::Etcd(e) | Source::Cluster { etcd: e, .. } if e.endpoints.is_empty() => {
                return Err(at(
                    Some(span),
                    format!("job {name:?}: an etcd source needs `endpoints = [...]`"),
                ));
            }
            Source::Project {
                namespaces,
                all_namespaces,
                ..
            } if namespaces.is_empty() != *all_namespaces => {
                return Err(at(Some(span), format!("job {name:?}: a project source needs either `namespaces = [...]` or `all_namespaces = true`")));
            }
            Source::Host { presets, paths, .. } => {
                if presets.is_empty() && paths.is_empty() {
                    return Err(at(Some(span), format!("job {name:?}: a host source needs `presets = [...]` (e.g. [\"auto\"]) or `paths = [...]`")));
                }
                let named: Vec<&String> = presets.iter().filter(|p| *p != "auto").collect();
                if !named.is_empty() {
                    let all = crate::host::config::parse(text, &path.display().to_string())
                        .map_err(|e| {
                            at(Some(span.clone()), format!("job {name:?}: presets: {e}"))
                        })?;
                    if let Some(p) = named.iter().find(|p| !all.iter().any(|a| &a.name == **p)) {
                        return Err(at(Some(span), format!("job {name:?}: no preset named {p:?} (`cairn presets list` shows them; define your own as [presets.NAME])")));
                    }
                }
            }
            _ => {}
        }
        if let Some(what) = relative_path(j) {
            return Err(at(Some(span), format!("job {name:?}: {what}")));
        }
        if let Some(r) = &j.retention {
            if let Some(w) = &r.keep_within {
                crate::retention::parse_span(w.get_ref())
                    .map_err(|e| at(Some(w.span()), format!("job {name:?}: keep_within: {e}")))?;
            }
            if let Some(m) = &r.max_size {
                crate::retention::parse_size(m.get_ref())
                    .map_err(|e| at(Some(m.span()), format!("job {name:?}: max_size: {e}")))?;
            }
            if let Some(m) = &r.max_count {
                if *m.get_ref() == 0 {
                    return Err(at(
                        Some(m.span()),
                        format!("job {name:?}: max_count must be at least 1"),
                    ));
                }
            }
            if let Some(p) = &r.prune_every {
                if *p.get_ref() == 0 {
                    return Err(at(
                        Some(p.span()),
                        format!("job {name:?}: prune_every must be at least 1 (runs)"),
                    ));
                }
            }
            if r.keep_rules() == 0 && r.max_count.is_none() && r.max_size.is_none() {
                return Err(at(Some(span), format!("job {name:?}: [retention] has no rule: give keep_* rules, max_count or max_size, or remove the table")));
            }
        }
        if let Some(a) = &j.audit {
            if let Some(s) = &a.read_data_subset {
                AuditSubset::parse(s.get_ref()).map_err(|e| {
                    at(
                        Some(s.span()),
                        format!("job {name:?}: read_data_subset: {e}"),
                    )
                })?;
            }
        }
        schedules.insert(name.clone(), schedule);
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        config,
        schedules,
    })
}

/// Why `path`, given as `what`, is refused: relative paths would be resolved against each
/// run's working directory (`/` under systemd), not the file's.
fn relative(what: &str, path: &Path) -> String {
    format!(
        "{what} {} is a relative path; give an absolute one (runs resolve paths against their \
         working directory, `/` under systemd, not against this file)",
        path.display()
    )
}

/// The first of `paths` (named `what`) that is relative, as [`relative`] says it.
fn first_relative<'a>(
    paths: impl IntoIterator<Item = (&'a str, Option<&'a Path>)>,
) -> Option<String> {
    paths
        .into_iter()
        .find_map(|(what, p)| p.filter(|p| p.is_relative()).map(|p| relative(what, p)))
}

impl Repository {
    /// The first relative file path the repository names (its URL included, when local).
    fn relative_path(&self) -> Option<String> {
        // A local path, or a file:// URL's path; other URLs (and restic-style `s3:…`, which
        // the location parser explains) are not paths.
        let local = match self.url.strip_prefix("file://") {
            Some(path) => Some(Path::new(path)),
            None => (!self.url.contains(':')).then(|| Path::new(&self.url)),
        };
        first_relative([
            ("url", local),
            ("key", self.key.as_deref()),
            ("identity", self.identity.as_deref()),
            ("passphrase_file", self.passphrase_file.as_deref()),
            ("cache_dir", self.cache_dir.as_deref()),
            ("s3.credentials_file", self.s3.credentials_file.as_deref()),
            ("s3.ca_bundle", self.s3.ca_bundle.as_deref()),
        ])
    }
}

/// The first relative path a job's source names.
fn relative_path(job: &Job) -> Option<String> {
    let etcd = |e: &'_ Etcd| {
        first_relative([
            ("cacert", e.cacert.as_deref()),
            ("cert", e.cert.as_deref()),
            ("key", e.key.as_deref()),
        ])
    };
    let all = |what: &'static str, paths: &'_ [PathBuf]| {
        first_relative(paths.iter().map(|p| (what, Some(p.as_path()))))
    };
    match &job.source {
        Source::Paths { paths, .. } => all("path", paths),
        Source::Etcd(e) => etcd(e),
        Source::StaticPods { dir } => first_relative([("dir", dir.as_deref())]),
        Source::Cluster {
            etcd: e,
            static_pods_dir,
        } => etcd(e).or_else(|| first_relative([("static_pods_dir", static_pods_dir.as_deref())])),
        Source::Project { kubeconfig, .. } => {
            first_relative([("kubeconfig", kubeconfig.as_deref())])
        }
        Source::Host { paths, root, .. } => {
            first_relative([("root", root.as_deref())]).or_else(|| all("path", paths))
        }
    }
}

impl Retention {
    /// How many keep rules are given.
    pub fn keep_rules(&self) -> usize {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .filter(|r| r.is_some())
        .count()
            + usize::from(self.keep_within.is_some())
    }
}

/// The audit's data subset as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AuditSubset {
    /// Every pack, every run.
    All,
    /// One of `n` groups per run, rotating.
    Rotating(u64),
    /// A random share (0–1).
    Fraction(f64),
}

impl AuditSubset {
    /// `all`, `1/N` or `P%`.
    pub fn parse(s: &str) -> Result<AuditSubset, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(AuditSubset::All);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!("{s} is not more than 0% and at most 100%"));
            }
            return Ok(AuditSubset::Fraction(v / 100.0));
        }
        match s.split_once('/') {
            Some(("1", n)) => match n.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(AuditSubset::Rotating(n)),
                _ => Err(format!("{s:?}: N in 1/N must be a number of at least 1")),
            },
            _ => Err(format!(
                "{s:?}: expected `1/N` (one N-th of the packs per run, rotating), `P%` or `all`"
            )),
        }
    }
}

fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, l)| l)
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "/tmp/state"

[repositories.local]
url = "/srv/cairn"
key = "/etc/cairn/write.key"

[repositories.offsite]
url = "s3://bucket/cairn"
key = "/etc/cairn/write.key"
s3 = { endpoint = "http://127.0.0.1:9000", credentials_file = "/etc/cairn/aws" }

[jobs.etcd]
repository = "local"
schedule = "0 3 * * *"
timezone = "Europe/Paris"
copy_to = ["offsite"]
source = { kind = "etcd", endpoints = ["https://127.0.0.1:2379"], cacert = "/a", cert = "/b", key = "/c" }
retention = { max_count = 15, max_size = "10GB" }
audit = { read_data_subset = "1/7" }

[jobs.etc]
repository = "local"
source = { kind = "paths", paths = ["/etc"] }

[presets.master]
paths = ["/etc/origin"]
"#;

    fn err(text: &str) -> (usize, usize, String) {
        match parse(Path::new("c.toml"), text) {
            Err(ConfigError::Invalid {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn good_file_loads() {
        let l = parse(Path::new("c.toml"), GOOD).unwrap();
        assert_eq!(l.config.jobs.len(), 2);
        assert!(l.schedule("etcd").is_some());
        assert!(l.schedule("etc").is_none());
        assert!(l.config.presets.is_some());
        let j = l.job("etcd").unwrap();
        assert!(matches!(j.source, Source::Etcd(_)));
        assert_eq!(
            *j.retention
                .as_ref()
                .unwrap()
                .max_count
                .as_ref()
                .unwrap()
                .get_ref(),
            15
        );
    }

    #[test]
    fn errors_have_line_and_column() {
        let (line, col, msg) = err("[jobs.a]\nrepository = \"x\"\nsorce = 1\n");
        assert_eq!((line, col), (3, 1), "{msg}");
        assert!(msg.contains("sorce"), "{msg}");
        let bad_repo = GOOD.replace(
            "repository = \"local\"\nschedule",
            "repository = \"lokal\"\nschedule",
        );
        let (line, col, msg) = err(&bad_repo);
        assert_eq!((line, col), (14, 14), "{msg}");
        assert!(
            msg.contains("lokal") && msg.contains("local, offsite"),
            "{msg}"
        );
        let (line, _, msg) = err(&GOOD.replace("0 3 * * *", "0 25 * * *"));
        assert_eq!(line, 15, "{msg}");
        let (line, _, msg) = err(&GOOD.replace("Europe/Paris", "Europe/Pariss"));
        assert_eq!(line, 16, "{msg}");
        let (line, _, msg) = err(&GOOD.replace("\"1/7\"", "\"2/7\""));
        assert_eq!(line, 20, "{msg}");
        let (_, _, msg) = err(&GOOD.replace("kind = \"paths\"", "kind = \"pathz\""));
        assert!(msg.contains("pathz"), "{msg}");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé\nx", 6), (2, 3));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
