//! Identifiers that travel through the whole system, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

/// A Cloud Foundry app GUID: a UUID in its canonical lowercase form, e.g.
/// `1cb006ee-fb05-47e1-b541-c34179ddc446`.
///
/// The strict form matters beyond tidiness: the GUID becomes an object key
/// (`active/<guid>.json`), a file name, and the `X-CF-APP-INSTANCE` header, which the
/// gorouter only accepts as lowercase hex (`^[\da-f]{8}-([\da-f]{4}-){3}[\da-f]{12}:\d+$`).
/// Upper-case input is accepted and lowered.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppGuid(String);

/// Why a string is not an [`AppGuid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid app GUID {value:?}: expected a UUID such as 1cb006ee-fb05-47e1-b541-c34179ddc446")]
pub struct InvalidGuid {
    /// The rejected input (truncated to 80 characters so a hostile value cannot flood logs).
    pub value: String,
}

impl AppGuid {
    /// Parses a GUID, lowering upper-case hex digits.
    pub fn parse(value: &str) -> Result<Self, InvalidGuid> {
        let lowered = value.to_ascii_lowercase();
        if is_uuid(&lowered) {
            Ok(Self(lowered))
        } else {
            Err(InvalidGuid {
                value: value.chars().take(80).collect(),
            })
        }
    }

    /// The canonical lowercase form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_uuid(s: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut parts = s.split('-');
    GROUPS.iter().all(|&len| {
        parts
            .next()
            .is_some_and(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit()))
    }) && parts.next().is_none()
}

impl fmt::Display for AppGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppGuid({})", self.0)
    }
}

impl FromStr for AppGuid {
    type Err = InvalidGuid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for AppGuid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for AppGuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AppGuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_uuid_parses_and_round_trips() {
        let g = AppGuid::parse("1cb006ee-fb05-47e1-b541-c34179ddc446").unwrap();
        assert_eq!(g.as_str(), "1cb006ee-fb05-47e1-b541-c34179ddc446");
        assert_eq!(g.to_string(), "1cb006ee-fb05-47e1-b541-c34179ddc446");
    }

    #[test]
    fn upper_case_hex_is_lowered() {
        let g = AppGuid::parse("1CB006EE-FB05-47E1-B541-C34179DDC446").unwrap();
        assert_eq!(g.as_str(), "1cb006ee-fb05-47e1-b541-c34179ddc446");
    }

    #[test]
    fn anything_that_could_escape_a_key_or_header_is_rejected() {
        for bad in [
            "",
            "app-1-guid",
            "../../etc/passwd",
            "1cb006ee-fb05-47e1-b541-c34179ddc446.json",
            "1cb006ee-fb05-47e1-b541-c34179ddc44",
            "1cb006ee-fb05-47e1-b541-c34179ddc446-",
            "1cb006eefb0547e1b541c34179ddc446",
            "1cb006ee-fb05-47e1-b541-c34179ddc44g",
            "1cb006ee-fb05-47e1-b541-c34179ddc446:0",
        ] {
            assert!(AppGuid::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn the_error_names_the_value() {
        let e = AppGuid::parse("nope").unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }
}
