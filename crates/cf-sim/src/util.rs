//! Small pure helpers: CC timestamps, deterministic GUIDs, Rails-style query escaping.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const CC_TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// `YYYY-MM-DDThh:mm:ssZ`, the CC's second-precision UTC format.
pub fn format_ts(epoch: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(CC_TIMESTAMP)
        .expect("formatting a valid date cannot fail")
}

/// Parses `YYYY-MM-DDThh:mm:ssZ` (the only format the CC accepts in `created_ats`).
pub fn parse_ts(s: &str) -> Option<i64> {
    let parsed = time::PrimitiveDateTime::parse(s, CC_TIMESTAMP).ok()?;
    Some(parsed.assume_utc().unix_timestamp())
}

/// RFC 3339 with nanoseconds, as in process stats' `usage.time`.
pub fn format_rfc3339_now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// splitmix64: a cheap, well-mixed, deterministic 64-bit hash.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Namespaces for [`stable_guid`], so seeded apps, spaces, routes... never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum GuidKind {
    Org = 1,
    Space = 2,
    App = 3,
    Process = 4,
    Route = 5,
    Destination = 6,
    Domain = 7,
    Droplet = 8,
    DemoOrg = 11,
    DemoSpace = 12,
    DemoApp = 13,
    DemoProcess = 14,
    DemoRoute = 15,
    DemoDestination = 16,
    User = 20,
}

/// A deterministic, v4-looking, lowercase GUID for `(kind, n)`: the same input always
/// gives the same GUID (seeding and the demo rely on this).
pub fn stable_guid(kind: GuidKind, n: u64) -> String {
    let k = kind as u64;
    let hi = mix64(k.wrapping_mul(0x5851_f42d_4c95_7f2d) ^ n);
    let lo = mix64(hi ^ n.rotate_left(17) ^ 0x6366_2d73_696d); // "cf-sim"
    let mut v = (u128::from(hi) << 64) | u128::from(lo);
    // Version 4, RFC 4122 variant: looks like any other CC guid.
    v = (v & !(0xf << 76)) | (0x4 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    uuid::Uuid::from_u128(v).hyphenated().to_string()
}

/// A random v4 GUID, for things created at run time.
pub fn random_guid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Ruby's `CGI.escape` (what Rails' `to_query` uses): alphanumerics and `*-._` stay,
/// space becomes `+`, everything else is `%XX` (so `,` → `%2C`, `:` → `%3A`, `[` → `%5B`).
pub fn cgi_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_second_precision() {
        let ts = parse_ts("2025-01-01T00:00:05Z").unwrap();
        assert_eq!(ts, 1_735_689_605);
        assert_eq!(format_ts(ts), "2025-01-01T00:00:05Z");
        assert_eq!(parse_ts("2025-01-01T00:00:05.123Z"), None);
        assert_eq!(parse_ts("2025-01-01"), None);
    }

    #[test]
    fn stable_guids_are_deterministic_distinct_and_v4_shaped() {
        let a = stable_guid(GuidKind::App, 1);
        assert_eq!(a, stable_guid(GuidKind::App, 1));
        assert_ne!(a, stable_guid(GuidKind::App, 2));
        assert_ne!(a, stable_guid(GuidKind::Space, 1));
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a, a.to_lowercase());
        let all: std::collections::HashSet<_> =
            (0..50_000).map(|n| stable_guid(GuidKind::App, n)).collect();
        assert_eq!(all.len(), 50_000);
    }

    #[test]
    fn cgi_escape_matches_rails_to_query() {
        assert_eq!(cgi_escape("a,b"), "a%2Cb");
        assert_eq!(cgi_escape("created_ats[gte]"), "created_ats%5Bgte%5D");
        assert_eq!(
            cgi_escape("2025-01-01T00:00:00Z"),
            "2025-01-01T00%3A00%3A00Z"
        );
        assert_eq!(cgi_escape("space.organization"), "space.organization");
        assert_eq!(cgi_escape("a b/c"), "a+b%2Fc");
    }
}
