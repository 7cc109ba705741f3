//! Retention (`cairn forget`): which snapshots a policy keeps, and why. Pure, no I/O.
//!
//! Semantics follow restic: snapshots are grouped (see [`GroupBy`]); within a group they are
//! walked newest first (ties ordered by `(time_ns, id)`, larger id counts as newer). `last N`
//! keeps the N newest; `hourly/daily/weekly/monthly/yearly N` keep the newest snapshot of each
//! of the N most recent calendar periods (in the policy's time zone; weeks are ISO weeks) that
//! have snapshots; `within D` keeps snapshots no older than the group's newest minus D; `tags`
//! keeps snapshots carrying any listed tag. A snapshot is kept if any rule keeps it; with no
//! rule at all every snapshot is kept. `max_count N` then removes the oldest kept snapshots of
//! each group until exactly N (or fewer, if fewer were kept) remain in it; group by nothing
//! for a limit over the whole set. (`max-size` is necessarily repository-wide: packs are
//! shared between groups; see [`fitting_prefix`].)

use cairn_format::snapshot::{Snapshot, SourceKind};
use cairn_format::Id;
use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike, Utc};
use std::collections::{HashMap, HashSet};

/// Which snapshot attributes separate groups; all false puts everything in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by source kind.
    pub source: bool,
    /// Group by the (sorted) list of paths.
    pub paths: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            source: true,
            paths: true,
        }
    }
}

/// A retention policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Keep the N newest snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours with snapshots.
    pub keep_hourly: Option<u32>,
    /// Same for calendar days.
    pub keep_daily: Option<u32>,
    /// Same for ISO weeks.
    pub keep_weekly: Option<u32>,
    /// Same for calendar months.
    pub keep_monthly: Option<u32>,
    /// Same for calendar years.
    pub keep_yearly: Option<u32>,
    /// Keep snapshots no older than the group's newest minus this span.
    pub keep_within: Option<chrono::Duration>,
    /// Keep snapshots carrying any of these tags.
    pub keep_tags: Vec<String>,
    /// How to group snapshots.
    pub group_by: GroupBy,
    /// Time zone the calendar periods are taken in.
    pub tz: chrono_tz::Tz,
    /// After the rules, keep at most this many snapshots of each group (oldest kept go first).
    pub max_count: Option<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            keep_tags: Vec::new(),
            group_by: GroupBy::default(),
            tz: chrono_tz::UTC,
            max_count: None,
        }
    }
}

impl Policy {
    /// Whether any keep rule is set (max-count is a limit, not a keep rule).
    pub fn has_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
            || !self.keep_tags.is_empty()
    }
}

/// The verdict for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Snapshot id.
    pub id: Id,
    /// Whether the snapshot stays.
    pub keep: bool,
    /// Rules that kept it ("last", "daily", ...), or why it was removed ("max-count").
    pub reasons: Vec<String>,
}

/// What separates groups: host, source kind name, sorted paths (empty where not grouped by).
pub type GroupKey = (String, String, Vec<String>);

/// Group key of a snapshot under `by`. Paths group only file-system and project snapshots:
/// those of etcd, static-pods and cluster backups name a timestamped snapshot file or a pod
/// revision and change with every backup, so their source kind is their group.
pub fn group_key(by: GroupBy, s: &Snapshot) -> GroupKey {
    let named_by_paths = matches!(s.source, SourceKind::Paths | SourceKind::Project);
    let mut paths = if by.paths && named_by_paths {
        s.paths.clone()
    } else {
        Vec::new()
    };
    paths.sort();
    (
        if by.host {
            s.host.clone()
        } else {
            String::new()
        },
        if by.source {
            s.source.name().to_string()
        } else {
            String::new()
        },
        paths,
    )
}

fn local(tz: chrono_tz::Tz, ns: i64) -> DateTime<chrono_tz::Tz> {
    Utc.timestamp_nanos(ns).with_timezone(&tz)
}

/// Calendar period keys; hours include the UTC offset so a repeated DST hour counts twice.
fn period_keys(tz: chrono_tz::Tz, ns: i64) -> [(i64, i64, i64, i64); 5] {
    let t = local(tz, ns);
    let (y, m, d, h) = (
        t.year() as i64,
        t.month() as i64,
        t.day() as i64,
        t.hour() as i64,
    );
    let off = t.offset().fix().local_minus_utc() as i64;
    let w = t.iso_week();
    [
        (y, m * 100 + d, h, off),
        (y, m, d, 0),
        (w.year() as i64, w.week() as i64, 0, 0),
        (y, m, 0, 0),
        (y, 0, 0, 0),
    ]
}

/// Indices of `snaps` by group under `by`, each group newest first (ties: larger id is newer),
/// groups in order of their newest member's index.
fn groups(by: GroupBy, snaps: &[(Id, &Snapshot)]) -> Vec<Vec<usize>> {
    let mut groups: HashMap<GroupKey, Vec<usize>> = HashMap::new();
    for (i, (_, s)) in snaps.iter().enumerate() {
        groups.entry(group_key(by, s)).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    for members in &mut out {
        members.sort_by_key(|&i| std::cmp::Reverse((snaps[i].1.time_ns, snaps[i].0)));
    }
    out.sort_by_key(|members| members[0]);
    out
}

/// Applies `policy` to `snaps`; returns one decision per snapshot, in input order.
/// `now` is this host's clock: snapshots dated after it (beyond the skew tolerance) are kept,
/// with the reason [`FUTURE`], and left out of every rule; `keep_within` counts from each
/// group's newest other snapshot.
pub fn apply(policy: &Policy, snaps: &[(Id, &Snapshot)], now: DateTime<Utc>) -> Vec<Decision> {
    let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut out: Vec<Decision> = snaps
        .iter()
        .map(|(id, s)| {
            // Future-dated snapshots are left alone and kept out of the arithmetic: one dated
            // 50 years ahead would otherwise be every group's newest.
            let future = crate::snapshots::is_future(s, now_ns);
            Decision {
                id: *id,
                keep: future,
                reasons: if future {
                    vec![FUTURE.to_string()]
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    for mut members in groups(policy.group_by, snaps) {
        members.retain(|&i| out[i].reasons.first().map(String::as_str) != Some(FUTURE));
        if members.is_empty() {
            continue;
        }
        keep_by_rules(policy, snaps, &members, &mut out);
        if let Some(n) = policy.max_count {
            let kept: Vec<usize> = members.iter().copied().filter(|&i| out[i].keep).collect();
            for &i in kept.iter().skip(n as usize) {
                out[i].keep = false;
                out[i].reasons = vec!["max-count".to_string()];
            }
        }
    }
    out
}

/// The reason given for a future-dated snapshot, which retention leaves alone.
pub const FUTURE: &str = "future-dated: left alone";

/// Groups under `by` of which `decisions` (from [`apply`] on `snaps`) keep nothing: the index
/// of each such group's newest snapshot, ascending.
pub fn emptied_groups(
    by: GroupBy,
    snaps: &[(Id, &Snapshot)],
    decisions: &[Decision],
) -> Vec<usize> {
    groups(by, snaps)
        .into_iter()
        .filter(|members| members.iter().all(|&i| !decisions[i].keep))
        .map(|members| members[0])
        .collect()
}

/// Marks what the keep rules keep of one group (`members`, newest first).
fn keep_by_rules(
    policy: &Policy,
    snaps: &[(Id, &Snapshot)],
    members: &[usize],
    out: &mut [Decision],
) {
    if !policy.has_rules() {
        for &i in members {
            out[i].keep = true;
        }
        return;
    }
    let mut add = |i: usize, r: &str| {
        out[i].keep = true;
        out[i].reasons.push(r.to_string());
    };
    if let Some(n) = policy.keep_last {
        for &i in members.iter().take(n as usize) {
            add(i, "last");
        }
    }
    let periods = [
        (policy.keep_hourly, "hourly"),
        (policy.keep_daily, "daily"),
        (policy.keep_weekly, "weekly"),
        (policy.keep_monthly, "monthly"),
        (policy.keep_yearly, "yearly"),
    ];
    for (k, (n, name)) in periods.iter().enumerate() {
        let Some(mut left) = *n else { continue };
        let mut last = None;
        for &i in members.iter() {
            if left == 0 {
                break;
            }
            let key = period_keys(policy.tz, snaps[i].1.time_ns)[k];
            if last != Some(key) {
                add(i, name);
                left -= 1;
                last = Some(key);
            }
        }
    }
    if let Some(d) = policy.keep_within {
        let newest = snaps[members[0]].1.time_ns;
        let span = d.num_nanoseconds().unwrap_or(i64::MAX);
        let cutoff = newest.saturating_sub(span);
        for &i in members.iter() {
            if snaps[i].1.time_ns >= cutoff {
                add(i, "within");
            }
        }
    }
    if !policy.keep_tags.is_empty() {
        for &i in members.iter() {
            if snaps[i].1.tags.iter().any(|t| policy.keep_tags.contains(t)) {
                add(i, "tag");
            }
        }
    }
}

/// A pack as `max-size` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackSize {
    /// Stored size of the pack file.
    pub size: u64,
    /// Blobs the index records for it.
    pub blobs: u64,
}

/// Bytes the index may take per indexed blob (upper bound).
pub const INDEX_BYTES_PER_BLOB: u64 = 100;
/// Bytes the index may take per object (upper bound; one index object per pack at worst).
pub const INDEX_BYTES_PER_OBJECT: u64 = 1024;

/// For `max-size`: given `fixed` bytes (config, keys) and, newest first, each snapshot's
/// object size and referenced pack ids, returns how many newest snapshots fit in `max` bytes
/// once everything else is pruned. The estimate for a prefix is `fixed` plus its snapshot
/// objects plus, over the union of its packs, pack sizes, 100 bytes per indexed blob and
/// 1 KiB per pack (an upper bound for the index objects). A pack id missing from `packs`
/// counts as 1 KiB only, so callers should pass every referenced pack.
pub fn fitting_prefix(
    fixed: u64,
    snaps: &[(u64, Vec<Id>)],
    packs: &HashMap<Id, PackSize>,
    max: u64,
) -> usize {
    let mut seen = HashSet::new();
    let mut total = fixed;
    for (n, (obj, ids)) in snaps.iter().enumerate() {
        total = total.saturating_add(*obj);
        for id in ids {
            if seen.insert(*id) {
                let p = packs
                    .get(id)
                    .copied()
                    .unwrap_or(PackSize { size: 0, blobs: 0 });
                total = total
                    .saturating_add(p.size)
                    .saturating_add(p.blobs.saturating_mul(INDEX_BYTES_PER_BLOB))
                    .saturating_add(INDEX_BYTES_PER_OBJECT);
            }
        }
        if total > max {
            return n;
        }
    }
    snaps.len()
}

/// Parses a span such as `7d`, `12h`, `1y6m` (units h, d, w, m = 30 days, y = 365 days).
pub fn parse_span(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut hours: i64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("duration {s:?}: expected a number before {c:?}"))?;
        num.clear();
        let unit = match c {
            'h' => 1,
            'd' => 24,
            'w' => 24 * 7,
            'm' => 24 * 30,
            'y' => 24 * 365,
            _ => {
                return Err(format!(
                    "duration {s:?}: unknown unit {c:?} (use h, d, w, m, y)"
                ))
            }
        };
        hours = n
            .checked_mul(unit)
            .and_then(|v| hours.checked_add(v))
            .filter(|v| *v <= 24 * 365 * 10_000)
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    if !num.is_empty() {
        return Err(format!(
            "duration {s:?}: number {num} has no unit (h, d, w, m, y)"
        ));
    }
    Ok(chrono::Duration::hours(hours))
}

/// Parses a size such as `50G` (50e9), `500MiB`, `1024` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?}: expected a number"))?;
    let mul: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024f64.powi(4),
        u => {
            return Err(format!(
                "size {s:?}: unknown unit {u:?} (use K, M, G, T, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let b = v * mul;
    if !b.is_finite() || b >= u64::MAX as f64 {
        return Err(format!("size {s:?} is too large"));
    }
    Ok(b as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::snapshot::SnapshotStats;
    use proptest::prelude::*;

    fn snap(time_ns: i64, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            time_ns,
            host: host.into(),
            username: "u".into(),
            source: SourceKind::Paths,
            paths: vec!["/data".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: Id::default(),
            parent: None,
            stats: SnapshotStats::default(),
            program: "test".into(),
            facts: Vec::new(),
        }
    }

    fn id(n: usize) -> Id {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(n as u64).to_be_bytes());
        Id(b)
    }

    /// `"2024-03-31 01:30"` in `tz` to ns.
    fn at(tz: chrono_tz::Tz, s: &str) -> i64 {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    /// Runs `policy` on snapshots at `times` (host "h") and returns the kept indices.
    fn kept(policy: &Policy, times: &[i64]) -> Vec<usize> {
        let snaps: Vec<Snapshot> = times.iter().map(|t| snap(*t, "h", &[])).collect();
        let items: Vec<(Id, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let d = apply(policy, &items, DateTime::<Utc>::MAX_UTC);
        (0..times.len()).filter(|&i| d[i].keep).collect()
    }

    const H: i64 = 3_600_000_000_000;

    #[test]
    fn period_rules_table() {
        let utc = chrono_tz::UTC;
        let ber = chrono_tz::Europe::Berlin;
        type Case = (
            &'static str,
            chrono_tz::Tz,
            fn(&mut Policy),
            Vec<&'static str>,
            Vec<usize>,
        );
        let cases: Vec<Case> = vec![
            (
                "hourly utc",
                utc,
                |p| p.keep_hourly = Some(2),
                vec![
                    "2024-01-01 10:10",
                    "2024-01-01 10:50",
                    "2024-01-01 11:05",
                    "2024-01-01 12:00",
                ],
                vec![2, 3],
            ),
            (
                "daily utc",
                utc,
                |p| p.keep_daily = Some(2),
                vec![
                    "2024-01-01 10:00",
                    "2024-01-02 01:00",
                    "2024-01-02 23:00",
                    "2024-01-05 00:00",
                ],
                vec![2, 3],
            ),
            (
                "daily skips empty days",
                utc,
                |p| p.keep_daily = Some(3),
                vec![
                    "2024-01-01 10:00",
                    "2024-01-01 11:00",
                    "2024-01-10 01:00",
                    "2024-02-01 00:00",
                ],
                vec![1, 2, 3],
            ),
            (
                // 2024-01-07 is a Sunday, 2024-01-08 a Monday.
                "weekly iso",
                utc,
                |p| p.keep_weekly = Some(2),
                vec![
                    "2024-01-01 00:00",
                    "2024-01-07 23:00",
                    "2024-01-08 00:00",
                    "2024-01-09 00:00",
                ],
                vec![1, 3],
            ),
            (
                "monthly",
                utc,
                |p| p.keep_monthly = Some(3),
                vec![
                    "2023-12-31 23:59",
                    "2024-01-01 00:00",
                    "2024-01-31 00:00",
                    "2024-02-29 12:00",
                    "2024-03-01 00:00",
                ],
                vec![2, 3, 4],
            ),
            (
                "yearly",
                utc,
                |p| p.keep_yearly = Some(5),
                vec![
                    "2022-06-01 00:00",
                    "2023-01-01 00:00",
                    "2023-12-31 23:00",
                    "2024-02-29 00:00",
                ],
                vec![0, 2, 3],
            ),
            (
                "feb 29 is its own day",
                utc,
                |p| p.keep_daily = Some(10),
                vec![
                    "2024-02-28 23:00",
                    "2024-02-29 00:00",
                    "2024-02-29 23:59",
                    "2024-03-01 00:00",
                ],
                vec![0, 2, 3],
            ),
            (
                // 2024-03-31 has 23 hours in Berlin; its first and last snapshot are one day.
                "berlin march dst day",
                ber,
                |p| p.keep_daily = Some(2),
                vec![
                    "2024-03-30 23:30",
                    "2024-03-31 00:10",
                    "2024-03-31 23:50",
                    "2024-04-01 00:10",
                ],
                vec![2, 3],
            ),
            (
                // 2024-10-27 has 25 hours in Berlin.
                "berlin october dst day",
                ber,
                |p| p.keep_daily = Some(2),
                vec![
                    "2024-10-26 23:30",
                    "2024-10-27 00:10",
                    "2024-10-27 23:50",
                    "2024-10-28 00:10",
                ],
                vec![2, 3],
            ),
            (
                // In UTC the Berlin day boundaries differ: 2024-10-27 23:50 Berlin is 22:50 UTC.
                "same times in utc",
                utc,
                |p| p.keep_daily = Some(2),
                vec![
                    "2024-10-26 21:30",
                    "2024-10-26 22:10",
                    "2024-10-27 22:50",
                    "2024-10-27 23:10",
                ],
                vec![1, 3],
            ),
        ];
        for (name, tz, set, times, want) in cases {
            let mut p = Policy {
                tz,
                ..Policy::default()
            };
            set(&mut p);
            let times: Vec<i64> = times.iter().map(|s| at(tz, s)).collect();
            assert_eq!(kept(&p, &times), want, "{name}");
        }
    }

    #[test]
    fn repeated_dst_hour_counts_twice() {
        let ber = chrono_tz::Europe::Berlin;
        // 2024-10-27: 02:00-03:00 happens twice (00:xx and 01:xx UTC).
        let first = Utc
            .with_ymd_and_hms(2024, 10, 27, 0, 30, 0)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        let second = first + H;
        let p = Policy {
            tz: ber,
            keep_hourly: Some(5),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &[first, second]), vec![0, 1]);
    }

    #[test]
    fn last_ties_and_no_rules() {
        let p = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        // Equal times: larger id counts as newer.
        assert_eq!(kept(&p, &[5, 5, 5, 1]), vec![1, 2]);
        assert_eq!(kept(&Policy::default(), &[1, 2, 3]), vec![0, 1, 2]);
        let p = Policy {
            keep_last: Some(0),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &[1, 2, 3]), Vec::<usize>::new());
    }

    #[test]
    fn within_and_tags() {
        let p = Policy {
            keep_within: Some(parse_span("2h").unwrap()),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &[0, 10 * H, 11 * H, 12 * H]), vec![1, 2, 3]);
        let snaps = [
            snap(1, "h", &["a"]),
            snap(2, "h", &["b"]),
            snap(3, "h", &[]),
        ];
        let items: Vec<(Id, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let p = Policy {
            keep_tags: vec!["a".into(), "b".into()],
            ..Policy::default()
        };
        let d = apply(&p, &items, DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            d.iter().map(|d| d.keep).collect::<Vec<_>>(),
            vec![true, true, false]
        );
        assert_eq!(d[0].reasons, vec!["tag"]);
    }

    #[test]
    fn grouping() {
        let snaps = [
            snap(1, "a", &[]),
            snap(2, "b", &[]),
            snap(3, "a", &[]),
            snap(4, "b", &[]),
        ];
        let items: Vec<(Id, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let mut p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let keep = |p: &Policy| {
            apply(p, &items, DateTime::<Utc>::MAX_UTC)
                .iter()
                .map(|d| d.keep)
                .collect::<Vec<_>>()
        };
        assert_eq!(keep(&p), vec![false, false, true, true]);
        p.group_by = GroupBy {
            host: false,
            source: false,
            paths: false,
        };
        assert_eq!(keep(&p), vec![false, false, false, true]);
    }

    #[test]
    fn etcd_snapshots_group_by_kind_not_by_their_timestamped_file() {
        let mut snaps: Vec<Snapshot> = (0..4).map(|t| snap(t, "h", &[])).collect();
        for (i, s) in snaps.iter_mut().enumerate() {
            s.source = SourceKind::Etcd;
            s.paths = vec![format!("/snapshot_2026-01-0{}_000000.db", i + 1)];
        }
        let mut files = snap(9, "h", &[]);
        files.paths = vec!["/etc/kubernetes".into()];
        snaps.push(files);
        let items: Vec<(Id, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let p = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let kept: Vec<bool> = apply(&p, &items, DateTime::<Utc>::MAX_UTC)
            .iter()
            .map(|d| d.keep)
            .collect();
        assert_eq!(kept, vec![false, false, true, true, true]);
    }

    #[test]
    fn max_count_exact() {
        let times: Vec<i64> = (0..10).collect();
        let p = Policy {
            keep_last: Some(8),
            max_count: Some(3),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), vec![7, 8, 9]);
        let p = Policy {
            max_count: Some(4),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), vec![6, 7, 8, 9]);
        let p = Policy {
            keep_last: Some(2),
            max_count: Some(5),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), vec![8, 9]);
        let p = Policy {
            max_count: Some(0),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), Vec::<usize>::new());
    }

    /// Per-group limits and emptied groups: hosts `a` and `b`, snapshots at times 0..6
    /// alternating a, b, a, b, ...; the decisions' kept indices and the emptied groups' newest.
    #[test]
    fn max_count_per_group_and_emptied_groups_table() {
        let snaps: Vec<Snapshot> = (0..6)
            .map(|t| {
                let host = if t % 2 == 0 { "a" } else { "b" };
                snap(t, host, if t == 3 { &["x"] } else { &[] })
            })
            .collect();
        let items: Vec<(Id, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let one_group = GroupBy {
            host: false,
            source: false,
            paths: false,
        };
        type Case = (&'static str, Policy, Vec<usize>, Vec<usize>);
        let cases: Vec<Case> = vec![
            (
                "max-count alone applies to each group",
                Policy {
                    max_count: Some(1),
                    ..Policy::default()
                },
                vec![4, 5],
                vec![],
            ),
            (
                "max-count after keep rules, per group",
                Policy {
                    keep_last: Some(3),
                    max_count: Some(2),
                    ..Policy::default()
                },
                vec![2, 3, 4, 5],
                vec![],
            ),
            (
                "grouping by nothing makes it a limit over the whole set",
                Policy {
                    max_count: Some(1),
                    group_by: one_group,
                    ..Policy::default()
                },
                vec![5],
                vec![],
            ),
            (
                "keep-last 0 empties every group",
                Policy {
                    keep_last: Some(0),
                    ..Policy::default()
                },
                vec![],
                vec![4, 5],
            ),
            (
                "a tag only one group has empties the other",
                Policy {
                    keep_tags: vec!["x".into()],
                    ..Policy::default()
                },
                vec![3],
                vec![4],
            ),
            (
                "zero periods keep nothing either",
                Policy {
                    keep_daily: Some(0),
                    keep_last: Some(0),
                    max_count: Some(3),
                    ..Policy::default()
                },
                vec![],
                vec![4, 5],
            ),
            (
                "no rule keeps everything",
                Policy::default(),
                vec![0, 1, 2, 3, 4, 5],
                vec![],
            ),
        ];
        for (name, p, want_kept, want_emptied) in cases {
            let d = apply(&p, &items, DateTime::<Utc>::MAX_UTC);
            let kept: Vec<usize> = (0..d.len()).filter(|&i| d[i].keep).collect();
            assert_eq!(kept, want_kept, "{name}");
            assert_eq!(
                emptied_groups(p.group_by, &items, &d),
                want_emptied,
                "{name}"
            );
        }
    }

    #[test]
    fn max_size_prefix() {
        let packs: HashMap<Id, PackSize> = (0..4)
            .map(|i| {
                (
                    id(i),
                    PackSize {
                        size: 1000,
                        blobs: 1,
                    },
                )
            })
            .collect();
        let per_pack = 1000 + INDEX_BYTES_PER_BLOB + INDEX_BYTES_PER_OBJECT;
        let snaps = vec![
            (10, vec![id(0), id(1)]),
            (10, vec![id(1)]),
            (10, vec![id(1), id(2)]),
            (10, vec![id(3)]),
        ];
        let cost = [
            2 * per_pack + 10,
            2 * per_pack + 20,
            3 * per_pack + 30,
            4 * per_pack + 40,
        ];
        for (k, c) in cost.iter().enumerate() {
            assert_eq!(fitting_prefix(100, &snaps, &packs, 100 + c), k + 1);
            assert_eq!(fitting_prefix(100, &snaps, &packs, 100 + c - 1), k);
        }
        assert_eq!(fitting_prefix(0, &[], &packs, 0), 0);
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse_span("1y6m").unwrap(),
            chrono::Duration::days(365 + 180)
        );
        assert_eq!(
            parse_span("2w3d4h").unwrap(),
            chrono::Duration::hours(17 * 24 + 4)
        );
        assert!(parse_span("7").is_err());
        assert!(parse_span("7x").is_err());
        assert!(parse_span("").is_err());
        assert!(parse_span("99999999999999999999d").is_err());
        assert_eq!(parse_size("50G").unwrap(), 50_000_000_000);
        assert_eq!(parse_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("5Q").is_err());
        assert!(parse_size("").is_err());
    }

    proptest! {
        #[test]
        fn max_count_never_exceeded_in_a_group(
            times in proptest::collection::vec(0i64..2_000_000 * H / 1000, 0..40),
            hosts in proptest::collection::vec(0u8..3, 40),
            last in proptest::option::of(0u32..5),
            daily in proptest::option::of(0u32..5),
            monthly in proptest::option::of(0u32..5),
            max in 0u32..10,
        ) {
            let snaps: Vec<Snapshot> = times
                .iter()
                .zip(&hosts)
                .map(|(t, h)| snap(*t * 1000, &format!("h{h}"), &[]))
                .collect();
            let items: Vec<(Id, &Snapshot)> = snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
            let p = Policy {
                keep_last: last,
                keep_daily: daily,
                keep_monthly: monthly,
                max_count: Some(max),
                tz: chrono_tz::Europe::Berlin,
                ..Policy::default()
            };
            let a = apply(&p, &items, DateTime::<Utc>::MAX_UTC);
            for host in 0u8..3 {
                let name = format!("h{host}");
                let kept = a.iter().zip(&snaps).filter(|(d, s)| d.keep && s.host == name).count();
                prop_assert!(kept <= max as usize, "{kept} of {name} kept, max {max}");
            }
            let mut rev = items.clone();
            rev.reverse();
            let mut b = apply(&p, &rev, DateTime::<Utc>::MAX_UTC);
            b.reverse();
            prop_assert_eq!(a, b);
        }
    }
}
