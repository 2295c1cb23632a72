//! sd-sync's settings: command-line flags parsed by clap, each with an environment form
//! (the flag wins), read through [`gds_service::Settings`] so that tests inject them and
//! `VCAP_SERVICES` credentials work too.

use std::net::SocketAddr;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use gds_service::{Secret, Settings};

use crate::auth::HttpAuth;
use crate::duration::{format_duration, parse_duration};
use crate::gateway::upstream::pins_per_mapping;
use crate::gateway::{
    DEFAULT_CLIENT_IDLE_TIMEOUT, DEFAULT_MAX_BODY_BYTES, GatewayConfig, MappingRouter, RouterEntry,
};
use crate::mapping::Mapping;
use crate::valve::ValveConfig;

/// Where sd-sync listens when neither `--listen`, `SD_SYNC_LISTEN` nor `PORT` says: on
/// loopback, next to Prometheus (8080 is the forward proxy's, 9090 Prometheus').
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9280";

/// The safety listing's default period: 10 minutes. A listing costs one LIST per 1,000
/// objects, so at 10,000 targets the idle cost is 10 pages x 6 = 60 LISTs an hour, under
/// the budget of 100 with room for a few listings prompted by changes; writes that bypass
/// the writers' record (an old writer, a hand `aws s3 cp`) show within 10 minutes, as the
/// original's cron `aws s3 sync` showed them within minutes.
pub const DEFAULT_SAFETY_LISTING_INTERVAL: Duration = Duration::from_secs(600);

const AFTER_HELP: &str = "\
Credentials: static keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN),
from the environment or a user-provided service in VCAP_SERVICES; without them, the AWS
default credential chain (profile files, web identity, ECS, the EC2 instance role).
Secrets are read from the environment or a file, never from the command line:
SD_SYNC_AUTH_PASSWORD or --auth-password-file, SD_SYNC_AUTH_TOKEN or --auth-token-file,
SCRAPE_TOKEN_KEY or --scrape-token-key-file.
Durations: 500ms, 2s, 1m, 1m30s. Endpoints: GET /targets, /targets/<name>, /health, /metrics.";

/// The command line. Value names are lowercase: an all-caps literal in sd-sync's sources
/// is one of its settings (tests/integration/manifests.rs). Values stay text here: [`parse`] checks them and names the flag and
/// its environment form in its one-line errors.
#[derive(Debug, Parser)]
#[command(
    name = "sd-sync",
    about = "Mirrors target files from S3 into local directories for Prometheus' file_sd, \
             and serves them for http_sd.",
    after_help = AFTER_HELP,
    disable_version_flag = true,
    // As before clap: a flag given twice takes its last value (`--mapping` adds up).
    args_override_self = true
)]
struct Flags {
    /// Mirror the *.json objects directly under PREFIX into DIR; also served at
    /// /targets/<last component of DIR>. Repeatable; the environment form is a comma- or
    /// newline-separated list.
    #[arg(
        long = "mapping",
        value_name = "s3://BUCKET/PREFIX[?region=REGION]=DIR",
        env = "SD_SYNC_MAPPINGS"
    )]
    mappings: Vec<String>,
    /// An S3-compatible store (path-style addressing).
    #[arg(long, value_name = "url", env = "S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The default region of the buckets (us-east-1 with an endpoint).
    #[arg(long, value_name = "region", env = "AWS_REGION")]
    region: Option<String>,
    /// A bucket write is installed within about this long (2s): polls start this much
    /// minus the recent syncs' cost apart.
    #[arg(long, value_name = "duration", env = "SD_SYNC_INTERVAL")]
    interval: Option<String>,
    /// The HTTP listener (127.0.0.1:9280; 0.0.0.0:PORT when only PORT is set).
    #[arg(long, value_name = "addr:port", env = "SD_SYNC_LISTEN")]
    listen: Option<String>,
    /// /targets answers 503 when the last complete listing is older (5m).
    #[arg(long, value_name = "duration", env = "SD_SYNC_STALE_AFTER")]
    stale_after: Option<String>,
    /// Safety valve: a sync deleting more than this percentage (50) and more than --max-deletions
    /// files, or emptying a directory, waits for --deletion-confirmations polls.
    #[arg(long, value_name = "percent", env = "SD_SYNC_MAX_DELETION_SHARE")]
    max_deletion_share: Option<String>,
    /// See --max-deletion-share (10).
    #[arg(long, value_name = "n", env = "SD_SYNC_MAX_DELETIONS")]
    max_deletions: Option<String>,
    /// Held-back deletions proceed once n (10) consecutive polls show the same listing.
    #[arg(long, value_name = "n", env = "SD_SYNC_DELETION_CONFIRMATIONS")]
    deletion_confirmations: Option<String>,
    /// Never hold deletions back.
    #[arg(long, env = "SD_SYNC_ALLOW_MASS_DELETION")]
    allow_mass_deletion: bool,
    /// Object reads in flight (64).
    #[arg(long, value_name = "n", env = "SD_SYNC_FETCH_CONCURRENCY")]
    fetch_concurrency: Option<String>,
    /// The longest time without listing a prefix while the writers' record is unchanged
    /// (10m): catches writes that bypass the record. 0s lists on every poll.
    #[arg(long, value_name = "duration", env = "SD_SYNC_SAFETY_LISTING_INTERVAL")]
    safety_listing_interval: Option<String>,
    /// Sync every mapping once and exit (non-zero when a sync failed or deletions were
    /// held back).
    #[arg(long, env = "SD_SYNC_ONCE")]
    once: bool,
    /// Require basic auth on every endpoint but /health, with this user name and the
    /// password in SD_SYNC_AUTH_PASSWORD or --auth-password-file.
    #[arg(long, value_name = "user", env = "SD_SYNC_AUTH_USERNAME")]
    auth_username: Option<String>,
    /// The basic-auth password's file (or SD_SYNC_AUTH_PASSWORD).
    #[arg(long, value_name = "path", env = "SD_SYNC_AUTH_PASSWORD_FILE")]
    auth_password_file: Option<String>,
    /// Require a bearer token from this file (or SD_SYNC_AUTH_TOKEN) instead, or as well;
    /// required beyond loopback.
    #[arg(long, value_name = "path", env = "SD_SYNC_AUTH_TOKEN_FILE")]
    auth_token_file: Option<String>,
    /// Scrape gateway (off unless given): a forward proxy for Prometheus' `proxy_url`, on
    /// loopback, that forwards only scrapes of installed targets, over HTTPS.
    #[arg(long, value_name = "addr:port", env = "SD_SYNC_SCRAPE_LISTEN")]
    scrape_listen: Option<String>,
    /// Connect the scrapes of mapping MAPPING (the last component of its DIR) to its
    /// foundation's router (recommended), the route's host being only Host and SNI; without
    /// MAPPING=, of every mapping without its own. Repeatable or a comma-separated list.
    /// A mapping without one connects to what its route hosts resolve to (loopback and
    /// link-local refused).
    #[arg(
        long,
        value_name = "[mapping=]host_or_ip:port",
        env = "SD_SYNC_SCRAPE_ROUTER"
    )]
    scrape_router: Vec<String>,
    /// For the mappings without a --scrape-router: only connect to resolved addresses in
    /// these CIDRs. Repeatable or a comma-separated list.
    #[arg(long, value_name = "cidr", env = "SD_SYNC_SCRAPE_ALLOW_CIDR")]
    scrape_allow_cidr: Vec<String>,
    /// PEM bundle of the CAs that sign the routes' certificates; replaces the system's roots.
    #[arg(long, value_name = "path", env = "SD_SYNC_SCRAPE_CA_FILE")]
    scrape_ca_file: Option<String>,
    /// Do not verify upstream certificates (tests only).
    #[arg(long, env = "SD_SYNC_SCRAPE_INSECURE_SKIP_VERIFY")]
    scrape_insecure_skip_verify: bool,
    /// A longer response body is cut (64 MiB).
    #[arg(long, value_name = "bytes", env = "SD_SYNC_SCRAPE_MAX_BODY_BYTES")]
    scrape_max_body_bytes: Option<String>,
    /// The routes' HTTPS port of the mappings without a --scrape-router (443).
    #[arg(long, value_name = "port", env = "SD_SYNC_SCRAPE_UPSTREAM_PORT")]
    scrape_upstream_port: Option<String>,
    /// Scrape timeout when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds (10s).
    #[arg(long, value_name = "duration", env = "SD_SYNC_SCRAPE_TIMEOUT")]
    scrape_timeout: Option<String>,
    /// Upstream TCP connect timeout (5s).
    #[arg(long, value_name = "duration", env = "SD_SYNC_SCRAPE_CONNECT_TIMEOUT")]
    scrape_connect_timeout: Option<String>,
    /// Idle upstream keep-alive connections kept, all routers together (64). A
    /// connection to a router carries the scrapes of every route host its certificate
    /// covers.
    #[arg(long, value_name = "n", env = "SD_SYNC_SCRAPE_POOL_MAX_IDLE")]
    scrape_pool_max_idle: Option<String>,
    /// An idle upstream connection is closed after this long (60s).
    #[arg(
        long,
        value_name = "duration",
        env = "SD_SYNC_SCRAPE_POOL_IDLE_TIMEOUT"
    )]
    scrape_pool_idle_timeout: Option<String>,
    /// A connection from Prometheus is closed after waiting this long for its next
    /// request (15s).
    #[arg(
        long,
        value_name = "duration",
        env = "SD_SYNC_SCRAPE_CLIENT_IDLE_TIMEOUT"
    )]
    scrape_client_idle_timeout: Option<String>,
    /// The scrape token key's file (or SCRAPE_TOKEN_KEY): the broker's, so that scrapes
    /// of bindings with "auth": "token" carry their token.
    #[arg(long, value_name = "path", env = "SCRAPE_TOKEN_KEY_FILE")]
    scrape_token_key_file: Option<String>,
}

/// The generated `--help`.
pub fn help() -> String {
    Flags::command()
        .mut_args(|arg| arg.hide_env_values(true))
        .render_long_help()
        .to_string()
}

/// Everything sd-sync needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub mappings: Vec<Mapping>,
    pub s3_endpoint: Option<String>,
    /// The region of mappings that name none.
    pub region: String,
    /// Static S3 keys, when given; `None`: the AWS default credential chain.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub interval: Duration,
    pub listen: SocketAddr,
    pub stale_after: Duration,
    pub valve: ValveConfig,
    pub fetch_concurrency: usize,
    /// See [`crate::watch`].
    pub safety_listing_interval: Duration,
    pub once: bool,
    /// Credentials every endpoint but `/health` requires (none: open).
    pub auth: HttpAuth,
    /// The scrape gateway, when `--scrape-listen` is given.
    pub gateway: Option<GatewayConfig>,
    /// `SCRAPE_TOKEN_KEY` or `--scrape-token-key-file`: derives the tokens of bindings
    /// with `"auth": "token"` ([`crate::scrape_auth`]).
    pub scrape_token_key: Option<gds_store::ScrapeTokenKey>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// `--help` (print [`help`]).
    Help,
}

/// `--flag (ENV)`, for messages: `long` is the flag's name without dashes.
fn names(long: &str) -> String {
    let command = Flags::command();
    let env = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .expect("a flag with an environment form");
    format!("--{long} ({})", env.to_string_lossy())
}

/// Parses the command line with the environment forms taken from `settings` rather than
/// the process environment: clap reads the command line alone, then every flag it did not
/// see there whose environment form `settings` has is added as if given, and the result is
/// parsed again. The error is the one line to print.
fn flags(args: Vec<String>, settings: &Settings) -> Result<Option<Flags>, String> {
    let command = Flags::command();
    let command_line_only = || {
        command
            .clone()
            .mut_args(|arg| arg.env(None))
            .no_binary_name(true)
    };
    let given = match command_line_only().try_get_matches_from(&args) {
        Ok(given) => given,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => return Ok(None),
        Err(e) => return Err(one_line(&e)),
    };
    let mut with_env = args;
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let env = env.to_string_lossy();
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(value) = settings.get(&env) else {
            continue;
        };
        match arg.get_action() {
            ArgAction::SetTrue => {
                let on = settings
                    .flag(&env, false)
                    .map_err(|e| format!("{}: {}", names(long), e.reason))?;
                if on {
                    with_env.push(format!("--{long}"));
                }
            }
            ArgAction::Append => with_env.extend(
                value
                    .split([',', '\n'])
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| format!("--{long}={item}")),
            ),
            _ => with_env.push(format!("--{long}={value}")),
        }
    }
    let matches = command_line_only()
        .try_get_matches_from(&with_env)
        .map_err(|e| one_line(&e))?;
    Flags::from_arg_matches(&matches)
        .map(Some)
        .map_err(|e| one_line(&e))
}

/// A clap error in one line: its first, naming the argument.
fn one_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ErrorKind};
    if e.kind() == ErrorKind::UnknownArgument
        && let Some(arg) = e.get(ContextKind::InvalidArg)
    {
        return format!("unknown argument \"{arg}\" (see --help)");
    }
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    format!("{} (see --help)", first.trim_start_matches("error: "))
}

/// A whole number in `min..=max` (a trailing `%` allowed), or `default` when not given.
fn number(
    value: Option<&str>,
    long: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, String> {
    let Some(text) = value else {
        return Ok(default);
    };
    text.trim()
        .trim_end_matches('%')
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!(
                "{}: {text:?} is not a whole number in {min}..={max}",
                names(long)
            )
        })
}

fn duration(value: Option<&str>, long: &str, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|e| format!("{}: {e}", names(long))),
    }
}

/// Reads the command line (without the program name) and the settings. The error is the
/// one line to print.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    settings: &Settings,
) -> Result<Command, String> {
    let Some(flags) = flags(args.into_iter().collect(), settings)? else {
        return Ok(Command::Help);
    };
    if flags.mappings.is_empty() {
        return Err(format!(
            "{}: at least one mapping s3://BUCKET/PREFIX=DIR is required",
            names("mapping")
        ));
    }
    let mappings = flags
        .mappings
        .iter()
        .map(|text| Mapping::parse(text).map_err(|e| format!("{}: {e}", names("mapping"))))
        .collect::<Result<Vec<_>, _>>()?;
    check_distinct(&mappings)?;

    let s3_endpoint = flags.s3_endpoint.clone();
    if let Some(endpoint) = &s3_endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return Err(format!(
            "{}: {endpoint:?} is not an http:// or https:// URL",
            names("s3-endpoint")
        ));
    }
    let region = match (flags.region.clone(), &s3_endpoint) {
        (Some(region), _) => region,
        (None, Some(_)) => "us-east-1".to_owned(),
        (None, None) if mappings.iter().all(|m| m.region.is_some()) => "us-east-1".to_owned(),
        (None, None) => {
            return Err(format!(
                "{}: the region of the buckets is required (or give each mapping ?region=)",
                names("region")
            ));
        }
    };
    let access_key_id = settings.get("AWS_ACCESS_KEY_ID");
    let secret_access_key = settings.get("AWS_SECRET_ACCESS_KEY");
    if access_key_id.is_some() != secret_access_key.is_some() {
        return Err(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: give both static keys or neither \
             (neither: the AWS default credential chain, such as an instance role)"
                .to_owned(),
        );
    }

    let interval = duration(
        flags.interval.as_deref(),
        "interval",
        Duration::from_secs(2),
    )?;
    if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
        return Err(format!(
            "{}: {} is outside 10ms..=1h",
            names("interval"),
            format_duration(interval)
        ));
    }
    let stale_after = duration(
        flags.stale_after.as_deref(),
        "stale-after",
        Duration::from_secs(300),
    )?;
    if stale_after < interval {
        return Err(format!(
            "{}: {} is shorter than the poll interval {}",
            names("stale-after"),
            format_duration(stale_after),
            format_duration(interval)
        ));
    }
    let safety_listing_interval = duration(
        flags.safety_listing_interval.as_deref(),
        "safety-listing-interval",
        DEFAULT_SAFETY_LISTING_INTERVAL,
    )?;
    if !safety_listing_interval.is_zero() && safety_listing_interval < interval {
        return Err(format!(
            "{}: {} is shorter than the poll interval {} (0s lists on every poll)",
            names("safety-listing-interval"),
            format_duration(safety_listing_interval),
            format_duration(interval)
        ));
    }
    let listen_text = match (flags.listen.clone(), settings.get("PORT")) {
        (Some(listen), _) => listen,
        (None, Some(_)) => {
            let port = settings.port().map_err(|e| e.to_string())?;
            format!("0.0.0.0:{port}")
        }
        (None, None) => DEFAULT_LISTEN.to_owned(),
    };
    let listen: SocketAddr = listen_text.trim().parse().map_err(|_| {
        format!(
            "{}: {listen_text:?} is not ADDR:PORT such as 127.0.0.1:9280",
            names("listen")
        )
    })?;

    let once = flags.once;
    let auth = http_auth(&flags, settings)?;
    let gateway = gateway(&flags, &mappings)?;
    if !once && !listen.ip().is_loopback() && !auth.is_enabled() {
        return Err(format!(
            "SD_SYNC_AUTH_TOKEN (or SD_SYNC_AUTH_TOKEN_FILE, or SD_SYNC_AUTH_USERNAME with \
             SD_SYNC_AUTH_PASSWORD): required when sd-sync listens beyond loopback ({listen}), \
             so that only Prometheus reads the targets"
        ));
    }

    let valve = ValveConfig {
        max_share_percent: number(
            flags.max_deletion_share.as_deref(),
            "max-deletion-share",
            50,
            0,
            100,
        )? as u32,
        max_count: number(
            flags.max_deletions.as_deref(),
            "max-deletions",
            10,
            0,
            1_000_000,
        )? as usize,
        confirmations: number(
            flags.deletion_confirmations.as_deref(),
            "deletion-confirmations",
            10,
            1,
            100_000,
        )? as u32,
        allow_mass_deletion: flags.allow_mass_deletion,
    };

    Ok(Command::Run(Box::new(Config {
        mappings,
        s3_endpoint,
        region,
        access_key_id,
        secret_access_key: secret_access_key.map(Secret::new),
        session_token: settings.get("AWS_SESSION_TOKEN").map(Secret::new),
        interval,
        listen,
        stale_after,
        valve,
        fetch_concurrency: number(
            flags.fetch_concurrency.as_deref(),
            "fetch-concurrency",
            64,
            1,
            1024,
        )? as usize,
        safety_listing_interval,
        once,
        auth,
        gateway,
        scrape_token_key: secret(
            settings,
            "SCRAPE_TOKEN_KEY",
            flags.scrape_token_key_file.as_deref(),
            "scrape-token-key-file",
        )?
        .map(|key| {
            gds_store::ScrapeTokenKey::parse(key.expose()).map_err(|e| {
                format!(
                    "SCRAPE_TOKEN_KEY (or {}): {e}",
                    names("scrape-token-key-file")
                )
            })
        })
        .transpose()?,
    })))
}

/// The scrape gateway's settings, when `--scrape-listen` is given.
fn gateway(flags: &Flags, mappings: &[Mapping]) -> Result<Option<GatewayConfig>, String> {
    let Some(listen_text) = flags.scrape_listen.as_deref() else {
        let given = !flags.scrape_router.is_empty()
            || !flags.scrape_allow_cidr.is_empty()
            || flags.scrape_ca_file.is_some()
            || flags.scrape_insecure_skip_verify;
        if given {
            return Err(format!(
                "{}: the scrape gateway's other settings need it",
                names("scrape-listen")
            ));
        }
        return Ok(None);
    };
    let listen: SocketAddr = listen_text.trim().parse().map_err(|_| {
        format!(
            "{}: {listen_text:?} is not ADDR:PORT such as 127.0.0.1:8080",
            names("scrape-listen")
        )
    })?;
    if !listen.ip().is_loopback() {
        return Err(format!(
            "{}: {listen} is not a loopback address; the gateway has no authentication of \
             its own and must listen next to Prometheus only",
            names("scrape-listen")
        ));
    }
    let entries = flags
        .scrape_router
        .iter()
        .map(|text| {
            RouterEntry::parse(text).map_err(|e| format!("{}: {e}", names("scrape-router")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mapping_names: Vec<&str> = mappings.iter().map(|m| m.name.as_str()).collect();
    let routers: Vec<MappingRouter> = pins_per_mapping(&entries, &mapping_names)
        .map_err(|e| format!("{}: {e}", names("scrape-router")))?
        .into_iter()
        .zip(mappings)
        .map(|(pin, mapping)| MappingRouter {
            mapping: mapping.name.clone(),
            pin,
        })
        .collect();
    let allow_cidrs = flags
        .scrape_allow_cidr
        .iter()
        .map(|text| {
            text.trim().parse::<ipnet::IpNet>().map_err(|_| {
                format!(
                    "{}: {text:?} is not a CIDR such as 10.0.0.0/16",
                    names("scrape-allow-cidr")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The CIDRs restrict the mappings without a router; when every mapping has one, they
    // would restrict nothing, which is a mistake to point out rather than to ignore.
    if !allow_cidrs.is_empty() && routers.iter().all(|r| r.pin.is_some()) {
        return Err(format!(
            "{}: every mapping has a --scrape-router, which decides its connections' \
             addresses; the CIDRs apply only to mappings without one",
            names("scrape-allow-cidr")
        ));
    }
    let default_timeout = duration(
        flags.scrape_timeout.as_deref(),
        "scrape-timeout",
        Duration::from_secs(10),
    )?;
    let connect_timeout = duration(
        flags.scrape_connect_timeout.as_deref(),
        "scrape-connect-timeout",
        Duration::from_secs(5),
    )?;
    let pool_idle_timeout = duration(
        flags.scrape_pool_idle_timeout.as_deref(),
        "scrape-pool-idle-timeout",
        Duration::from_secs(60),
    )?;
    let client_idle_timeout = duration(
        flags.scrape_client_idle_timeout.as_deref(),
        "scrape-client-idle-timeout",
        DEFAULT_CLIENT_IDLE_TIMEOUT,
    )?;
    for (value, long) in [
        (default_timeout, "scrape-timeout"),
        (connect_timeout, "scrape-connect-timeout"),
        (client_idle_timeout, "scrape-client-idle-timeout"),
    ] {
        if value.is_zero() {
            return Err(format!("{}: must be more than 0", names(long)));
        }
    }
    Ok(Some(GatewayConfig {
        listen,
        routers,
        allow_cidrs,
        ca_file: flags.scrape_ca_file.as_ref().map(Into::into),
        insecure_skip_verify: flags.scrape_insecure_skip_verify,
        max_body_bytes: number(
            flags.scrape_max_body_bytes.as_deref(),
            "scrape-max-body-bytes",
            DEFAULT_MAX_BODY_BYTES,
            1024,
            1 << 40,
        )?,
        upstream_port: number(
            flags.scrape_upstream_port.as_deref(),
            "scrape-upstream-port",
            443,
            1,
            65535,
        )? as u16,
        default_timeout,
        connect_timeout,
        pool_max_idle: number(
            flags.scrape_pool_max_idle.as_deref(),
            "scrape-pool-max-idle",
            64,
            0,
            65536,
        )? as usize,
        pool_idle_timeout,
        client_idle_timeout,
    }))
}

/// A secret from the environment variable `env` or from the file named by `--file_flag`
/// (surrounding whitespace trimmed, as Prometheus does with its `*_file` settings).
fn secret(
    settings: &Settings,
    env: &str,
    file: Option<&str>,
    file_flag: &str,
) -> Result<Option<Secret>, String> {
    let names = names(file_flag);
    let (value, from) = match (settings.get(env), file) {
        (Some(_), Some(_)) => return Err(format!("{env} and {names}: give one, not both")),
        (None, None) => return Ok(None),
        (Some(value), None) => (value, env.to_owned()),
        (None, Some(path)) => {
            let value = std::fs::read_to_string(path)
                .map_err(|e| format!("{names}: cannot read {path}: {e}"))?;
            (value, names)
        }
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{from}: the secret is empty"));
    }
    Ok(Some(Secret::new(value)))
}

fn http_auth(flags: &Flags, settings: &Settings) -> Result<HttpAuth, String> {
    let username = flags.auth_username.clone();
    let password = secret(
        settings,
        "SD_SYNC_AUTH_PASSWORD",
        flags.auth_password_file.as_deref(),
        "auth-password-file",
    )?;
    let basic = match (username, password) {
        (None, None) => None,
        (Some(username), Some(password)) if !username.is_empty() && !username.contains(':') => {
            Some((username, password))
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "{}: a username is not empty and has no ':'",
                names("auth-username")
            ));
        }
        (Some(_), None) => {
            return Err(format!(
                "SD_SYNC_AUTH_PASSWORD or {}: basic auth needs a password",
                names("auth-password-file")
            ));
        }
        (None, Some(_)) => {
            return Err(format!(
                "{}: basic auth needs a username",
                names("auth-username")
            ));
        }
    };
    let bearer = secret(
        settings,
        "SD_SYNC_AUTH_TOKEN",
        flags.auth_token_file.as_deref(),
        "auth-token-file",
    )?;
    Ok(HttpAuth { basic, bearer })
}

/// Two mappings into one directory would delete each other's files, and two with the
/// same name would share `/targets/<name>`.
fn check_distinct(mappings: &[Mapping]) -> Result<(), String> {
    for (i, a) in mappings.iter().enumerate() {
        for b in &mappings[..i] {
            let clash = if a.dir == b.dir {
                "the same directory"
            } else if a.name == b.name {
                "directories with the same last component (their /targets/<name>)"
            } else {
                continue;
            };
            return Err(format!("{}: {b} and {a} have {clash}", names("mapping")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
