//! Timestamps the way Langflow prints them (the stored unit is UTC microseconds).

use chrono::{DateTime, NaiveDateTime, Utc};

fn to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Users: `2026-11-23T13:42:21.749085Z`.
pub fn user_time(micros: i64) -> String {
    to_datetime(micros)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Messages: `2026-11-23 13:45:04.549509 UTC`.
pub fn message_time(micros: i64) -> String {
    to_datetime(micros)
        .format("%Y-%m-%d %H:%M:%S%.6f UTC")
        .to_string()
}

/// API keys and flows: `2026-11-23T13:44:01+00:00`.
pub fn second_time(micros: i64) -> String {
    to_datetime(micros)
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

/// Accepts RFC 3339 (`2026-11-23T13:44:06Z`, `...+02:00`) or a naive date-time taken as UTC.
pub fn parse_datetime(input: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(input, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_langflow() {
        let t = parse_datetime("2026-11-23T13:42:21.749085Z").unwrap();
        assert_eq!(user_time(t), "2026-11-23T13:42:21.749085Z");
        assert_eq!(second_time(t), "2026-11-23T13:42:21+00:00");
        assert_eq!(
            parse_datetime("2026-11-23T15:42:21+02:00"),
            parse_datetime("2026-11-23T13:42:21Z")
        );
        assert_eq!(
            parse_datetime("2026-11-23T13:42:21"),
            parse_datetime("2026-11-23T13:42:21Z")
        );
        assert_eq!(parse_datetime("tomorrow"), None);
    }
}
