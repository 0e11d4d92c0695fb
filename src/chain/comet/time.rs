//! Block timestamps as CometBFT prints them: Go `time.Time` marshalled with `RFC3339Nano` after `.UTC()`, e.g.
//! `2024-05-01T12:00:00.5Z` (fraction up to 9 digits, trailing zeros cut, no fraction when zero). Parsing also
//! accepts numeric offsets (`+02:00`) as RFC 3339 allows. Pure; no calendar crate is needed for UTC dates.

use std::fmt;

/// A point in time as seconds since the Unix epoch plus nanoseconds, like `google.protobuf.Timestamp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

/// Why a timestamp string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct TimeParseError {
    /// The text given (truncated to 64 chars).
    pub input: String,
    /// What was wrong.
    pub reason: &'static str,
}

const NANOS_PER_SEC: u32 = 1_000_000_000;
/// Years CometBFT can print (Go `time.Time` marshal fails outside 0000..9999).
const MIN_YEAR: i64 = 0;
const MAX_YEAR: i64 = 9999;

impl BlockTime {
    /// Builds a time, carrying whole seconds out of `nanos`.
    pub fn new(seconds: i64, nanos: u32) -> Self {
        Self {
            seconds: seconds.saturating_add(i64::from(nanos / NANOS_PER_SEC)),
            nanos: nanos % NANOS_PER_SEC,
        }
    }

    /// This time plus `d` (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let nanos = self.nanos + d.subsec_nanos();
        Self::new(self.seconds.saturating_add(secs), nanos)
    }

    /// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeParseError> {
        let err = |reason| TimeParseError {
            input: s.chars().take(64).collect(),
            reason,
        };
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |from: usize, len: usize| -> Result<i64, TimeParseError> {
            let part = b.get(from..from + len).ok_or_else(|| err("truncated"))?;
            part.iter().try_fold(0i64, |acc, &c| {
                if c.is_ascii_digit() {
                    Ok(acc * 10 + i64::from(c - b'0'))
                } else {
                    Err(err("expected a digit"))
                }
            })
        };
        let sep = |at: usize, want: &[u8]| -> Result<(), TimeParseError> {
            match b.get(at) {
                Some(c) if want.contains(c) => Ok(()),
                _ => Err(err("bad separator")),
            }
        };
        let year = num(0, 4)?;
        sep(4, b"-")?;
        let month = num(5, 2)?;
        sep(7, b"-")?;
        let day = num(8, 2)?;
        sep(10, b"Tt ")?;
        let hour = num(11, 2)?;
        sep(13, b":")?;
        let minute = num(14, 2)?;
        sep(16, b":")?;
        let second = num(17, 2)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err("date out of range"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err("time of day out of range"));
        }
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                if i - start >= 9 {
                    return Err(err("more than 9 fraction digits"));
                }
                nanos = nanos * 10 + u32::from(c - b'0');
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return Err(err("empty fraction"));
            }
            nanos *= 10u32.pow(u32::try_from(9 - digits).map_err(|_| err("fraction"))?);
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if b.len() == i + 1 => 0,
            Some(c @ (b'+' | b'-')) if b.len() == i + 6 => {
                let oh = num(i + 1, 2)?;
                sep(i + 3, b":")?;
                let om = num(i + 4, 2)?;
                if oh > 23 || om > 59 {
                    return Err(err("offset out of range"));
                }
                let o = oh * 3600 + om * 60;
                if *c == b'+' { o } else { -o }
            }
            _ => return Err(err("bad zone suffix")),
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        Ok(Self { seconds, nanos })
    }
}

impl fmt::Display for BlockTime {
    /// Formats like Go's `RFC3339Nano` in UTC; years outside 0..=9999 are clamped to the range's ends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let min = days_from_civil(MIN_YEAR, 1, 1) * 86_400;
        let max = days_from_civil(MAX_YEAR, 12, 31) * 86_400 + 86_399;
        let secs = self.seconds.clamp(min, max);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )?;
        let nanos = self.nanos % NANOS_PER_SEC;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_values() {
        // Values checked against Go: time.Unix(s, n).UTC().Format(time.RFC3339Nano).
        let cases = [
            (0, 0, "1970-01-01T00:00:00Z"),
            (1_714_564_800, 500_000_000, "2024-05-01T12:00:00.5Z"),
            (1_709_208_000, 123_456_789, "2024-02-29T12:00:00.123456789Z"),
            (951_782_400, 1_000, "2000-02-29T00:00:00.000001Z"),
            (-1, 0, "1969-12-31T23:59:59Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59Z"),
        ];
        for (s, n, text) in cases {
            let t = BlockTime::new(s, n);
            assert_eq!(t.to_string(), text);
            assert_eq!(BlockTime::parse_rfc3339(text).unwrap(), t, "{text}");
        }
    }

    #[test]
    fn offsets_and_rejections() {
        assert_eq!(
            BlockTime::parse_rfc3339("2024-05-01T14:00:00.5+02:00").unwrap(),
            BlockTime::new(1_714_564_800, 500_000_000)
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T00:00:00.Z",
            "2024-05-01T00:00:00.1234567891Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00:00Zjunk",
            "2024-05-01T00:00:00+0200",
            "2024-05-01T00:00:00+24:00",
            "２０２４-05-01T00:00:00Z",
        ] {
            assert!(BlockTime::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn add_carries() {
        let t = BlockTime::new(10, 900_000_000).plus(std::time::Duration::from_millis(150));
        assert_eq!(t, BlockTime::new(11, 50_000_000));
    }

    proptest! {
        #[test]
        fn roundtrip(secs in -62_167_219_200i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = BlockTime::new(secs, nanos);
            prop_assert_eq!(BlockTime::parse_rfc3339(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = BlockTime::parse_rfc3339(&s);
        }

        #[test]
        fn mutated_never_panics(pos in 0usize..30, byte in any::<u8>()) {
            let mut b = b"2024-05-01T12:00:00.5+02:00".to_vec();
            if let Some(slot) = b.get_mut(pos) { *slot = byte; }
            let s = String::from_utf8_lossy(&b).into_owned();
            let _ = BlockTime::parse_rfc3339(&s);
        }
    }
}
