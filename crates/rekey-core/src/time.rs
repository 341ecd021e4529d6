//! Timestamps are Unix milliseconds in storage and RFC 3339 on the wire.

use crate::ErrorCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn ms_to_datetime(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn datetime_to_ms(dt: OffsetDateTime) -> i64 {
    (dt.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn ms_to_rfc3339(ms: i64) -> String {
    ms_to_datetime(ms)
        .format(&Rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

/// A time for people on a page: "2 Dec 2026, 13:25 UTC" (pages carry the
/// exact instant in `<time datetime>` next to it).
pub fn ms_to_readable_utc(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let dt = ms_to_datetime(ms);
    let month = MONTHS
        .get(usize::from(u8::from(dt.month())).saturating_sub(1))
        .copied()
        .unwrap_or("?");
    format!(
        "{} {month} {}, {:02}:{:02} UTC",
        dt.day(),
        dt.year(),
        dt.hour(),
        dt.minute()
    )
}

/// Parse an RFC 3339 timestamp given by a client.
pub fn parse_rfc3339(field: &str, s: &str) -> crate::Result<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(datetime_to_ms)
        .map_err(|_| {
            crate::Error::invalid(
                ErrorCode::InvalidTimestamp,
                format!("`{field}` must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn roundtrip() {
        let ms = parse_rfc3339("t", "2026-01-31T12:00:00.123Z").unwrap();
        assert_eq!(ms_to_rfc3339(ms), "2026-01-31T12:00:00.123Z");
        assert_eq!(ms_to_readable_utc(ms), "31 Jan 2026, 12:00 UTC");
        assert!(parse_rfc3339("t", "yesterday").is_err());
    }
}
