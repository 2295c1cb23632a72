//! Why the gateway refuses a scrape (403), as a metric label and a one-line message.

use std::fmt;

/// A scrape the gateway will not forward. Every refusal is decided before any DNS lookup
/// or connection, except [`Refusal::ForbiddenAddress`], which is decided on the resolved
/// addresses before connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `CONNECT`: the gateway is no tunnel.
    Connect,
    /// A method other than `GET` (Prometheus only sends `GET`).
    Method,
    /// Not an absolute-form `http://` request (origin-form, or another scheme).
    NotAbsolute,
    /// An authority with a port, or with user information.
    Port,
    /// An IP literal instead of a route's host name.
    IpLiteral,
    /// A host that is not a DNS name.
    BadHost,
    /// Query parameters other than exactly `cf_app_guid`, `cf_app_instance_index` and
    /// `cf_app_instance`, once each, well formed.
    BadQuery(&'static str),
    /// A control or non-ASCII character in a query value, raw or percent-decoded.
    HeaderInjection,
    /// `cf_app_instance` is not `<cf_app_guid>:<cf_app_instance_index>`.
    InconsistentInstance,
    /// No installed target has this host.
    UnregisteredHost,
    /// The host is installed, but not for this app.
    UnknownApp,
    /// The app is installed on this host, but not with this instance index.
    WrongInstance,
    /// The target is installed with another metrics path.
    WrongPath,
    /// Without a router pin, the host resolved only to addresses the gateway does not
    /// connect to (loopback, link-local, unspecified, or outside `--scrape-allow-cidr`).
    ForbiddenAddress,
    /// The app's authorization could not be given (see
    /// [`super::UpstreamAuthorization`]).
    NoAuthorization,
}

impl Refusal {
    /// Every reason, for metrics created at zero.
    pub const REASONS: [&'static str; 15] = [
        "connect",
        "method",
        "not_absolute",
        "port",
        "ip_literal",
        "bad_host",
        "bad_query",
        "header_injection",
        "inconsistent_instance",
        "unregistered_host",
        "unknown_app",
        "wrong_instance",
        "wrong_path",
        "forbidden_address",
        "no_authorization",
    ];

    /// The metric label value.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Connect => "connect",
            Refusal::Method => "method",
            Refusal::NotAbsolute => "not_absolute",
            Refusal::Port => "port",
            Refusal::IpLiteral => "ip_literal",
            Refusal::BadHost => "bad_host",
            Refusal::BadQuery(_) => "bad_query",
            Refusal::HeaderInjection => "header_injection",
            Refusal::InconsistentInstance => "inconsistent_instance",
            Refusal::UnregisteredHost => "unregistered_host",
            Refusal::UnknownApp => "unknown_app",
            Refusal::WrongInstance => "wrong_instance",
            Refusal::WrongPath => "wrong_path",
            Refusal::ForbiddenAddress => "forbidden_address",
            Refusal::NoAuthorization => "no_authorization",
        }
    }

    /// How close a scrape came to an installed target: of several mappings' refusals,
    /// the closest is reported.
    pub(crate) fn closeness(&self) -> u8 {
        match self {
            Refusal::WrongPath => 3,
            Refusal::WrongInstance => 2,
            Refusal::UnknownApp => 1,
            _ => 0,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Refusal::Connect => {
                "CONNECT is not supported: scrape with scheme http through proxy_url"
            }
            Refusal::Method => "only GET is forwarded",
            Refusal::NotAbsolute => {
                "not an absolute http:// request: use the gateway as Prometheus' proxy_url"
            }
            Refusal::Port => "the request's host has a port or user information",
            Refusal::IpLiteral => "the request's host is an IP address, not a route",
            Refusal::BadHost => "the request's host is not a DNS name",
            Refusal::BadQuery(why) => return write!(f, "bad query: {why}"),
            Refusal::HeaderInjection => "a query value holds a control or non-ASCII character",
            Refusal::InconsistentInstance => {
                "cf_app_instance is not cf_app_guid:cf_app_instance_index"
            }
            Refusal::UnregisteredHost => "no installed target has this host",
            Refusal::UnknownApp => "no installed target of this app has this host",
            Refusal::WrongInstance => "the app has no installed target with this instance index",
            Refusal::WrongPath => "the target is installed with another metrics path",
            Refusal::ForbiddenAddress => {
                "the host resolves only to addresses the gateway does not connect to"
            }
            Refusal::NoAuthorization => "no scrape authorization for this app",
        };
        f.write_str(text)
    }
}
