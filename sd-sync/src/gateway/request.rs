//! What a proxied scrape asks for, parsed from its request line alone (pure: no lookup).
//!
//! Prometheus, with `proxy_url: http://127.0.0.1:PORT` and `scheme: http`, sends
//! `GET http://<host><metrics_path>?cf_app_guid=G&cf_app_instance=G%3AI&cf_app_instance_index=I`
//! (its `__param_*` labels, sorted and URL-encoded). Anything else is refused here.

use std::borrow::Cow;

use http::{Method, Uri};

use super::refusal::Refusal;

/// A well-formed scrape: the target it names, still to be checked against the installed
/// ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeRequest<'a> {
    /// The route's host, lowercased.
    pub host: Cow<'a, str>,
    /// The path as sent (no query).
    pub path: &'a str,
    /// A lowercase UUID (what gorouter accepts in `X-CF-APP-INSTANCE`).
    pub app_guid: Cow<'a, str>,
    pub index: u32,
}

/// Parses a proxied request line.
pub fn parse<'a>(method: &Method, uri: &'a Uri) -> Result<ScrapeRequest<'a>, Refusal> {
    if method == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    if method != Method::GET {
        return Err(Refusal::Method);
    }
    if uri.scheme_str() != Some("http") {
        return Err(Refusal::NotAbsolute);
    }
    let authority = uri.authority().ok_or(Refusal::NotAbsolute)?;
    // Prometheus 2.42 (Debian 12's) spells the scheme's default port out in its scrape
    // URLs (`http://host:80/...`): the same target. Any other port is refused.
    if authority.port().is_some_and(|p| p.as_str() != "80") || authority.as_str().contains('@') {
        return Err(Refusal::Port);
    }
    let host = authority.host();
    if host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(Refusal::IpLiteral);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if !is_dns_name(host) {
        return Err(Refusal::BadHost);
    }
    // A name of digits and dots only would be read as an IPv4 address by some resolvers.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(Refusal::IpLiteral);
    }
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    let query = uri
        .query()
        .ok_or(Refusal::BadQuery("cf_app_guid is missing"))?;
    let params = Params::parse(query)?;
    let app_guid = params
        .guid
        .ok_or(Refusal::BadQuery("cf_app_guid is missing"))?;
    let index_text = params
        .index
        .ok_or(Refusal::BadQuery("cf_app_instance_index is missing"))?;
    let instance = params
        .instance
        .ok_or(Refusal::BadQuery("cf_app_instance is missing"))?;
    if !is_guid(&app_guid) {
        return Err(Refusal::BadQuery("cf_app_guid is not a lowercase GUID"));
    }
    let index = parse_index(&index_text).ok_or(Refusal::BadQuery(
        "cf_app_instance_index is not a whole number",
    ))?;
    match instance.split_once(':') {
        Some((guid, i)) if guid == app_guid && i == index_text => {}
        _ => return Err(Refusal::InconsistentInstance),
    }
    Ok(ScrapeRequest {
        host,
        path: uri.path(),
        app_guid,
        index,
    })
}

#[derive(Default)]
struct Params<'a> {
    guid: Option<Cow<'a, str>>,
    index: Option<Cow<'a, str>>,
    instance: Option<Cow<'a, str>>,
}

impl<'a> Params<'a> {
    fn parse(query: &'a str) -> Result<Params<'a>, Refusal> {
        let mut params = Params::default();
        for pair in query.split('&') {
            let (key, value) = pair
                .split_once('=')
                .ok_or(Refusal::BadQuery("a parameter without a value"))?;
            let value = decode(value)?;
            let slot = match key {
                "cf_app_guid" => &mut params.guid,
                "cf_app_instance_index" => &mut params.index,
                "cf_app_instance" => &mut params.instance,
                _ => return Err(Refusal::BadQuery("an unexpected parameter")),
            };
            if slot.replace(value).is_some() {
                return Err(Refusal::BadQuery("a parameter given twice"));
            }
        }
        Ok(params)
    }
}

/// Percent-decodes `value`; refuses control characters, non-ASCII bytes and malformed
/// escapes, raw or decoded, so that nothing but printable ASCII can reach a header.
fn decode(value: &str) -> Result<Cow<'_, str>, Refusal> {
    let printable = |b: u8| (0x21..0x7f).contains(&b);
    if !value.contains('%') {
        return if value.bytes().all(printable) {
            Ok(Cow::Borrowed(value))
        } else {
            Err(Refusal::HeaderInjection)
        };
    }
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(Refusal::BadQuery("a malformed percent escape"))?;
            i += 3;
            hex
        } else {
            i += 1;
            bytes[i - 1]
        };
        if !printable(b) {
            return Err(Refusal::HeaderInjection);
        }
        out.push(char::from(b));
    }
    Ok(Cow::Owned(out))
}

/// Letters, digits and hyphens in dot-separated labels of 1..=63 characters, 253 at most
/// (underscores allowed too: some platforms' route hosts have them).
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `^[\da-f]{8}-([\da-f]{4}-){3}[\da-f]{12}$`, as gorouter checks `X-CF-APP-INSTANCE`.
pub fn is_guid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// A whole number without sign or leading zeros (`0` itself allowed), as Prometheus writes
/// the label the broker wrote.
fn parse_index(text: &str) -> Option<u32> {
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3";

    fn get(uri: &str) -> Result<ScrapeRequest<'static>, Refusal> {
        let uri: &'static Uri = Box::leak(Box::new(uri.parse::<Uri>().unwrap()));
        parse(&Method::GET, uri)
    }

    fn query(guid: &str, instance: &str, index: &str) -> String {
        format!("cf_app_guid={guid}&cf_app_instance={instance}&cf_app_instance_index={index}")
    }

    #[test]
    fn prometheus_scrapes_parse_with_encoded_or_plain_colons_in_any_order() {
        for q in [
            query(G, &format!("{G}%3A1"), "1"),
            query(G, &format!("{G}%3a1"), "1"),
            query(G, &format!("{G}:1"), "1"),
            format!("cf_app_instance_index=1&cf_app_guid={G}&cf_app_instance={G}:1"),
        ] {
            let scrape = get(&format!("http://Web-Shop.apps.example.com/metrics?{q}")).unwrap();
            assert_eq!(scrape.host, "web-shop.apps.example.com");
            assert_eq!(scrape.path, "/metrics");
            assert_eq!(scrape.app_guid, G);
            assert_eq!(scrape.index, 1);
        }
        // The default port, as Prometheus 2.42 writes it, names the same target.
        let q = query(G, &format!("{G}%3A0"), "0");
        let scrape = get(&format!("http://Web-Shop.apps.example.com:80/metrics?{q}")).unwrap();
        assert_eq!(scrape.host, "web-shop.apps.example.com");
        // A trailing dot names the same host.
        let q = query(G, &format!("{G}:0"), "0");
        assert_eq!(
            get(&format!("http://a.example.com./m?{q}")).unwrap().host,
            "a.example.com"
        );
    }

    #[test]
    fn every_malformed_request_is_refused_with_its_reason() {
        let q = query(G, &format!("{G}%3A0"), "0");
        let cases: Vec<(String, &str)> = vec![
            (format!("/metrics?{q}"), "not_absolute"),
            (format!("https://a.example.com/metrics?{q}"), "not_absolute"),
            (format!("http://a.example.com:8443/metrics?{q}"), "port"),
            (format!("http://a.example.com:443/metrics?{q}"), "port"),
            (format!("http://a.example.com:080/metrics?{q}"), "port"),
            (format!("http://user@a.example.com/metrics?{q}"), "port"),
            (format!("http://10.0.0.1/metrics?{q}"), "ip_literal"),
            (format!("http://169.254.169.254/metrics?{q}"), "ip_literal"),
            (format!("http://[::1]/metrics?{q}"), "ip_literal"),
            (format!("http://1.2.3/metrics?{q}"), "ip_literal"),
            (format!("http://a..example.com/metrics?{q}"), "bad_host"),
            (format!("http://-a.example.com/metrics?{q}"), "bad_host"),
            ("http://a.example.com/metrics".into(), "bad_query"),
            (format!("http://a.example.com/metrics?{q}&x=1"), "bad_query"),
            (
                format!("http://a.example.com/metrics?{q}&cf_app_guid={G}"),
                "bad_query",
            ),
            (
                format!("http://a.example.com/metrics?cf_app_guid={G}&cf_app_instance_index=0"),
                "bad_query",
            ),
            (
                format!(
                    "http://a.example.com/metrics?{}",
                    query(&G.to_uppercase(), &format!("{}:0", G.to_uppercase()), "0")
                ),
                "bad_query",
            ),
            (
                format!(
                    "http://a.example.com/metrics?{}",
                    query(G, &format!("{G}:01"), "01")
                ),
                "bad_query",
            ),
            (
                format!("http://a.example.com/metrics?{}", query(G, "%ZZ", "0")),
                "bad_query",
            ),
            (
                format!(
                    "http://a.example.com/metrics?{}",
                    query(G, &format!("{G}:1"), "0")
                ),
                "inconsistent_instance",
            ),
            (
                format!(
                    "http://a.example.com/metrics?{}",
                    query(G, "0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb4:0", "0")
                ),
                "inconsistent_instance",
            ),
        ];
        for (uri, reason) in cases {
            assert_eq!(get(&uri).map_err(|r| r.reason()), Err(reason), "{uri}");
        }
    }

    #[test]
    fn control_characters_in_query_values_are_refused_encoded_or_not() {
        for bad in [
            format!("{G}%0D%0AX-Evil:%201"),
            format!("{G}%0A"),
            format!("{G}%00"),
            format!("{G}%7F"),
            format!("{G}%C3%A9"),
            format!("{G}%20"),
            format!("{G}%09"),
        ] {
            let uri = format!("http://a.example.com/metrics?{}", query(G, &bad, "0"));
            assert_eq!(
                get(&uri).map_err(|r| r.reason()),
                Err("header_injection"),
                "{uri}"
            );
        }
        // Raw control characters never get this far (the request line is refused by the
        // HTTP parser), but the check holds for them too.
        assert_eq!(decode("a\r\nb"), Err(Refusal::HeaderInjection));
        assert_eq!(decode("a\u{e9}"), Err(Refusal::HeaderInjection));
    }

    #[test]
    fn connect_and_other_methods_are_refused() {
        let uri: Uri = "a.example.com:443".parse().unwrap();
        assert_eq!(parse(&Method::CONNECT, &uri), Err(Refusal::Connect));
        let q = query(G, &format!("{G}:0"), "0");
        let uri: Uri = format!("http://a.example.com/metrics?{q}").parse().unwrap();
        for method in [Method::POST, Method::HEAD, Method::DELETE] {
            assert_eq!(parse(&method, &uri), Err(Refusal::Method), "{method}");
        }
        assert!(parse(&Method::GET, &uri).is_ok());
    }
}
