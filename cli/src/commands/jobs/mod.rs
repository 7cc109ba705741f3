//! `cairn config check`, `cairn run`, `cairn jobs`, `cairn daemon` and `cairn generate
//! systemd|cronjob`: unattended operation from the configuration file. The engine (config,
//! schedules, the run's order and summary, state, metrics) is `cairn_store::job`.

pub mod cronjob;
pub mod daemon;
pub mod run;
pub mod systemd;

use crate::args::{Global, S3Args};
use crate::exit::Code;
use crate::output;
use anyhow::Result;
use cairn_store::job::config::{self, ConfigError, Loaded, Source};
use cairn_store::job::state;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

/// Which configuration file.
#[derive(Args, Debug, Clone)]
pub struct ConfigFile {
    /// The configuration file (TOML; see the README's "Unattended operation").
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

impl ConfigFile {
    /// Load and validate it; errors are usage errors (exit 2) naming line and column.
    pub fn load(&self) -> Result<Loaded> {
        config::load(&self.config).map_err(|e| match e {
            ConfigError::Read { .. } => crate::exit::usage(
                e.to_string(),
                "write one (see the README's \"Unattended operation\" for a complete example)",
            ),
            ConfigError::Invalid { .. } => {
                crate::exit::usage(e.to_string(), "fix the file, then run `cairn config check`")
            }
        })
    }
}

/// `cairn config …`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration file: syntax, unknown keys, repository references, cron
    /// expressions, time zones, sizes. Errors name the line and column.
    #[command(
        after_help = "Examples:\n  cairn config check\n  cairn config check --config ./cairn.toml --json"
    )]
    Check(ConfigFile),
}

/// `cairn jobs`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  cairn jobs --count 3")]
pub struct JobsArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    /// How many next run times to show per job.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub count: u32,
}

/// The source kind's name, as `cairn snapshots` shows it.
pub fn source_kind(s: &Source) -> &'static str {
    match s {
        Source::Paths { .. } => "paths",
        Source::Etcd(_) => "etcd",
        Source::StaticPods { .. } => "static-pods",
        Source::Cluster { .. } => "cluster",
        Source::Project { .. } => "project",
        Source::Host { .. } => "host",
    }
}

/// Options to open a configured repository with: its own location, key and object store
/// settings; the cache directory and log level from the command line.
pub fn global_for(base: &Global, r: &config::Repository) -> Global {
    Global {
        repo: Some(r.url.clone()),
        identity: r.identity.clone(),
        key: r.key.clone(),
        passphrase_file: r.passphrase_file.clone(),
        s3: S3Args {
            s3_endpoint: r.s3.endpoint.clone(),
            s3_region: r.s3.region.clone(),
            s3_timeout: r.s3.timeout.unwrap_or(30),
            s3_retries: r.s3.retries,
            aws_profile: r.s3.profile.clone(),
            aws_credentials_file: r.s3.credentials_file.clone(),
            aws_ca_bundle: r.s3.ca_bundle.clone(),
        },
        cache_dir: r.cache_dir.clone().or_else(|| base.cache_dir.clone()),
        no_cache: base.no_cache,
        as_of: None,
        json: false,
        verbose: base.verbose,
        quiet: true,
    }
}

pub fn config_command(g: &Global, c: ConfigCommand) -> Result<Code> {
    let ConfigCommand::Check(file) = c;
    let loaded = file.load()?;
    let c = &loaded.config;
    if g.json {
        output::json(&json!({
            "config": loaded.path.display().to_string(),
            "valid": true,
            "repositories": c.repositories.keys().collect::<Vec<_>>(),
            "jobs": c.jobs.keys().collect::<Vec<_>>(),
        }))?;
    } else if !g.quiet {
        crate::outln!(
            "{}: valid: {}, {} ({})",
            loaded.path.display(),
            output::count(c.repositories.len() as u64, "repository"),
            output::count(c.jobs.len() as u64, "job"),
            c.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
        )?;
    }
    Ok(Code::Ok)
}

pub fn jobs(g: &Global, a: JobsArgs) -> Result<Code> {
    let loaded = a.file.load()?;
    let now = chrono::Utc::now();
    let dir = loaded.state_dir();
    let mut out = Vec::new();
    for (name, job) in &loaded.config.jobs {
        let job = job.get_ref();
        let next: Vec<String> = loaded
            .schedule(name)
            .map(|s| {
                s.upcoming(now, a.count as usize)
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S %Z").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let next_utc: Vec<String> = loaded
            .schedule(name)
            .map(|s| {
                s.upcoming(now, a.count as usize)
                    .iter()
                    .map(|t| {
                        t.with_timezone(&chrono::Utc)
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let last = state::load(&dir, name).ok().and_then(|s| s.last);
        out.push(json!({
            "job": name,
            "source": source_kind(&job.source),
            "repository": job.repository.get_ref(),
            "schedule": job.schedule.as_ref().map(|s| s.get_ref()),
            "timezone": job.timezone.as_ref().map_or("UTC", |t| t.get_ref()),
            "next": next,
            "next_utc": next_utc,
            "last_status": last.as_ref().and_then(|l| l.status).map(|s| s.name()),
            "last_end": last.as_ref().map(|l| output::time((l.end_timestamp_seconds * 1e9) as i64)),
        }));
    }
    if g.json {
        output::json(&json!({ "jobs": out }))?;
        return Ok(Code::Ok);
    }
    for j in &out {
        let next = j["next"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "not scheduled (run it with `cairn run`)".into());
        crate::outln!(
            "{:<16} {:<12} -> {:<12} schedule {:<16} {:<18} next: {}{}",
            j["job"].as_str().unwrap_or_default(),
            j["source"].as_str().unwrap_or_default(),
            j["repository"].as_str().unwrap_or_default(),
            j["schedule"].as_str().unwrap_or("-"),
            j["timezone"].as_str().unwrap_or_default(),
            next,
            match (j["last_status"].as_str(), j["last_end"].as_str()) {
                (Some(s), Some(t)) => format!("; last run {s} at {t}"),
                _ => String::new(),
            }
        )?;
    }
    Ok(Code::Ok)
}
