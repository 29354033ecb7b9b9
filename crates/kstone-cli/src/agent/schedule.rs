//! Job schedules: standard 5-field cron (`0 2 * * *`, what crontabs and the
//! operations chapter use) or 6 fields with seconds first.
//!
//! Either way the day-of-week field is standard cron's (0 or 7 = Sunday …
//! 6 = Saturday, names, lists, ranges, steps): it is rewritten as the list of
//! day names, which the `cron` crate (whose own numbering starts at 1 =
//! Sunday) reads the same way. A 5-field expression gets a `0` seconds field.
//! As in standard cron, when both day-of-month and day-of-week are
//! restricted a day matches if *either* does (`0 0 1 * 1`: the 1st and every
//! Monday); the `cron` crate alone would ask for both.

use std::str::FromStr;

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS_5: &str = "minute hour day-of-month month day-of-week";

/// A parsed schedule: one `cron` schedule, or two whose union is the
/// standard-cron meaning of a day-of-month *or* day-of-week restriction.
#[derive(Debug)]
pub struct Schedule(Vec<cron::Schedule>);

impl Schedule {
    /// The first time after `t` that the schedule fires.
    pub fn next_after(
        &self,
        t: &chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.iter().filter_map(|s| s.after(t).next()).min()
    }
}

fn restricted(field: &str) -> bool {
    field != "*" && field != "?"
}

/// Parse a schedule; the error explains the expression in words.
///
/// ```
/// # use kstone_cli::agent::schedule::parse;
/// assert!(parse("0 2 * * *").is_ok()); // 02:00 every day
/// assert!(parse("0 0 2 * * *").is_ok()); // the same, with seconds
/// assert!(parse("0 2 * *").unwrap_err().contains("5 fields"));
/// ```
pub fn parse(expr: &str) -> Result<Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    // Ranges are checked here, in the expression's own terms: the cron
    // crate's message quotes its internal 6-field form.
    const RANGES: [(&str, u32, u32); 5] = [
        ("second", 0, 59),
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day-of-month", 1, 31),
        ("month", 1, 12),
    ];
    let ranged: &[(&str, u32, u32)] = match fields.len() {
        5 => &RANGES[1..],
        6 => &RANGES,
        _ => &[],
    };
    for (f, &(name, lo, hi)) in fields.iter().zip(ranged) {
        check_range(f, lo, hi).map_err(|why| format!("{expr:?}: {name} {f:?}: {why}"))?;
    }
    let six = match fields.len() {
        5 => {
            let dow = standard_days(fields[4])
                .map_err(|why| format!("{expr:?}: day-of-week {:?}: {why}", fields[4]))?;
            format!(
                "0 {} {} {} {} {dow}",
                fields[0], fields[1], fields[2], fields[3]
            )
        }
        6 => {
            let dow = standard_days(fields[5])
                .map_err(|why| format!("{expr:?}: day-of-week {:?}: {why}", fields[5]))?;
            format!("{} {dow}", fields[..5].join(" "))
        }
        n => {
            return Err(format!(
                "{expr:?} has {n} field{}: a schedule has 5 fields ({FIELDS_5}; \
                 \"0 2 * * *\" is 02:00 every day) or 6 with seconds first",
                if n == 1 { "" } else { "s" }
            ))
        }
    };
    let one = |six: &str| {
        cron::Schedule::from_str(six).map_err(|e| {
            let fields = if fields.len() == 5 {
                FIELDS_5.to_string()
            } else {
                format!("second {FIELDS_5}")
            };
            // Its last line says why; the lines before echo its own form.
            let e = e.to_string();
            let why = e.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(&e);
            format!(
                "{expr:?} is not a valid schedule ({fields}): {}",
                why.trim()
            )
        })
    };
    let parts: Vec<&str> = six.split(' ').collect();
    let s = if restricted(parts[3]) && restricted(parts[5]) {
        // Standard cron: either day field matches.
        let by_date = format!("{} {} *", parts[..4].join(" "), parts[4]);
        let by_weekday = format!("{} * {} {}", parts[..3].join(" "), parts[4], parts[5]);
        Schedule(vec![one(&by_date)?, one(&by_weekday)?])
    } else {
        Schedule(vec![one(&six)?])
    };
    // A day that no month has (31 February) is valid syntax and never runs.
    if s.next_after(&chrono::Utc::now()).is_none() {
        return Err(format!("{expr:?} never runs: no month has that day"));
    }
    Ok(s)
}

/// Each number of a field (`5`, `1-5`, `*/15`, `0,30`) within `lo..=hi`;
/// names (`JAN`, `MON`) are left to the parser.
fn check_range(field: &str, lo: u32, hi: u32) -> Result<(), String> {
    for part in field.split(',') {
        if part.is_empty() {
            return Err("a list has an empty item".into());
        }
        let (span, step) = match part.split_once('/') {
            Some((s, st)) => (s, Some(st)),
            None => (part, None),
        };
        if let Some(st) = step {
            match st.parse::<u32>() {
                Ok(n) if n > 0 && n <= hi => {}
                Ok(n) if n > hi => {
                    return Err(format!(
                        "step {n} is larger than the field's range {lo}-{hi}"
                    ))
                }
                _ => return Err(format!("step {st:?} must be a whole number above 0")),
            }
        }
        let ends: Vec<u32> = span.split('-').filter_map(|v| v.parse().ok()).collect();
        for &n in &ends {
            if !(lo..=hi).contains(&n) {
                return Err(format!("{n} is out of range {lo}-{hi}"));
            }
        }
        if let [a, b] = ends[..] {
            if a > b {
                return Err(format!("the range {a}-{b} runs backwards"));
            }
        }
    }
    Ok(())
}

/// A standard day-of-week field as a list of day names (or `*`).
fn standard_days(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let day = |s: &str| -> Result<usize, String> {
        if let Some(i) = DAYS.iter().position(|d| d.eq_ignore_ascii_case(s)) {
            return Ok(i);
        }
        match s.parse::<usize>() {
            Ok(n @ 0..=7) => Ok(n % 7),
            _ => Err(format!(
                "{s:?} is not a day (0-7, 0 and 7 are Sunday, or SUN..SAT)"
            )),
        }
    };
    let mut on = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step {s:?} is not a positive number"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                // 7 is Sunday too, so `5-7` is Friday to Sunday.
                Some((a, b)) => (day(a)?, if b == "7" { 7 } else { day(b)? }),
                None if step > 1 => (day(r)?, 6),
                None => {
                    let d = day(r)?;
                    (d, d)
                }
            },
        };
        if lo > hi {
            return Err(format!("range {range:?} runs backwards"));
        }
        for d in (lo..=hi).step_by(step) {
            on[d % 7] = true;
        }
    }
    Ok(DAYS
        .iter()
        .zip(on)
        .filter(|(_, on)| *on)
        .map(|(d, _)| *d)
        .collect::<Vec<_>>()
        .join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Utc, Weekday};

    fn next(expr: &str) -> chrono::DateTime<Utc> {
        // A Wednesday.
        let from = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        parse(expr).unwrap().next_after(&from).unwrap()
    }

    /// Day-of-month and day-of-week restricted together: either matches.
    #[test]
    fn either_day_field_matches_as_in_standard_cron() {
        // From Wednesday 2 December 2026: Monday the 7th comes before the 15th.
        assert_eq!(next("0 0 15 * 1").day(), 7);
        // The 3rd (a Thursday) comes before the next Monday.
        assert_eq!(next("0 0 3 * 1").day(), 3);
        // 31 February never exists, but Sundays in February do.
        let t = next("0 0 31 2 0");
        assert_eq!((t.month(), t.weekday()), (2, Weekday::Sun));
    }

    #[test]
    fn five_fields_are_standard_cron() {
        let t = next("0 2 * * *");
        assert_eq!((t.day(), t.hour(), t.minute(), t.second()), (3, 2, 0, 0));
        assert_eq!(next("0 3 * * 0").weekday(), Weekday::Sun);
        assert_eq!(next("0 3 * * 7").weekday(), Weekday::Sun);
        assert_eq!(next("0 3 * * sun").weekday(), Weekday::Sun);
        assert_eq!(next("0 3 * * 1-5").weekday(), Weekday::Thu);
        assert_eq!(next("0 3 * * 5-7").weekday(), Weekday::Fri);
        assert_eq!(next("0 3 * * 6,0").weekday(), Weekday::Sat);
        assert_eq!(next("0 3 * * */3").weekday(), Weekday::Sat); // Sun, Wed, Sat
        assert_eq!(next("30 */4 * * *").minute(), 30);
        // 6 fields: the same day-of-week numbering (1 = Monday).
        assert_eq!(next("0 0 5 * * Sun").weekday(), Weekday::Sun);
        assert_eq!(next("0 0 5 * * 1").weekday(), Weekday::Mon);
        assert_eq!(next("0 0 5 * * 0").weekday(), Weekday::Sun);
        assert_eq!(next("0 0 5 * * 5-7").weekday(), Weekday::Fri);
    }

    #[test]
    fn bad_expressions_are_explained() {
        for (expr, says) in [
            ("0 2 * *", "has 4 fields: a schedule has 5 fields"),
            ("* * * * * * 2030", "has 7 fields"),
            ("", "has 0 fields"),
            ("0 2 * * 8", "\"8\" is not a day"),
            ("0 2 * * 5-1", "runs backwards"),
            ("0 2 * * */0", "step"),
            ("0 25 * * *", "hour \"25\": 25 is out of range 0-23"),
            ("0 0 25 * * *", "hour \"25\": 25 is out of range 0-23"),
            ("61 * * * *", "minute \"61\": 61 is out of range 0-59"),
            ("0 2 0 * *", "day-of-month \"0\": 0 is out of range 1-31"),
            ("0 2 * 1-13 *", "month \"1-13\": 13 is out of range 1-12"),
            ("*/0 * * * *", "step \"0\" must be"),
            ("0 2 * FOO *", "is not a valid schedule (minute hour"),
            (
                "*/99 * * * *",
                "step 99 is larger than the field's range 0-59",
            ),
            ("5-2 * * * *", "the range 5-2 runs backwards"),
            ("0 0 31 2 *", "never runs"),
            ("1,2,,3 * * * *", "a list has an empty item"),
        ] {
            let e = parse(expr).unwrap_err();
            assert!(e.contains(says), "{expr:?}: {e}");
        }
    }
}
