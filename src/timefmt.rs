//! Timestamps: RFC 3339 parsing and formatting (UTC), and calendar parts.
//! Times are nanoseconds since the Unix epoch in an `i64` (years 1677–2262).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Parses an RFC 3339 timestamp (`2026-01-01T00:00:00Z`, offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    // Cheap shape test first: contexts hold many strings that are not times.
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
    {
        return None;
    }
    let owned;
    let s = if b[10] == b' ' {
        owned = format!("{}T{}", &s[..10], &s[11..]);
        owned.as_str()
    } else {
        s
    };
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let ns = dt.unix_timestamp_nanos();
    i64::try_from(ns).ok().map(Timestamp)
}

/// Formats as RFC 3339 in UTC with `Z`; fractional seconds only when present.
pub fn format_rfc3339(t: Timestamp) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(t.0 as i128) {
        Ok(dt) => {
            let base = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
            let ns = dt.nanosecond();
            if ns == 0 {
                format!("{base}Z")
            } else {
                let frac = format!("{ns:09}");
                format!("{base}.{}Z", frac.trim_end_matches('0'))
            }
        }
        Err(_) => "invalid-time".into(),
    }
}

/// The current time of the machine (for callers that supply no `now`).
pub fn now() -> Timestamp {
    let ns = OffsetDateTime::now_utc().unix_timestamp_nanos();
    Timestamp(i64::try_from(ns).unwrap_or(i64::MAX))
}

/// The calendar parts `date_part` understands.
pub const DATE_PARTS: &[&str] = &[
    "year", "month", "day", "hour", "minute", "second", "weekday", "yearday",
];

/// A calendar part of a timestamp in UTC; `weekday` is 1 (Monday) to 7.
pub fn date_part(t: Timestamp, part: &str) -> Option<f64> {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(t.0 as i128).ok()?;
    Some(match part {
        "year" => dt.year() as f64,
        "month" => u8::from(dt.month()) as f64,
        "day" => dt.day() as f64,
        "hour" => dt.hour() as f64,
        "minute" => dt.minute() as f64,
        "second" => dt.second() as f64,
        "weekday" => dt.weekday().number_from_monday() as f64,
        "yearday" => dt.ordinal() as f64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = parse_rfc3339("2026-01-01T12:30:00Z").expect("parses");
        assert_eq!(format_rfc3339(t), "2026-01-01T12:30:00Z");
        let t2 = parse_rfc3339("2026-01-01T14:30:00.5+02:00").expect("parses");
        assert_eq!(format_rfc3339(t2), "2026-01-01T12:30:00.5Z");
        assert_eq!(date_part(t, "weekday"), Some(4.0));
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
