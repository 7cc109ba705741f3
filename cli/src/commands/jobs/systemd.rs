//! `cairn generate systemd JOB`: a oneshot service running `cairn run JOB` and a timer
//! whose OnCalendar= is the job's cron schedule in its time zone.

use super::ConfigFile;
use crate::args::Global;
use crate::exit::Code;
use anyhow::{Context, Result};
use cairn_store::job::config::{Job, Loaded};
use cairn_store::job::{schedule, state};
use clap::Args;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `cairn generate systemd`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  cairn generate systemd etcd --output /etc/systemd/system && systemctl daemon-reload \\
    && systemctl enable --now cairn-etcd.timer
  cairn generate systemd etcd --metrics-file /var/lib/node_exporter/textfile/cairn.prom")]
pub struct SystemdArgs {
    /// The job (a [jobs.NAME] table with a schedule).
    pub job: String,
    #[command(flatten)]
    pub file: ConfigFile,
    /// Write cairn-JOB.service and cairn-JOB.timer into this directory (default: print both).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The cairn executable the service runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Have each run write its metrics here for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// One cron field as the set of values it selects, or None for "every value".
fn field(
    spec: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    what: &str,
) -> Result<Option<BTreeSet<u32>>, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(lo + i as u32);
        }
        s.parse::<u32>()
            .map_err(|_| format!("{what} field {spec:?}: {s:?} is not a number"))
    };
    let mut set = BTreeSet::new();
    for item in spec.split(',') {
        if item.contains('#') || item.eq_ignore_ascii_case("L") || item.ends_with('W') {
            return Err(format!(
                "{what} field {spec:?}: L, W and # have no equivalent in systemd calendars or Kubernetes CronJobs"
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("{what} field {spec:?}: bad step {s:?}"))?,
            ),
            None => (item, 1),
        };
        if step == 0 {
            return Err(format!("{what} field {spec:?}: step 0"));
        }
        let (a, b) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => match (value(a)?, value(b)?) {
                    // Sunday is both 0 and 7 in cron: a range ending on SUN ends on 7.
                    (a, 0) if names == DAYS && a > 0 => (a, 7),
                    (a, b) if b < a => {
                        return Err(format!("{what} field {spec:?}: range {r:?} runs backwards"))
                    }
                    ab => ab,
                },
                None if item.contains('/') => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        let mut v = a;
        while v <= b {
            set.insert(v);
            v += step;
        }
    }
    if set.iter().any(|v| *v < lo || *v > hi) {
        return Err(format!("{what} field {spec:?} is out of range {lo}-{hi}"));
    }
    Ok(if set.len() as u32 == hi - lo + 1 {
        None
    } else {
        Some(set)
    })
}

fn list(set: &Option<BTreeSet<u32>>, width: usize) -> String {
    match set {
        None => "*".into(),
        Some(s) => s
            .iter()
            .map(|v| format!("{v:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A day-of-week field as Kubernetes (robfig/cron: 0–6, Sunday 0) accepts it: unchanged when
/// it is already valid there, else the days it selects as a list (`6-7` is `0,6`).
pub fn kube_weekdays(spec: &str) -> Result<String, String> {
    if field(spec, 0, 6, DAYS, "day-of-week").is_ok() {
        return Ok(spec.to_string());
    }
    Ok(match weekdays(spec)? {
        None => "*".into(),
        Some(days) => list(&Some(days), 1),
    })
}

/// The days a cron day-of-week field selects (Sunday 0 or 7), None for every day.
fn weekdays(spec: &str) -> Result<Option<BTreeSet<u32>>, String> {
    Ok(field(spec, 0, 7, DAYS, "day-of-week")?
        .map(|days| days.into_iter().map(|d| d % 7).collect::<BTreeSet<u32>>())
        .filter(|days| days.len() < 7))
}

/// The systemd calendar expression for a 5- or 6-field cron expression in `tz`.
pub fn on_calendar(expr: &str, tz: &str) -> Result<String, String> {
    let f: Vec<&str> = expr.split_whitespace().collect();
    let (sec, rest) = match f.len() {
        6 => (field(f[0], 0, 59, &[], "seconds")?, &f[1..]),
        5 => (Some(BTreeSet::from([0])), &f[..]),
        n => return Err(format!("schedule {expr:?} has {n} fields")),
    };
    let min = field(rest[0], 0, 59, &[], "minute")?;
    let hour = field(rest[1], 0, 23, &[], "hour")?;
    let dom = field(rest[2], 1, 31, &[], "day-of-month")?;
    let mon = field(rest[3], 1, 12, MONTHS, "month")?;
    // Cron counts Sunday as 0 or 7.
    let dow = weekdays(rest[4])?;
    if dom.is_some() && dow.is_some() {
        return Err(format!(
            "schedule {expr:?} restricts both the day of the month and the day of the week: cron runs when either matches, systemd when both do; split it into two jobs or drop one"
        ));
    }
    let days = match &dow {
        None => String::new(),
        Some(s) => {
            let names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
            format!(
                "{} ",
                s.iter()
                    .map(|d| names[*d as usize])
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    };
    Ok(format!(
        "{days}*-{}-{} {}:{}:{} {tz}",
        list(&mon, 2),
        list(&dom, 2),
        list(&hour, 2),
        list(&min, 2),
        list(&sec, 2)
    ))
}

/// Paths the service must be able to write: local repositories, state, cache, metrics.
fn writable(loaded: &Loaded, job: &Job, metrics: Option<&Path>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in loaded.repositories_of(job) {
        if let Some(d) = Loaded::local_dir(r) {
            out.insert(d.display().to_string());
        }
        if let Some(c) = &r.cache_dir {
            out.insert(c.display().to_string());
        }
    }
    out.insert(loaded.state_dir().display().to_string());
    if let Some(m) = metrics.and_then(Path::parent) {
        out.insert(m.display().to_string());
    }
    out.into_iter().collect()
}

fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// The two units' text.
pub fn units(
    loaded: &Loaded,
    name: &str,
    bin: &Path,
    metrics: Option<&Path>,
) -> Result<(String, String)> {
    let job = loaded.job(name).map_err(anyhow::Error::msg)?;
    let sched = job.schedule.as_ref().with_context(|| {
        format!("job {name} has no schedule; add `schedule = \"0 3 * * *\"` (and a timezone) to [jobs.{name}]")
    })?;
    let tz = job.timezone.as_ref().map_or("UTC", |t| t.get_ref());
    let calendar = on_calendar(sched.get_ref(), tz).map_err(|e| {
        crate::exit::usage(
            format!("job {name}: {e}"),
            "change the job's schedule, or run the job with `cairn daemon`, which takes every cron expression",
        )
    })?;
    let config = std::path::absolute(&loaded.path).unwrap_or_else(|_| loaded.path.clone());
    let mut exec = format!("{} run {name} --config {}", quote(bin), quote(&config));
    if let Some(m) = metrics {
        exec.push_str(&format!(" --metrics-file {}", quote(m)));
    }
    let rw: Vec<String> = writable(loaded, job, metrics)
        .into_iter()
        .map(|p| format!("ReadWritePaths=-{p}"))
        .collect();
    let state_dir = loaded.state_dir();
    let state_line = if state_dir == Path::new(cairn_store::job::config::DEFAULT_STATE_DIR) {
        "StateDirectory=cairn\n".to_string()
    } else {
        String::new()
    };
    let service = format!(
        "\
# Generated by `cairn generate systemd {name}` from {config}.
[Unit]
Description=cairn job {name}: back up, apply retention, copy, audit
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={exec}
# Exit codes: 0 ok; 3 partial (the snapshot was saved but some files could not be read, a copy
# skipped a damaged snapshot, a running backup still holds space prune could not free, or the
# audit left out snapshots a newer cairn wrote) -
# counted as success here so the unit is not shown as failed, and reported in the metrics
# (cairn_job_last_exit_code 3); 4 the audit found damage; 1 a step failed; 2 bad configuration.
SuccessExitStatus=3
# SIGTERM lets the running step finish; after TimeoutStopSec the run is killed, which leaves no
# half snapshot (snapshots are written last).
TimeoutStopSec=5min
KillMode=mixed
CacheDirectory=cairn
Environment=CAIRN_CACHE_DIR=%C/cairn
{state_line}Nice=10
IOSchedulingClass=idle
# Hardening: read-only system, private /tmp, no privilege gain. cairn reads what it backs up
# (as root) and writes only below these paths.
ProtectSystem=strict
{rw}
PrivateTmp=true
NoNewPrivileges=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictSUIDSGID=true
RestrictRealtime=true
RestrictNamespaces=true
LockPersonality=true
MemoryDenyWriteExecute=true
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
UMask=0077
",
        config = config.display(),
        rw = rw.join("\n"),
    );
    let delay = job
        .random_delay
        .as_ref()
        .and_then(|d| schedule::parse_duration(d.get_ref()).ok())
        .filter(|d| !d.is_zero())
        .map(|d| format!("RandomizedDelaySec={}s\n", d.as_secs()))
        .unwrap_or_default();
    let timer = format!(
        "\
# Generated by `cairn generate systemd {name}`: schedule {expr:?} in {tz}.
[Unit]
Description=Run cairn job {name} on its schedule

[Timer]
OnCalendar={calendar}
# A run missed while the machine was off starts at boot.
Persistent=true
AccuracySec=1s
{delay}Unit=cairn-{name}.service

[Install]
WantedBy=timers.target
",
        expr = sched.get_ref(),
    );
    Ok((service, timer))
}

pub fn run(g: &Global, a: SystemdArgs) -> Result<Code> {
    let loaded = a.file.load()?;
    let bin = match &a.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("finding cairn's own executable; pass --bin")?,
    };
    let (service, timer) = units(&loaded, &a.job, &bin, a.metrics_file.as_deref())?;
    match &a.output {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (ext, text) in [("service", &service), ("timer", &timer)] {
                let p = dir.join(format!("cairn-{}.{ext}", a.job));
                state::write_atomic_readable(&p, text.as_bytes())
                    .with_context(|| format!("writing {}", p.display()))?;
                if !g.quiet {
                    crate::output::remark(format_args!("wrote {}", p.display()));
                }
            }
        }
        None => {
            crate::outln!(
                "# cairn-{}.service\n{service}\n# cairn-{}.timer\n{timer}",
                a.job,
                a.job
            )?;
        }
    }
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::{kube_weekdays, on_calendar};

    #[test]
    fn cron_to_calendar() {
        let c = |e| on_calendar(e, "Europe/Paris").unwrap();
        assert_eq!(c("0 3 * * *"), "*-*-* 03:00:00 Europe/Paris");
        assert_eq!(c("*/15 2 * * *"), "*-*-* 02:00,15,30,45:00 Europe/Paris");
        assert_eq!(c("30 1 1 */3 *"), "*-01,04,07,10-01 01:30:00 Europe/Paris");
        assert_eq!(
            c("0 4 * * 1-5"),
            "Mon,Tue,Wed,Thu,Fri *-*-* 04:00:00 Europe/Paris"
        );
        assert_eq!(c("0 4 * * SUN,7"), "Sun *-*-* 04:00:00 Europe/Paris");
        let weekend = "Sun,Sat *-*-* 02:00:00 Europe/Paris";
        assert_eq!(c("0 2 * * 6-7"), weekend);
        assert_eq!(c("0 2 * * SAT-SUN"), weekend);
        assert_eq!(c("0 2 * * 5-7"), "Sun,Fri,Sat *-*-* 02:00:00 Europe/Paris");
        assert_eq!(c("0 2 * * 0-7"), "*-*-* 02:00:00 Europe/Paris");
        assert_eq!(c("0 2 * * 1-7"), "*-*-* 02:00:00 Europe/Paris");
        assert!(on_calendar("0 4 * * 5-1", "UTC").is_err());
        assert!(on_calendar("0 4 * * 8", "UTC").is_err());
        assert_eq!(kube_weekdays("1-5").unwrap(), "1-5");
        assert_eq!(kube_weekdays("MON,SUN").unwrap(), "MON,SUN");
        assert_eq!(kube_weekdays("6-7").unwrap(), "0,6");
        assert_eq!(kube_weekdays("FRI-SUN").unwrap(), "0,5,6");
        assert_eq!(kube_weekdays("0-7").unwrap(), "*");
        assert_eq!(c("*/20 * * * * *"), "*-*-* *:*:00,20,40 Europe/Paris");
        assert!(on_calendar("0 4 1 * MON", "UTC").is_err());
        assert!(on_calendar("0 4 L * *", "UTC").is_err());
    }
}
