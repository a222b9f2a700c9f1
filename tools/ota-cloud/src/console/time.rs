//! Times as the console shows them: "3 h ago", "in 42 min", and ISO 8601 UTC for `title`
//! attributes (no date crate: the civil-from-days conversion below is the well-known
//! algorithm for the proleptic Gregorian calendar, days since 1970-01-01).

/// `ms` (Unix ms) as `2026-12-05T13:28:16Z`.
pub(crate) fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month (1–12), day (1–31) of `z` days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A duration in the largest unit that keeps it readable: `42 s`, `17 min`, `3 h`, `12 d`.
pub(crate) fn span(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 48 * 3600 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86_400)
    }
}

/// `at` relative to `now`: `3 h ago`, `just now`, `in 42 min`.
pub(crate) fn relative(at: u64, now: u64) -> String {
    if at <= now {
        let d = now - at;
        if d < 1000 {
            "just now".into()
        } else {
            format!("{} ago", span(d))
        }
    } else {
        format!("in {}", span(at - now))
    }
}

/// An awake time in milliseconds as `1.234 s`.
pub(crate) fn seconds(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso(1_796_477_296_000), "2026-12-05T13:28:16Z");
        assert_eq!(iso(4_102_444_799_999), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn relative_times() {
        let now = 1_000_000_000;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - 3 * 3600 * 1000 - 5, now), "3 h ago");
        assert_eq!(relative(now - 59_999, now), "59 s ago");
        assert_eq!(relative(now - 5 * 86_400_000, now), "5 d ago");
        assert_eq!(relative(now + 42 * 60_000, now), "in 42 min");
        assert_eq!(seconds(4_005), "4.005 s");
    }
}
