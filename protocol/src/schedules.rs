//! Scheduled invocations: a cron expression (UTC) that invokes a function
//! of the tenant with a fixed JSON payload. The controller's leader fires
//! each due tick once (see `eddy_controller::schedules`).

use serde::{Deserialize, Serialize};

/// Schedules a tenant may have.
pub const MAX_PER_TENANT: usize = 64;
/// The largest `data` (its JSON text), in bytes.
pub const MAX_DATA_BYTES: usize = 64 * 1024;
/// Firings kept per schedule, newest first.
pub const KEEP_FIRINGS: usize = 20;
/// A tick missed (no controller ran) for up to this long is fired late;
/// an older one is skipped and counted in `missed`.
pub const CATCH_UP_MS: u64 = 3_600_000;

/// A schedule's name: 1–64 of `[A-Za-z0-9_.-]`, starting with a letter or
/// a digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schedule name `{}` must be 1 to 64 ASCII letters, digits, `_`, `-` or `.`, starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// A parsed cron expression: five fields (minute hour day-of-month month
/// day-of-week) or six (second first), in UTC, with `*`, lists, ranges,
/// steps and names (`JAN`, `MON`), or one of `@yearly`, `@monthly`,
/// `@weekly`, `@daily`, `@hourly`. As in Vixie cron, when both
/// day-of-month and day-of-week are restricted, a day matching either is
/// due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's allowed values as a bit set.
fn field(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        s.parse::<u32>()
            .map_err(|_| format!("{what}: `{s}` is not a number"))
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0 && *s <= max)
                    .ok_or_else(|| format!("{what}: step `{s}` is not a number from 1 to {max}"))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15`: from 5 to the end, every 15.
            (v, if item.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!(
                "{what}: `{item}` is outside {min}-{max} or an empty range"
            ));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl std::str::FromStr for Cron {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(format!("`{t}` is not a known cron macro")),
            t => t,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let (s, rest) = match parts.len() {
            5 => ("0", &parts[..]),
            6 => (parts[0], &parts[1..]),
            n => {
                return Err(format!(
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 \
                     (second first); this one has {n}"
                ));
            }
        };
        Ok(Cron {
            seconds: field(s, "second", 0, 59, &[])?,
            minutes: field(rest[0], "minute", 0, 59, &[])?,
            hours: field(rest[1], "hour", 0, 23, &[])?,
            days: field(rest[2], "day of month", 1, 31, &[])?,
            months: field(rest[3], "month", 1, 12, &MONTHS)?,
            // Sunday is 0 or 7.
            weekdays: match field(rest[4], "day of week", 0, 7, &WEEKDAYS)? {
                b if b & (1 << 7) != 0 => (b & !(1 << 7)) | 1,
                b => b,
            },
            // As in Vixie cron: a field starting with `*` (`*/2` too)
            // does not restrict the day.
            any_day: rest[2].starts_with('*'),
            any_weekday: rest[4].starts_with('*'),
        })
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) (Howard Hinnant's
/// `civil_from_days`).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01 (`days_from_civil`).
fn days_from(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Cron {
    fn day_matches(&self, days: i64, d: u32) -> bool {
        let dom = self.days & (1 << d) != 0;
        // 1970-01-01 was a Thursday.
        let dow = self.weekdays & (1 << (days + 4).rem_euclid(7)) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first due time strictly after `after_ms` (ms since the epoch,
    /// on a whole second), or `None` when nothing is due within five years
    /// (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let mut t = (after_ms / 1000 + 1) as i64;
        let limit = t + 5 * 366 * 86_400;
        while t < limit {
            let days = t.div_euclid(86_400);
            let secs = t.rem_euclid(86_400);
            let (y, m, d) = civil(days);
            if self.months & (1 << m) == 0 {
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                t = days_from(y, m, 1) * 86_400;
                continue;
            }
            if !self.day_matches(days, d) {
                t = (days + 1) * 86_400;
                continue;
            }
            let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            if self.hours & (1 << h) == 0 {
                t = days * 86_400 + (h + 1) * 3600;
                continue;
            }
            if self.minutes & (1 << mi) == 0 {
                t = days * 86_400 + h * 3600 + (mi + 1) * 60;
                continue;
            }
            if self.seconds & (1 << s) == 0 {
                t += 1;
                continue;
            }
            return Some(t as u64 * 1000);
        }
        None
    }
}

/// A schedule as its owner set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub name: String,
    /// The cron expression, as given (UTC).
    pub cron: String,
    /// The function it invokes.
    pub function: String,
    /// The payload of each invocation (`application/json`).
    pub data: serde_json::Value,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// What became of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An invocation was enqueued (its run is `run_id`).
    Enqueued,
    /// The tenant's quota or the function's absence refused it.
    Refused,
}

/// One tick fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// The tick it fired for.
    pub tick_ms: u64,
    /// When it was fired (later than the tick when caught up).
    pub at_ms: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a schedule stands: the next tick and what the last ones did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The next tick to fire (ms since the epoch); 0 when none is due
    /// within five years.
    pub next_ms: u64,
    /// Ticks enqueued.
    #[serde(default)]
    pub fired: u64,
    /// Ticks refused (quota, function gone).
    #[serde(default)]
    pub refused: u64,
    /// Ticks skipped: missed for longer than the catch-up window.
    #[serde(default)]
    pub missed: u64,
    /// The last [`KEEP_FIRINGS`] firings, newest first.
    #[serde(default)]
    pub last: Vec<Firing>,
}

/// The member of the global due index for a tenant's schedule.
pub fn member(tenant: &crate::TenantId, name: &str) -> String {
    format!("{tenant}/{name}")
}

/// The tenant and schedule name of a due-index member.
pub fn parse_member(member: &str) -> Option<(crate::TenantId, &str)> {
    let (t, name) = member.split_once('/')?;
    Some((crate::TenantId::new(t).ok()?, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64, mi: i64, s: i64) -> u64 {
        ((days_from(y, m, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000) as u64
    }

    fn next(cron: &str, from: u64) -> u64 {
        cron.parse::<Cron>().unwrap().next_after(from).unwrap()
    }

    #[test]
    fn civil_round_trips() {
        for days in [
            -800_000i64,
            -1,
            0,
            59,
            60,
            11_016,
            19_000,
            20_819,
            2_000_000,
        ] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from(y, m, d), days);
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_819), (2027, 1, 1));
    }

    #[test]
    fn next_ticks() {
        let t = at(2026, 12, 7, 13, 20, 5);
        assert_eq!(next("* * * * * *", t), t + 1000);
        assert_eq!(next("*/5 * * * * *", t), at(2026, 12, 7, 13, 20, 10));
        assert_eq!(next("0 * * * *", t), at(2026, 12, 7, 14, 0, 0));
        assert_eq!(next("@hourly", t), at(2026, 12, 7, 14, 0, 0));
        assert_eq!(next("30 2 * * *", t), at(2026, 12, 8, 2, 30, 0));
        assert_eq!(next("0 0 1 * *", t), at(2027, 1, 1, 0, 0, 0));
        assert_eq!(next("0 9 * * MON-FRI", t), at(2026, 12, 8, 9, 0, 0));
        // 2026-12-07 is a Monday; Sunday as 0 and as 7.
        assert_eq!(next("0 0 * * 0", t), at(2026, 12, 13, 0, 0, 0));
        assert_eq!(next("0 0 * * 7", t), at(2026, 12, 13, 0, 0, 0));
        assert_eq!(next("0 0 * * 5-7", t), at(2026, 12, 11, 0, 0, 0));
        assert_eq!(next("0 0 29 2 *", t), at(2028, 2, 29, 0, 0, 0));
        assert_eq!(next("15,45 10-11 * JAN *", t), at(2027, 1, 1, 10, 15, 0));
        // Both days restricted: either matches (the 13th is a Sunday, the
        // 10th a Thursday).
        assert_eq!(next("0 0 10 * SUN", t), at(2026, 12, 10, 0, 0, 0));
        assert_eq!(
            next("0 0 31 * *", at(2026, 12, 31, 0, 0, 0)),
            at(2027, 1, 31, 0, 0, 0)
        );
        assert_eq!(
            next("0 0 31 12 *", at(2026, 12, 31, 23, 59, 59)),
            at(2027, 12, 31, 0, 0, 0)
        );
        assert_eq!("0 0 30 2 *".parse::<Cron>().unwrap().next_after(t), None);
        // Steps from a value and over a range.
        assert_eq!(next("50/5 * * * *", t), at(2026, 12, 7, 13, 50, 0));
        assert_eq!(next("0 10-20/5 * * *", t), at(2026, 12, 7, 15, 0, 0));
        assert_eq!(next("0 0 1-10/3 * *", t), at(2026, 12, 10, 0, 0, 0));
        // `*/2` in the day field does not restrict: odd days that are
        // Mondays (the 21st), not odd days or Mondays.
        assert_eq!(next("0 0 */2 * MON", t), at(2026, 12, 21, 0, 0, 0));
    }

    #[test]
    fn bad_expressions_say_why() {
        for (text, says) in [
            ("* * * *", "has 4"),
            ("60 * * * *", "minute: `60` is outside 0-59"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step `0` is not a number from 1 to 59"),
            ("30/4294967290 * * * *", "step `4294967290`"),
            ("* * * * * /2", "day of week: `` is not a number"),
            ("a * * * *", "`a` is not a number"),
            ("5-1 * * * *", "empty range"),
            ("@often", "not a known cron macro"),
        ] {
            let e = text.parse::<Cron>().unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn names_and_members() {
        assert!(check_name("hourly-report.v2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        let t = crate::TenantId::new("acme").unwrap();
        assert_eq!(parse_member(&member(&t, "n")), Some((t, "n")));
    }
}
