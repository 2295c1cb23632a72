//! The upstream side: where its connections may go, and the `Authorization` a scrape
//! carries.

use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;
use ipnet::IpNet;

use super::refusal::Refusal;

/// The `Authorization` header a scrape of an app carries to the app.
///
/// Called once per forwarded scrape, after the target was found installed, so it must be
/// cheap (a map lookup). The value is marked sensitive by the gateway and is never logged
/// or counted; an implementation must not log it either.
pub trait UpstreamAuthorization: Send + Sync {
    /// The header value for a scrape of `app_guid` (a lowercase GUID of an installed
    /// target), or the refusal to answer (403) when there is none to give.
    fn authorization(&self, app_guid: &str) -> Result<HeaderValue, Refusal>;
}

/// The original's (and the GOV.UK metrics libraries'): `Bearer <app guid>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppGuidBearer;

impl UpstreamAuthorization for AppGuidBearer {
    fn authorization(&self, app_guid: &str) -> Result<HeaderValue, Refusal> {
        HeaderValue::from_str(&format!("Bearer {app_guid}")).map_err(|_| Refusal::NoAuthorization)
    }
}

/// Where upstream connections go: the platform's router, or the route host's resolved
/// addresses filtered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// `--scrape-router IP:PORT`.
    Addr(SocketAddr),
    /// `--scrape-router HOST:PORT`: the operator's name for the router (its load balancer),
    /// resolved when a connection opens.
    Name(String, u16),
}

impl Pin {
    /// `HOST_OR_IP:PORT` (IPv6 in brackets).
    pub fn parse(text: &str) -> Result<Pin, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Pin::Addr(addr));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{text:?}: {port:?} is not a port"))?;
        if host.is_empty()
            || host.contains([':', '/', '@', '[', ']', '='])
            || host.contains(char::is_whitespace)
        {
            return Err(format!("{text:?} is not HOST:PORT"));
        }
        Ok(Pin::Name(host.to_owned(), port))
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Addr(addr) => write!(f, "{addr}"),
            Pin::Name(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// One `--scrape-router` entry: `[MAPPING=]HOST_OR_IP:PORT`, the router of one mapping
/// (by its name, the last component of its directory) or, without `MAPPING=`, of every
/// mapping that has no entry of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterEntry {
    pub mapping: Option<String>,
    pub pin: Pin,
}

impl RouterEntry {
    /// `[MAPPING=]HOST_OR_IP:PORT`. A pin has no `=`, so the first one ends the mapping's
    /// name.
    pub fn parse(text: &str) -> Result<RouterEntry, String> {
        let text = text.trim();
        let Some((mapping, pin)) = text.split_once('=') else {
            return Ok(RouterEntry {
                mapping: None,
                pin: Pin::parse(text)?,
            });
        };
        let mapping = mapping.trim();
        if mapping.is_empty()
            || !mapping
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!(
                "{text:?}: {mapping:?} is not a mapping's name (the last component of its \
                 DIR) in MAPPING=HOST_OR_IP:PORT"
            ));
        }
        Ok(RouterEntry {
            mapping: Some(mapping.to_owned()),
            pin: Pin::parse(pin.trim()).map_err(|e| format!("{text:?}: {e}"))?,
        })
    }
}

/// Each mapping's router (`None`: not pinned), in the order of `mappings` (their names):
/// its own entry, else the default (the entry without `MAPPING=`), else none. Refused: an
/// entry naming no mapping, two defaults, two entries for one mapping, a default no
/// mapping uses (a mistake to point out rather than to ignore, as with the CIDRs).
pub fn pins_per_mapping(
    entries: &[RouterEntry],
    mappings: &[&str],
) -> Result<Vec<Option<Pin>>, String> {
    let mut default: Option<&Pin> = None;
    let mut own: Vec<Option<&Pin>> = vec![None; mappings.len()];
    for entry in entries {
        let Some(name) = &entry.mapping else {
            if default.is_some() {
                return Err(
                    "two routers without MAPPING=: one default at most; give the others \
                     as MAPPING=HOST_OR_IP:PORT"
                        .to_owned(),
                );
            }
            default = Some(&entry.pin);
            continue;
        };
        let i = mappings.iter().position(|m| m == name).ok_or_else(|| {
            format!(
                "{name:?} is not a mapping's name (the mappings: {})",
                mappings.join(", ")
            )
        })?;
        if own[i].is_some() {
            return Err(format!("two routers for the mapping {name:?}"));
        }
        own[i] = Some(&entry.pin);
    }
    if let Some(pin) = default
        && own.iter().all(Option::is_some)
    {
        return Err(format!(
            "the router without MAPPING= ({pin}) is used by no mapping: each has its own; \
             remove it"
        ));
    }
    Ok(own
        .into_iter()
        .map(|pin| pin.or(default).cloned())
        .collect())
}

/// Whether the gateway may connect to `ip` of a tenant's route without a pin.
pub fn allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let forbidden = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || match ip {
            IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        };
    !forbidden && (allow.is_empty() || allow.iter().any(|net| net.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_link_local_and_unspecified_addresses_are_never_allowed() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(!allowed(ip.parse().unwrap(), &[]), "{ip}");
        }
        assert!(allowed("10.0.0.5".parse().unwrap(), &[]));
        assert!(allowed("2001:db8::1".parse().unwrap(), &[]));
    }

    #[test]
    fn with_cidrs_only_addresses_inside_them_are_allowed() {
        let allow: Vec<IpNet> = vec![
            "10.0.0.0/16".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(allowed("10.0.3.4".parse().unwrap(), &allow));
        assert!(allowed("2001:db8::1".parse().unwrap(), &allow));
        assert!(!allowed("10.1.0.1".parse().unwrap(), &allow));
        assert!(!allowed("192.168.0.1".parse().unwrap(), &allow));
        // Still never loopback, even if listed.
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(!allowed("127.0.0.1".parse().unwrap(), &allow));
    }

    #[test]
    fn router_pins_are_an_address_or_a_host_with_a_port() {
        assert_eq!(
            Pin::parse("10.0.0.9:443"),
            Ok(Pin::Addr("10.0.0.9:443".parse().unwrap()))
        );
        assert_eq!(
            Pin::parse("[::1]:8443"),
            Ok(Pin::Addr("[::1]:8443".parse().unwrap()))
        );
        assert_eq!(
            Pin::parse("gorouter.internal:443"),
            Ok(Pin::Name("gorouter.internal".into(), 443))
        );
        for bad in [
            "gorouter",
            "gorouter:",
            "gorouter:0",
            "gorouter:x",
            ":443",
            "a/b:1",
        ] {
            assert!(Pin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_router_entry_may_name_its_mapping() {
        assert_eq!(
            RouterEntry::parse("10.0.0.9:443"),
            Ok(RouterEntry {
                mapping: None,
                pin: Pin::Addr("10.0.0.9:443".parse().unwrap())
            })
        );
        assert_eq!(
            RouterEntry::parse(" eu-west-2-targets = gorouter.london.internal:443 "),
            Ok(RouterEntry {
                mapping: Some("eu-west-2-targets".into()),
                pin: Pin::Name("gorouter.london.internal".into(), 443)
            })
        );
        assert_eq!(
            RouterEntry::parse("london=[::1]:8443").unwrap().pin,
            Pin::Addr("[::1]:8443".parse().unwrap())
        );
        for (bad, expected) in [
            ("=10.0.0.9:443", "is not a mapping's name"),
            ("lon don=10.0.0.9:443", "is not a mapping's name"),
            ("a/b=10.0.0.9:443", "is not a mapping's name"),
            ("london=gorouter", "is not HOST:PORT"),
            ("london=", "is not HOST:PORT"),
            ("london=a=b:443", "is not HOST:PORT"),
        ] {
            let err = RouterEntry::parse(bad).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn each_mapping_gets_its_own_router_else_the_default_else_none() {
        let entries = |texts: &[&str]| -> Vec<RouterEntry> {
            texts
                .iter()
                .map(|t| RouterEntry::parse(t).unwrap())
                .collect()
        };
        let pin = |text: &str| Some(Pin::parse(text).unwrap());
        let mappings = ["ireland", "london", "paris"];
        assert_eq!(pins_per_mapping(&[], &mappings), Ok(vec![None, None, None]));
        assert_eq!(
            pins_per_mapping(&entries(&["10.0.0.9:443"]), &mappings),
            Ok(vec![
                pin("10.0.0.9:443"),
                pin("10.0.0.9:443"),
                pin("10.0.0.9:443")
            ])
        );
        assert_eq!(
            pins_per_mapping(
                &entries(&["london=10.2.0.9:443", "ireland=10.1.0.9:443"]),
                &mappings
            ),
            Ok(vec![pin("10.1.0.9:443"), pin("10.2.0.9:443"), None])
        );
        assert_eq!(
            pins_per_mapping(
                &entries(&["london=10.2.0.9:443", "gorouter.internal:443"]),
                &mappings
            ),
            Ok(vec![
                pin("gorouter.internal:443"),
                pin("10.2.0.9:443"),
                pin("gorouter.internal:443")
            ])
        );
        for (bad, expected) in [
            (
                &["madrid=10.0.0.9:443"][..],
                "\"madrid\" is not a mapping's name (the mappings: ireland, london, paris)",
            ),
            (
                &["10.0.0.9:443", "10.0.0.8:443"],
                "two routers without MAPPING=",
            ),
            (
                &["london=10.0.0.9:443", "london=10.0.0.8:443"],
                "two routers for the mapping \"london\"",
            ),
            (
                &[
                    "10.0.0.7:443",
                    "ireland=10.1.0.9:443",
                    "london=10.2.0.9:443",
                    "paris=10.3.0.9:443",
                ],
                "the router without MAPPING= (10.0.0.7:443) is used by no mapping",
            ),
        ] {
            let err = pins_per_mapping(&entries(bad), &mappings).unwrap_err();
            assert!(err.starts_with(expected), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_default_authorization_is_the_app_guid_as_a_bearer_token() {
        let value = AppGuidBearer
            .authorization("0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3")
            .unwrap();
        assert_eq!(value, "Bearer 0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3");
    }
}
