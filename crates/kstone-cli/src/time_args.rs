//! Parsers of the time arguments: durations (`--interval`, `--max-age`,
//! `--keep-within`, …), ages (`--drop-older-than`) and points in time
//! (`restore --to-time`).

/// An age to keep or delete by, or to alarm at (`--keep-within`,
/// `--pitr-window`, `--max-age`, `--drop-older-than`): a duration with its
/// unit (`30d`, `12h`); a bare number is refused, since `30` meant as days
/// would keep only 30 seconds.
pub fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    if s.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("give a unit: {s}d for days, {s}h for hours"));
    }
    parse_duration(s)
}

/// `1s`, `250ms`, `2m`, `1h`, `3d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m, h or d)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A duration between repeated rounds: at least 10 ms (0 would spin a CPU).
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_millis(10) {
        return Err(format!(
            "interval {s:?} is too short: rounds would spin a CPU (use at least 10ms, e.g. 1s)"
        ));
    }
    Ok(d)
}

/// An archiver's heartbeat period: at least a second (each report is a
/// write to the repository).
pub fn parse_heartbeat(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("heartbeat {s:?} is too short: use at least 1s"));
    }
    Ok(d)
}

/// RFC 3339 (`2026-11-27T19:41:26.123Z`, `…+01:00`) or `@unix-seconds` → µs since the epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || format!("bad time {s:?}: use RFC 3339 (2026-11-27T19:41:26Z) or @UNIX_SECONDS");
    if let Some(rest) = s.strip_prefix('@') {
        let secs: f64 = rest.parse().map_err(|_| bad())?;
        if !(0.0..1e11).contains(&secs) {
            return Err(bad());
        }
        return Ok((secs * 1e6).round() as u64);
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r).and_then(|x| x.parse().ok()).ok_or_else(bad)
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return Err(bad());
        }
        let mut us = String::from(digits);
        us.truncate(6);
        while us.len() < 6 {
            us.push('0');
        }
        frac_us = us.parse().map_err(|_| bad())?;
    }
    let offset_secs = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let hh: i64 = tz[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = tz[4..6].parse().map_err(|_| bad())?;
            let v = hh * 3600 + mm * 60;
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    // days from civil (proleptic Gregorian)
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    if t < 0 {
        return Err(bad());
    }
    Ok(t as u64 * 1_000_000 + frac_us as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2026-11-27T19:09:06Z"),
            Ok(1_795_806_546_000_000)
        );
        assert_eq!(
            parse_time("2026-11-27T20:09:06.5+01:00"),
            Ok(1_795_806_546_500_000)
        );
        assert_eq!(parse_time("@1795806546"), Ok(1_795_806_546_000_000));
        for bad in [
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-27",
            "@x",
            "2026-11-27T19:09:06",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(std::time::Duration::from_secs(1)));
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert!(parse_duration("1y").is_err());
    }
}
