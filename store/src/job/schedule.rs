//! Cron schedules in IANA time zones.
//!
//! Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds
//! first), evaluated by `croner` in the job's zone. Daylight-saving changes, for a schedule
//! with fixed seconds, minutes and hours (`30 2 * * *`):
//! - a local time that does not exist (spring forward, 02:30 on the day clocks jump from
//!   02:00 to 03:00) runs once, at the first valid instant after the gap (03:00);
//! - a local time that happens twice (fall back) runs once, at its first occurrence.
//!
//! Schedules with a wildcard or step in those fields (`*/15 * * * *`) follow the wall clock:
//! occurrences inside a skipped hour do not happen, and a repeated hour is run through twice.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use std::time::Duration;

/// A parsed schedule in its zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

/// The IANA zone named `name`.
pub fn zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("{name:?} is not an IANA time zone (such as UTC, Europe/Paris or America/New_York)")
    })
}

impl Schedule {
    /// Parse a 5- or 6-field cron expression.
    pub fn new(expr: &str, tz: Tz) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "schedule {expr:?} has {fields} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser.parse(expr).map_err(|e| {
            // Name the field: the first that fails with every other one `*`.
            let parts: Vec<&str> = expr.split_whitespace().collect();
            let names = &[
                "seconds",
                "minute",
                "hour",
                "day-of-month",
                "month",
                "day-of-week",
            ][6 - parts.len()..];
            let culprit = (0..parts.len()).find(|&i| {
                let probe: Vec<&str> = (0..parts.len())
                    .map(|j| if j == i { parts[i] } else { "*" })
                    .collect();
                parser.parse(&probe.join(" ")).is_err()
            });
            match culprit {
                Some(i) => format!(
                    "schedule {expr:?}: the {} field {:?} is not valid ({e})",
                    names[i], parts[i]
                ),
                None => format!("schedule {expr:?} is not a valid cron expression: {e}"),
            }
        })?;
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
            tz,
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The zone.
    pub fn zone(&self) -> Tz {
        self.tz
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let local = after.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&local, false).ok()
    }

    /// The next `n` runs after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    t = next.with_timezone(&Utc);
                    out.push(next);
                }
                None => break,
            }
        }
        out
    }
}

/// `30s`, `5m`, `2h`, `1d`, Go's `500ms` and `1.5s`, or a combination (`1h30m`); a bare number
/// is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    if s.is_empty() {
        return Err("an empty duration: give one such as `90s`, `5m` or `1h30m`".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let number = |c: char| c.is_ascii_digit() || c == '.';
        let (num, tail) = rest.split_at(rest.find(|c| !number(c)).unwrap_or(rest.len()));
        let (unit, tail) = tail.split_at(tail.find(number).unwrap_or(tail.len()));
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: a number must come before {unit:?}"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(format!(
                    "{s:?}: give a unit after each number (`90s`, `5m`, `1h30m`, `500ms`)"
                ))
            }
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?}; use ms, s, m, h or d (`90s`, `5m`, `1h30m`, `500ms`)"
                ))
            }
        };
        total = total
            .checked_add(
                Duration::try_from_secs_f64(n * scale)
                    .map_err(|_| format!("{s:?}: too long a duration"))?,
            )
            .ok_or_else(|| format!("{s:?}: too long a duration"))?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn errors_name_the_field() {
        let e = |expr| Schedule::new(expr, chrono_tz::UTC).err().unwrap();
        assert!(
            e("0 25 * * *").contains("the hour field \"25\""),
            "{}",
            e("0 25 * * *")
        );
        assert!(e("0 2 * 13 *").contains("the month field \"13\""));
        assert!(e("*/5 0 2 * * 9").contains("the day-of-week field \"9\""));
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// (zone, expression, start (UTC), expected next runs as local RFC 3339 with offsets)
    const TABLE: &[(&str, &str, &str, &[&str])] = &[
        // Europe/Paris springs forward on 2026-03-29 at 02:00 CET -> 03:00 CEST: 02:30 does not
        // exist and runs once at 03:00; the next day is back to 02:30.
        (
            "Europe/Paris",
            "30 2 * * *",
            "2026-03-27T12:00:00Z",
            &[
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
            ],
        ),
        // ... and falls back on 2026-10-25 at 03:00 CEST -> 02:00 CET: 02:30 happens twice and
        // runs once, at the first (CEST).
        (
            "Europe/Paris",
            "30 2 * * *",
            "2026-10-23T12:00:00Z",
            &[
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
            ],
        ),
        // New York: 2026-03-08 02:00 EST -> 03:00 EDT.
        (
            "America/New_York",
            "15 2 * * *",
            "2026-03-07T12:00:00Z",
            &["2026-03-08T03:00:00-04:00", "2026-03-09T02:15:00-04:00"],
        ),
        // New York falls back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 runs once.
        (
            "America/New_York",
            "30 1 * * *",
            "2026-10-31T12:00:00Z",
            &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
        // Lord Howe shifts by 30 minutes (2026-10-04 02:00 -> 02:30 local).
        (
            "Australia/Lord_Howe",
            "10 2 * * *",
            "2026-10-02T12:00:00Z",
            &[
                "2026-10-03T02:10:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-05T02:10:00+11:00",
            ],
        ),
        // A zone without DST, and UTC: plain.
        (
            "Asia/Tokyo",
            "0 0 * * 1",
            "2026-03-01T00:00:00Z",
            &["2026-03-02T00:00:00+09:00", "2026-03-09T00:00:00+09:00"],
        ),
        // Hourly at :30 across the Paris gap: 02:30 does not exist and is skipped.
        (
            "Europe/Paris",
            "30 * * * *",
            "2026-03-29T00:00:00Z",
            &["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00"],
        ),
        // Six fields: seconds.
        (
            "UTC",
            "*/20 * * * * *",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T00:00:20+00:00",
                "2026-01-01T00:00:40+00:00",
                "2026-01-01T00:01:00+00:00",
            ],
        ),
    ];

    #[test]
    fn dst_table() {
        for (tz, expr, start, want) in TABLE {
            let s = Schedule::new(expr, zone(tz).unwrap()).unwrap();
            let got: Vec<String> = s
                .upcoming(utc(start), want.len())
                .iter()
                .map(|t| t.to_rfc3339())
                .collect();
            assert_eq!(&got, want, "{tz} {expr} from {start}");
        }
    }

    #[test]
    fn repeated_hour_runs_once_for_fixed_times() {
        let s = Schedule::new("30 2 * * *", zone("Europe/Paris").unwrap()).unwrap();
        let runs = s.upcoming(utc("2026-10-24T12:00:00Z"), 2);
        let gap = runs[1].with_timezone(&Utc) - runs[0].with_timezone(&Utc);
        assert_eq!(gap.num_hours(), 25, "{runs:?}");
        let _ = Utc.timestamp_opt(0, 0);
    }

    #[test]
    fn bad_expressions_are_refused() {
        let tz = chrono_tz::UTC;
        assert!(Schedule::new("* * * *", tz)
            .unwrap_err()
            .contains("4 fields"));
        assert!(Schedule::new("61 * * * *", tz).is_err());
        assert!(Schedule::new("0 3 * * MON-FRI", tz).is_ok());
        assert!(zone("Mars/Olympus").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172800);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("5m3").is_err());
        // Go's spelling, as etcdctl takes it.
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
        assert!(parse_duration("").is_err() && parse_duration("s").is_err());
        assert!(parse_duration("1e400s").is_err() && parse_duration("..s").is_err());
    }
}
