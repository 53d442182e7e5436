//! Sizes ("64MiB") and durations ("5m", "7d") written the way operators write them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes. Parses "0", "4096", "64MiB", "2 GiB", "1.5MB"; serialises in the largest
/// binary unit that divides it exactly, so a config shown by `cairn config show` reads back equal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

impl Size {
    pub const KIB: u64 = 1 << 10;
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;

    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn mib(n: u64) -> Self {
        Self(n * Self::MIB)
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err("empty size; write a number with an optional unit, e.g. \"64MiB\"".into());
        }
        if trimmed.starts_with('-') {
            return Err(format!("{s:?} is negative; sizes are zero or more bytes"));
        }
        bytesize::ByteSize::from_str(trimmed)
            .map(|b| Self(b.as_u64()))
            .map_err(|e| {
                format!("{s:?} is not a size ({e}); write e.g. \"512KiB\", \"64MiB\" or \"2GiB\"")
            })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(Self::GIB, "GiB"), (Self::MIB, "MiB"), (Self::KIB, "KiB")];
        for (factor, name) in units {
            if self.0 != 0 && self.0.is_multiple_of(factor) {
                return write!(f, "{}{name}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| {
                    E::custom(format!("{v} is negative; sizes are zero or more bytes"))
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A span of time. Parses "0", "500ms", "2s", "5m", "7d" (humantime's grammar).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(n: u64) -> Self {
        Self(Duration::from_secs(n))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim()).map(Self).map_err(|e| {
            format!(
                "{s:?} is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"5m\" or \"7d\""
            )
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_human_form() {
        let cases = [
            ("0", 0),
            ("4096", 4096),
            ("64MiB", 64 << 20),
            ("2 GiB", 2 << 30),
            ("256KiB", 256 << 10),
            ("1MB", 1_000_000),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<Size>(), Ok(Size(bytes)), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_refused_with_a_hint() {
        for text in ["", "-1", "lots", "12 parsecs"] {
            let err = text.parse::<Size>().expect_err(text);
            assert!(
                err.contains("size") || err.contains("negative"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn sizes_round_trip_through_display() {
        for bytes in [0, 1, 1023, 1024, 3 << 20, (5 << 30) + 1, 7 << 30] {
            let shown = Size(bytes).to_string();
            assert_eq!(shown.parse::<Size>(), Ok(Size(bytes)), "{shown}");
        }
    }

    #[test]
    fn durations_parse_and_round_trip() {
        let cases = [
            ("0", 0),
            ("2s", 2),
            ("5m", 300),
            ("7d", 7 * 86_400),
            ("1h 30m", 5400),
        ];
        for (text, secs) in cases {
            let parsed: HumanDuration = text.parse().expect(text);
            assert_eq!(parsed, HumanDuration::secs(secs), "{text}");
            assert_eq!(parsed.to_string().parse::<HumanDuration>(), Ok(parsed));
        }
        assert!("soon".parse::<HumanDuration>().is_err());
        assert!("500ms".parse::<HumanDuration>().is_ok());
    }
}
