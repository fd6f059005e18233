//! Time: a millisecond timestamp and the clock that produces it.
//!
//! Every time-dependent rule (lease expiry, backoff) takes `now` from a
//! [`Clock`], so tests move time with [`MockClock`] instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC. Serialized as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The timestamp `ms` milliseconds later.
    pub fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 with millisecond precision, e.g. `2026-11-21T10:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        self.with_rfc3339(str::to_owned)
    }

    /// Hands `f` the RFC 3339 text: from a stack buffer for years 0000 to
    /// 9999, from chrono's wider forms outside them.
    fn with_rfc3339<R>(self, f: impl FnOnce(&str) -> R) -> R {
        let mut buf = [0u8; RFC3339_LEN];
        match self.write_rfc3339(&mut buf) {
            Some(text) => f(text),
            None => f(&Self::to_rfc3339_chrono(self.0)),
        }
    }

    fn to_rfc3339_chrono(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Writes the timestamp as `YYYY-MM-DDTHH:MM:SS.mmmZ` into `buf`,
    /// exactly what chrono writes for years 0000 to 9999; `None` outside
    /// them (chrono's wider forms take over).
    ///
    /// Every task the API returns carries two to four timestamps, and
    /// chrono's general formatter (and its parser, below) took about a
    /// fifth of the cost of a task's JSON on the server and the client
    /// (docs/performance.md, finding 71).
    fn write_rfc3339(self, buf: &mut [u8; RFC3339_LEN]) -> Option<&str> {
        let ms = self.0;
        if !(MIN_MS..=MAX_MS).contains(&ms) {
            return None;
        }
        let days = ms.div_euclid(DAY_MS);
        let in_day = ms.rem_euclid(DAY_MS);
        let (y, m, d) = civil_from_days(days);
        let digits = |buf: &mut [u8], mut v: i64| {
            for b in buf.iter_mut().rev() {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        digits(&mut buf[0..4], y);
        buf[4] = b'-';
        digits(&mut buf[5..7], m);
        buf[7] = b'-';
        digits(&mut buf[8..10], d);
        buf[10] = b'T';
        digits(&mut buf[11..13], in_day / 3_600_000);
        buf[13] = b':';
        digits(&mut buf[14..16], in_day / 60_000 % 60);
        buf[16] = b':';
        digits(&mut buf[17..19], in_day / 1000 % 60);
        buf[19] = b'.';
        digits(&mut buf[20..23], in_day % 1000);
        buf[23] = b'Z';
        std::str::from_utf8(buf).ok()
    }

    /// Reads `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form this crate writes;
    /// `None` for anything else (an offset, another precision, a leap
    /// second), which chrono's parser then reads.
    fn parse_canonical(s: &str) -> Option<Timestamp> {
        let b: &[u8; RFC3339_LEN] = s.as_bytes().try_into().ok()?;
        let num = |r: std::ops::Range<usize>| {
            b[r].iter().try_fold(0i64, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
            })
        };
        let seps = [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ];
        if seps.iter().any(|&(i, c)| b[i] != c) {
            return None;
        }
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, min, sec, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
        if !(1..=12).contains(&m)
            || d < 1
            || d > days_in_month(y, m)
            || h > 23
            || min > 59
            || sec > 59
        {
            return None;
        }
        let days = days_from_civil(y, m, d);
        Some(Timestamp(
            days * DAY_MS + h * 3_600_000 + min * 60_000 + sec * 1000 + milli,
        ))
    }
}

const RFC3339_LEN: usize = 24;
const DAY_MS: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.with_rfc3339(|text| s.serialize_str(text))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than a `String`: JSON without escapes lends its
        // text, so the usual timestamp is read without an allocation.
        struct Rfc3339;
        impl serde::de::Visitor<'_> for Rfc3339 {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 date-time")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                if let Some(t) = Timestamp::parse_canonical(s) {
                    return Ok(t);
                }
                DateTime::parse_from_rfc3339(s)
                    .map(|t| Timestamp(t.timestamp_millis()))
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(Rfc3339)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// Where `now` comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(Utc::now().timestamp_millis())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct MockClock(AtomicI64);

impl MockClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        MockClock(AtomicI64::new(start.0))
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for MockClock {
    fn default() -> Self {
        // 2026-01-01T00:00:00Z: a fixed, readable start for snapshots.
        MockClock::new(Timestamp(1_767_225_600_000))
    }
}

impl Clock for MockClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_text(ms: i64) -> String {
        Timestamp::to_rfc3339_chrono(ms)
    }

    /// Edges and a deterministic spread over the years 0000 to 9999.
    fn samples() -> Vec<i64> {
        let mut out = vec![
            0,
            -1,
            1,
            MIN_MS,
            MAX_MS,
            951_782_400_000,    // 2000-02-29
            4_107_542_399_999,  // 2100-02-28T23:59:59.999
            -2_203_891_200_000, // 1900-03-01
            1_795_478_400_000,
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let span = (MAX_MS - MIN_MS) as u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            out.push(MIN_MS + (x % span) as i64);
        }
        out
    }

    #[test]
    fn writes_what_chrono_writes() {
        for ms in samples() {
            assert_eq!(Timestamp(ms).to_rfc3339(), chrono_text(ms), "{ms}");
            let json = serde_json::to_string(&Timestamp(ms)).unwrap();
            assert_eq!(json, format!("\"{}\"", chrono_text(ms)), "{ms}");
        }
    }

    #[test]
    fn reads_back_what_it_writes_and_agrees_with_chrono() {
        for ms in samples() {
            let text = chrono_text(ms);
            assert_eq!(
                Timestamp::parse_canonical(&text),
                Some(Timestamp(ms)),
                "{text}"
            );
            let back: Timestamp = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(back, Timestamp(ms));
        }
    }

    #[test]
    fn years_outside_four_digits_take_chrono_s_form() {
        for ms in [MIN_MS - 1, MAX_MS + 1, i64::MAX / 1000] {
            let t = Timestamp(ms);
            assert_eq!(t.to_rfc3339(), chrono_text(ms));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", chrono_text(ms)));
        }
    }

    #[test]
    fn other_rfc3339_forms_are_still_read() {
        let at = |s: &str| serde_json::from_str::<Timestamp>(&format!("\"{s}\"")).map(|t| t.0);
        let noon = 1_795_255_200_000; // 2026-11-21T10:00:00Z
        assert_eq!(at("2026-11-21T10:00:00Z").unwrap(), noon);
        assert_eq!(at("2026-11-21T12:00:00+02:00").unwrap(), noon);
        assert_eq!(at("2026-11-21t10:00:00.000z").unwrap(), noon);
        assert_eq!(at("2026-11-21T10:00:00.123456Z").unwrap(), noon + 123);
        // An escaped character makes serde lend no text; still read.
        assert_eq!(at("2026-11-21T10:00:00.000\\u005a").unwrap(), noon);
    }

    #[test]
    fn impossible_dates_are_refused() {
        for s in [
            "2026-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-00-10T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-11-21T24:00:00.000Z",
            "2026-11-21T10:60:00.000Z",
            "2026-11-21T10:00:00.00xZ",
            "",
        ] {
            assert!(Timestamp::parse_canonical(s).is_none(), "{s}");
            assert!(
                serde_json::from_str::<Timestamp>(&format!("\"{s}\"")).is_err(),
                "{s}"
            );
        }
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }
}
