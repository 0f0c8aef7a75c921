//! Durations on the command line (`meta --max-age`): parsing `30d`, `12h`,
//! `15m`, `90s`, `500ms` (and `us`, `ns`), or several of them run together
//! (`1h30m`), and printing a duration back in a form the parser reads.
//!
//! A day is exactly 24 hours: a retention age is elapsed time, not a
//! calendar span.

use std::time::Duration;

/// The units, longest first, with their length in nanoseconds. `ms` comes
/// before `m` only in [`parse`]'s matching, by suffix length.
const UNITS: [(&str, u64); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// The spellings, for messages.
pub const SPELLINGS: &str = "a number and a unit: d, h, m, s, ms, us or ns (30d, 12h, 15m, 90s, 500ms, 1h30m)";

/// Parses a positive duration: one or more `<integer><unit>` groups, summed.
/// Zero, a missing unit, an unknown unit, a sign, a fraction, spaces and
/// overflow are errors.
pub fn parse(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err(format!("expected {SPELLINGS}, got nothing"));
    }
    let mut rest = s;
    let mut nanos: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration: expected {SPELLINGS}"));
        }
        let (number, tail) = rest.split_at(digits);
        let letters = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(letters);
        let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            let what = if unit.is_empty() { "a number without a unit".to_string() } else { format!("unit {unit:?}") };
            return Err(format!("{s:?} is not a duration ({what}): expected {SPELLINGS}"));
        };
        let too_long = || format!("{s:?} is too long a duration");
        let n: u64 = number.parse().map_err(|_| too_long())?;
        nanos = n.checked_mul(unit_nanos).and_then(|v| nanos.checked_add(v)).ok_or_else(too_long)?;
        rest = tail;
    }
    if nanos == 0 {
        return Err(format!("{s:?} is zero: a duration must be longer than that"));
    }
    Ok(Duration::from_nanos(nanos))
}

/// `d` in the largest unit that divides it exactly (`30d`, `90s`, `1500ms`):
/// text [`parse`] reads back as the same duration (when it fits in u64
/// nanoseconds, as every duration the engine stores does).
pub fn format(d: Duration) -> String {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return "0s".to_string();
    }
    UNITS
        .iter()
        .find(|(_, unit)| nanos.is_multiple_of(*unit))
        .map_or_else(|| format!("{nanos}ns"), |(name, unit)| format!("{}{name}", nanos / unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_spellings() {
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(15 * 60)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("1d1ns"), Ok(Duration::from_nanos(86_400_000_000_001)));
    }

    #[test]
    fn bad_durations_are_errors_that_say_why() {
        for bad in ["", "30", "d", "30x", "30 d", "-5m", "+5m", "1.5h", "5M", "5 ", " 5s", "1h30", "0s", "0d0h"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")) || bad.is_empty(), "{bad:?}: {err}");
        }
        assert!(parse("30").unwrap_err().contains("a number without a unit"));
        assert!(parse("30x").unwrap_err().contains("unit \"x\""));
        assert!(parse("0s").unwrap_err().contains("is zero"));
        assert!(parse("99999999999999999999d").unwrap_err().contains("too long"));
        assert!(parse("300000d").unwrap_err().contains("too long"), "over u64 nanoseconds");
    }

    #[test]
    fn formatting_reads_back() {
        for (d, text) in [
            (Duration::from_secs(30 * 86_400), "30d"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(5_400), "90m"),
            (Duration::from_millis(1_500), "1500ms"),
            (Duration::from_nanos(3), "3ns"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
