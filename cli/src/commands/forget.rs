//! `cairn forget`: remove snapshots by a retention policy (and optionally prune).

use crate::args::{Global, SnapshotFilter};
use crate::commands::prune::{self, PruneFlags};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::Result;
use cairn_format::snapshot::Snapshot;
use cairn_store::footprint;
use cairn_store::forget::{self, describe_group, ForgetError, Outcome, Request};
use cairn_store::retention::{self, Decision, GroupBy, Policy};
use cairn_store::snapshots::Filter;
use cairn_store::Repository;
use chrono_tz::Tz;
use clap::Args;
use serde_json::{json, Value};
use std::sync::Arc;

const RULES_HELP: &str = "\
Keep rules apply to each group (host, source kind and paths by default; see --group-by) from
its newest snapshot back; equal times are ordered by id. A snapshot is kept if any keep rule
keeps it; with no keep rule, all are kept and only the limits remove. --keep-hourly/daily/
weekly/monthly/yearly N keep the newest snapshot of each of the N most recent hours/days/ISO
weeks/months/years that have one, as calendar periods in --timezone (a DST day of 23 or 25 hours
is one day). --keep-within counts back from the group's newest snapshot, not from now.

Keep rules that would keep no snapshot of a group (--keep-last 0, or a --keep-tag no snapshot of
the group has) are refused with exit code 2, unless --unsafe-allow-remove-all is given.

The limits hold exactly and override every keep rule, removing the oldest kept snapshots first:
--max-count N leaves at most N snapshots in each group (--group-by \"\" makes it one limit for
all selected snapshots). --max-size is for the whole repository: its total stored bytes after
the prune (config, keys, index, snapshots and every pack a remaining snapshot uses, counted
whole), across all groups, with the data of snapshots not selected by the selection options
counted too (those are never removed); it refuses, removing nothing, if even the newest snapshot
alone does not fit. The output states both scopes.

Snapshots named by id are removed whatever the rules say: cairn forget 3566d03b cfdbb26d.

Example: cairn forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --timezone Europe/Berlin --prune";

/// The keep rules and limits: one of them, or snapshots named, is required.
const RULES: [&str; 10] = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_tags",
    "max_count",
    "max_size",
];

/// Arguments of `cairn forget`.
#[derive(Args, Debug)]
#[command(after_long_help = RULES_HELP)]
#[command(group(clap::ArgGroup::new("rules").multiple(true).args(RULES)))]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(RULES).arg("snapshots")))]
pub struct ForgetArgs {
    /// Snapshots to remove, by id, unique id prefix or `latest` (the newest the selection
    /// options select), instead of keep rules: one whose data `check` found lost, say. A
    /// snapshot object `check` found damaged is removed too when named by its id (without
    /// selection options: its host and tags cannot be read).
    #[arg(value_name = "SNAPSHOT", conflicts_with_all = ["rules", "unsafe_allow_remove_all", "group_by", "timezone"])]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots of each group.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours with snapshots.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent days with snapshots.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks with snapshots.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent months with snapshots.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent years with snapshots.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot at most this much older than the newest of its group: 7d, 12h,
    /// 2w, 1y6m (y years, m months, w weeks, d days, h hours).
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub keep_within: Option<chrono::Duration>,
    /// Keep every snapshot with this tag. Repeatable (any of them keeps).
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Apply the keep rules and --max-count to each group separately: a comma list of host,
    /// source, paths; "" puts all selected snapshots in one group. Paths group only file-system
    /// and project snapshots; etcd, static-pods and cluster snapshots are grouped by their kind.
    #[arg(long, value_name = "LIST", default_value = "host,source,paths", value_parser = parse_group_by)]
    pub group_by: GroupBy,
    /// Time zone of the hours, days, weeks, months and years (an IANA name).
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_timezone)]
    pub timezone: Tz,
    /// Leave at most N snapshots in each group, removing the oldest first, whatever the keep
    /// rules say.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_count: Option<u32>,
    /// Leave at most this many stored bytes in the whole repository after the prune (10G = 10^9
    /// bytes, 10GiB = 2^30), removing the oldest selected snapshots of any group first, whatever
    /// the keep rules say. Needs --prune.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "prune")]
    pub max_size: Option<u64>,
    /// Remove every snapshot of a group if the keep rules keep none of it (otherwise refused).
    #[arg(long)]
    pub unsafe_allow_remove_all: bool,
    /// Which snapshots the policy applies to; the others are left alone.
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Show what would be removed; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Prune after forgetting, to free the space of the removed snapshots.
    #[arg(long)]
    pub prune: bool,
}

fn parse_span(s: &str) -> Result<chrono::Duration, String> {
    retention::parse_span(s)
}

fn parse_size(s: &str) -> Result<u64, String> {
    retention::parse_size(s)
}

fn parse_timezone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("{s:?} is not an IANA time zone (such as UTC or Europe/Berlin)"))
}

fn parse_group_by(s: &str) -> Result<GroupBy, String> {
    let mut by = GroupBy {
        host: false,
        source: false,
        paths: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "host" => by.host = true,
            "source" => by.source = true,
            "paths" => by.paths = true,
            other => {
                return Err(format!(
                    "cannot group by {other:?}: use a comma list of host, source, paths (or \"\")"
                ))
            }
        }
    }
    Ok(by)
}

impl ForgetArgs {
    fn policy(&self) -> Policy {
        Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_tags: self.keep_tags.clone(),
            group_by: self.group_by,
            tz: self.timezone,
            max_count: self.max_count,
        }
    }
}

pub fn run(g: &Global, a: ForgetArgs) -> Result<Code> {
    Ok(apply(g, &a)?.code)
}

/// What `forget` did, for `cairn run`'s summary.
pub struct Applied {
    pub code: Code,
    /// Snapshots deleted.
    pub removed: u64,
    /// Selected snapshots kept.
    pub kept: u64,
    /// Bytes the prune freed (0 without --prune).
    pub freed: u64,
}

/// Apply the policy (and prune), printing as `cairn forget` does.
pub fn apply(g: &Global, a: &ForgetArgs) -> Result<Applied> {
    let repo = Arc::new(credentials::open(g)?);
    if !a.dry_run {
        cairn_store::policy::ensure_may_remove(&repo, "forget")?;
    }
    let request = Request {
        policy: a.policy(),
        filter: Filter::from(&a.filter),
        max_size: a.max_size,
        allow_remove_all: a.unsafe_allow_remove_all,
        dry_run: a.dry_run,
    };
    let out = match if a.snapshots.is_empty() {
        forget::forget(&repo, &request)
    } else {
        forget::forget_named(&repo, &a.snapshots, &request.filter, a.dry_run)
    } {
        Ok(out) => out,
        Err(e @ ForgetError::KeepsNothing(_)) => {
            return Err(crate::exit::usage(
                e.to_string(),
                "check the rules (a count of 0, or a --keep-tag none of the group's snapshots \
                 has); removing all of a group's snapshots needs --unsafe-allow-remove-all",
            ))
        }
        Err(e @ ForgetError::Unreadable { .. }) => {
            return Err(crate::exit::usage(
                e.to_string(),
                "to remove a damaged snapshot object, name it by id without selection options (--host, --source, --tag, --path, --key-label)",
            ))
        }
        Err(e @ ForgetError::NotSelected { .. }) => {
            return Err(crate::exit::usage(
                e.to_string(),
                "with snapshot ids, the selection options (--host, --source, --tag, --path) must select each of them; leave them out to remove exactly the snapshots named",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let mut code = if out.damaged.is_empty() {
        Code::Ok
    } else {
        Code::Partial
    };
    if !out.errors.is_empty() {
        code = Code::Error;
    }
    let report = Report { args: a, out: &out };
    if !g.json && !g.quiet {
        report.print()?;
    }
    for (id, why) in &out.errors {
        output::error(format_args!("could not delete snapshots/{id}: {why}"));
    }
    for u in &out.damaged {
        output::warn(format_args!(
            "{} could not be read and was left alone: {}",
            u.path, u.why
        ));
    }
    let mut pruned = Value::Null;
    let mut freed = 0;
    if a.prune && !a.dry_run && out.errors.is_empty() {
        let flags = PruneFlags {
            max_unused: 5.0,
            dry_run: false,
        };
        let r = match cairn_store::prune::prune(&repo, &flags.options()) {
            Ok(r) => r,
            Err(e) => {
                // What the forget did is reported even so: its deletions stand.
                if g.json {
                    output::json(&report.json(Value::Null))?;
                }
                return Err(anyhow::Error::new(e).context(format!(
                    "forget removed {} snapshot(s), then the prune failed",
                    out.deleted
                )));
            }
        };
        code = worst(code, prune::code(&r));
        freed = r.bytes_freed;
        if g.json {
            pruned = prune::report_json(&r, false);
        } else if !g.quiet {
            prune::print_text(&r, false)?;
        }
        if let Some(max) = a.max_size {
            code = worst(code, check_size(&repo, max)?);
        }
    }
    if g.json {
        output::json(&report.json(pruned))?;
    }
    Ok(Applied {
        code,
        removed: out.deleted as u64,
        kept: out.kept() as u64,
        freed,
    })
}

/// After `--max-size --prune` the repository must hold at most `max` bytes. A backup running
/// during the prune can keep condemned packs; that is reported, with exit code 3.
fn check_size(repo: &Repository, max: u64) -> Result<Code> {
    let stored = footprint::stored_total(repo)?;
    if stored <= max {
        return Ok(Code::Ok);
    }
    output::warn(format_args!(
        "the repository holds {} after the prune, more than --max-size {}: a backup running meanwhile keeps the packs it reuses until the next prune",
        output::bytes(stored),
        output::bytes(max)
    ));
    Ok(Code::Partial)
}

/// The more serious of two exit codes.
fn worst(a: Code, b: Code) -> Code {
    let rank = |c: Code| match c {
        Code::Ok => 0,
        Code::Partial => 1,
        Code::Damage | Code::Unfit => 2,
        Code::Usage | Code::Error | Code::StdoutClosed => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Everything the output shows.
struct Report<'a> {
    args: &'a ForgetArgs,
    out: &'a Outcome,
}

impl Report<'_> {
    /// Decisions grouped as the policy grouped them, each group oldest first.
    fn groups(&self) -> Vec<Vec<(&Decision, &Snapshot)>> {
        let mut groups: Vec<(retention::GroupKey, Vec<(&Decision, &Snapshot)>)> = Vec::new();
        for d in &self.out.decisions {
            let Some(s) = self.out.snapshots.get(&d.id) else {
                continue;
            };
            let key = retention::group_key(self.args.group_by, s);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push((d, s)),
                None => groups.push((key, vec![(d, s)])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    }

    fn print(&self) -> Result<()> {
        let tz = self.args.timezone;
        for members in self.groups() {
            let (_, first) = members[0];
            crate::outln!(
                "group: {} ({})",
                describe_group(self.args.group_by, first),
                output::count(members.len() as u64, "snapshot")
            )?;
            for (d, s) in members {
                let reasons = if d.reasons.is_empty() {
                    "-".to_string()
                } else {
                    d.reasons.join(", ")
                };
                crate::outln!(
                    "  {:<8}  {:<23}  {:<6}  {:<20}  tags: {}",
                    d.id.short(),
                    local_time(s.time_ns, tz),
                    if d.keep { "keep" } else { "remove" },
                    reasons,
                    s.tags.join(",")
                )?;
            }
        }
        for (id, why) in &self.out.unreadable {
            crate::outln!("damaged snapshot object: {}  remove  ({why})", id.short())?;
        }
        let limits: Vec<String> = [
            self.args
                .max_count
                .map(|n| format!("--max-count {n} applies to each group")),
            self.args.max_size.map(|n| {
                format!(
                    "--max-size {} applies to the whole repository (all groups, and the data of snapshots not selected)",
                    output::bytes(n)
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !limits.is_empty() {
            crate::outln!("limits: {}", limits.join("; "))?;
        }
        let decisions = &self.out.decisions;
        let kept = self.out.kept();
        let removed = decisions.len() - kept;
        if self.args.dry_run {
            crate::outln!(
                "dry run: would remove {removed} of {} snapshots; nothing was deleted",
                decisions.len()
            )?;
        } else {
            let failed = self.out.errors.len();
            if failed > 0 {
                crate::outln!(
                    "removed {} of the {removed} snapshots to remove ({failed} could not be deleted), kept {kept}",
                    self.out.deleted,
                )?;
            } else {
                crate::outln!(
                    "removed {} of {} snapshots, kept {kept}",
                    self.out.deleted,
                    decisions.len()
                )?;
            }
            if self.out.deleted > 0 && !self.args.prune {
                crate::outln!("run `cairn prune` to free the space they used")?;
            }
        }
        Ok(())
    }

    fn json(&self, prune: Value) -> Value {
        let snapshots: Vec<Value> = self
            .out
            .decisions
            .iter()
            .filter_map(|d| {
                let s = self.out.snapshots.get(&d.id)?;
                Some(json!({
                    "id": d.id.to_hex(),
                    "time": output::time(s.time_ns),
                    "host": s.host,
                    "source": s.source.name(),
                    "made_by": cairn_store::snapshots::made_by(s),
                    "paths": s.paths,
                    "tags": s.tags,
                    "keep": d.keep,
                    "reasons": d.reasons,
                }))
            })
            .chain(self.out.unreadable.iter().map(|(id, why)| {
                json!({
                    "id": id.to_hex(),
                    "keep": false,
                    "reasons": ["damaged"],
                    "error": why,
                })
            }))
            .collect();
        json!({
            "dry_run": self.args.dry_run,
            "limits": {
                "max_count_per_group": self.args.max_count,
                "max_size_whole_repository": self.args.max_size,
            },
            "snapshots": snapshots,
            "deleted": self.out.deleted,
            "errors": self.out.errors.iter().map(|(id, e)| json!({"snapshot": id.to_hex(), "error": e})).collect::<Vec<_>>(),
            "damaged": self.out.damaged.iter().map(|u| json!({"path": u.path, "error": u.why, "newer": u.newer})).collect::<Vec<_>>(),
            "prune": prune,
        })
    }
}

/// `ns` as local time in `tz`, with the zone's abbreviation (CET, CEST, UTC).
fn local_time(ns: i64, tz: Tz) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}
