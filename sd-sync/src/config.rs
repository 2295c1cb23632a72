//! sd-sync's settings: command-line flags, each with an environment form (the flag wins),
//! read through [`gds_service::Settings`] so `VCAP_SERVICES` credentials work too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gds_service::Secret;
use gds_service::Settings;

use crate::auth::HttpAuth;
use crate::duration::{format_duration, parse_duration};
use crate::mapping::Mapping;
use crate::valve::ValveConfig;

/// Where sd-sync listens when neither `--listen`, `SD_SYNC_LISTEN` nor `PORT` says: on
/// loopback, next to Prometheus (8080 is the forward proxy's, 9090 Prometheus').
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9280";

pub const HELP: &str = "\
sd-sync: mirrors target files from S3 into local directories for Prometheus' file_sd,
and serves them for http_sd.

usage: sd-sync --mapping s3://BUCKET/PREFIX=DIR [--mapping ...] [options]

  --mapping s3://BUCKET/PREFIX[?region=REGION]=DIR   SD_SYNC_MAPPINGS (comma/newline-separated)
        mirror the *.json objects directly under PREFIX into DIR; also served at
        /targets/<last component of DIR>. Repeatable.
  --s3-endpoint URL          S3_ENDPOINT      S3-compatible store (path-style addressing)
  --region REGION            AWS_REGION       default region of the buckets
                                              (us-east-1 with an endpoint)
  --interval DURATION        SD_SYNC_INTERVAL             a bucket write is installed within
                                                          about this long (2s): polls start
                                                          this much minus the recent syncs'
                                                          cost apart
  --listen ADDR:PORT         SD_SYNC_LISTEN, or PORT      HTTP listener (127.0.0.1:9280;
                                                          0.0.0.0:PORT when only PORT is set)
  --stale-after DURATION     SD_SYNC_STALE_AFTER          /targets answers 503 when the last
                                                          complete listing is older (5m)
  --max-deletion-share PCT   SD_SYNC_MAX_DELETION_SHARE   safety valve: a sync deleting more
  --max-deletions N          SD_SYNC_MAX_DELETIONS        than PCT% (50) and more than N (10)
                                                          files, or emptying a directory, ...
  --deletion-confirmations N SD_SYNC_DELETION_CONFIRMATIONS  ...waits until N (10) consecutive
                                                          polls show the same listing
  --allow-mass-deletion      SD_SYNC_ALLOW_MASS_DELETION  never hold deletions back
  --fetch-concurrency N      SD_SYNC_FETCH_CONCURRENCY    object reads in flight (64)
  --once                     SD_SYNC_ONCE     sync every mapping once and exit (non-zero when
                                              a sync failed or deletions were held back)
  --auth-username USER       SD_SYNC_AUTH_USERNAME        require basic auth on every endpoint
  --auth-password-file PATH  SD_SYNC_AUTH_PASSWORD_FILE   but /health, with this password (or
                             SD_SYNC_AUTH_PASSWORD)       SD_SYNC_AUTH_PASSWORD)
  --auth-token-file PATH     SD_SYNC_AUTH_TOKEN_FILE      require a bearer token instead (or as
                             SD_SYNC_AUTH_TOKEN)          well); required beyond loopback
  --help

Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), from the
environment or a user-provided service in VCAP_SERVICES.
Secrets are read from the environment or a file, never from the command line.
Durations: 500ms, 2s, 1m, 1m30s. Endpoints: GET /targets, /targets/<name>, /health, /metrics.
";

/// Everything sd-sync needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub mappings: Vec<Mapping>,
    pub s3_endpoint: Option<String>,
    /// The region of mappings that name none.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub interval: Duration,
    pub listen: SocketAddr,
    pub stale_after: Duration,
    pub valve: ValveConfig,
    pub fetch_concurrency: usize,
    pub once: bool,
    /// Credentials every endpoint but `/health` requires (none: open).
    pub auth: HttpAuth,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

/// A flag, its environment form, and whether it takes a value.
struct Flag {
    flag: &'static str,
    env: &'static str,
    takes_value: bool,
}

const FLAGS: &[Flag] = &[
    flag("--mapping", "SD_SYNC_MAPPINGS", true),
    flag("--s3-endpoint", "S3_ENDPOINT", true),
    flag("--region", "AWS_REGION", true),
    flag("--interval", "SD_SYNC_INTERVAL", true),
    flag("--listen", "SD_SYNC_LISTEN", true),
    flag("--stale-after", "SD_SYNC_STALE_AFTER", true),
    flag("--max-deletion-share", "SD_SYNC_MAX_DELETION_SHARE", true),
    flag("--max-deletions", "SD_SYNC_MAX_DELETIONS", true),
    flag(
        "--deletion-confirmations",
        "SD_SYNC_DELETION_CONFIRMATIONS",
        true,
    ),
    flag(
        "--allow-mass-deletion",
        "SD_SYNC_ALLOW_MASS_DELETION",
        false,
    ),
    flag("--fetch-concurrency", "SD_SYNC_FETCH_CONCURRENCY", true),
    flag("--once", "SD_SYNC_ONCE", false),
    flag("--auth-username", "SD_SYNC_AUTH_USERNAME", true),
    flag("--auth-password-file", "SD_SYNC_AUTH_PASSWORD_FILE", true),
    flag("--auth-token-file", "SD_SYNC_AUTH_TOKEN_FILE", true),
];

const fn flag(flag: &'static str, env: &'static str, takes_value: bool) -> Flag {
    Flag {
        flag,
        env,
        takes_value,
    }
}

/// The flags given on the command line, by flag name, in order.
struct Given<'s> {
    flags: HashMap<&'static str, Vec<String>>,
    settings: &'s Settings,
}

impl Given<'_> {
    fn spec(flag: &str) -> &'static Flag {
        FLAGS.iter().find(|f| f.flag == flag).expect("a known flag")
    }

    /// `--flag (ENV)`, for messages.
    fn names(flag: &str) -> String {
        format!("{flag} ({})", Self::spec(flag).env)
    }

    /// The last value of the flag, else the environment's.
    fn value(&self, flag: &str) -> Option<String> {
        self.flags
            .get(flag)
            .and_then(|values| values.last().cloned())
            .or_else(|| self.settings.get(Self::spec(flag).env))
    }

    fn switch(&self, flag: &str) -> Result<bool, String> {
        if self.flags.contains_key(flag) {
            return Ok(true);
        }
        self.settings
            .flag(Self::spec(flag).env, false)
            .map_err(|e| format!("{}: {}", Self::names(flag), e.reason))
    }

    fn duration(&self, flag: &str, default: Duration) -> Result<Duration, String> {
        match self.value(flag) {
            None => Ok(default),
            Some(text) => parse_duration(&text).map_err(|e| format!("{}: {e}", Self::names(flag))),
        }
    }

    fn number(&self, flag: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
        match self.value(flag) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .trim_end_matches('%')
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    format!(
                        "{}: {text:?} is not a whole number in {min}..={max}",
                        Self::names(flag)
                    )
                }),
        }
    }
}

/// Reads the command line (without the program name) and the settings. The error is the
/// one line to print.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    settings: &Settings,
) -> Result<Command, String> {
    let mut flags: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let spec = FLAGS
            .iter()
            .find(|f| f.flag == name)
            .ok_or_else(|| format!("unknown argument {arg:?} (see --help)"))?;
        let value = match (spec.takes_value, inline) {
            (true, Some(value)) => value,
            (true, None) => args
                .next()
                .ok_or_else(|| format!("{} needs a value (see --help)", spec.flag))?,
            (false, None) => String::new(),
            (false, Some(_)) => return Err(format!("{} takes no value", spec.flag)),
        };
        flags.entry(spec.flag).or_default().push(value);
    }
    let given = Given { flags, settings };

    let mapping_texts: Vec<String> = match given.flags.get("--mapping") {
        Some(values) => values.clone(),
        None => settings
            .get("SD_SYNC_MAPPINGS")
            .map(|list| {
                list.split([',', '\n'])
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    if mapping_texts.is_empty() {
        return Err(format!(
            "{}: at least one mapping s3://BUCKET/PREFIX=DIR is required",
            Given::names("--mapping")
        ));
    }
    let mappings = mapping_texts
        .iter()
        .map(|text| Mapping::parse(text).map_err(|e| format!("{}: {e}", Given::names("--mapping"))))
        .collect::<Result<Vec<_>, _>>()?;
    check_distinct(&mappings)?;

    let s3_endpoint = given.value("--s3-endpoint");
    if let Some(endpoint) = &s3_endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return Err(format!(
            "{}: {endpoint:?} is not an http:// or https:// URL",
            Given::names("--s3-endpoint")
        ));
    }
    let region = match (given.value("--region"), &s3_endpoint) {
        (Some(region), _) => region,
        (None, Some(_)) => "us-east-1".to_owned(),
        (None, None) if mappings.iter().all(|m| m.region.is_some()) => "us-east-1".to_owned(),
        (None, None) => {
            return Err(format!(
                "{}: the region of the buckets is required (or give each mapping ?region=)",
                Given::names("--region")
            ));
        }
    };
    let (Some(access_key_id), Some(secret_access_key)) = (
        settings.get("AWS_ACCESS_KEY_ID"),
        settings.get("AWS_SECRET_ACCESS_KEY"),
    ) else {
        return Err(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: S3 credentials are required \
             (environment or VCAP_SERVICES)"
                .to_owned(),
        );
    };

    let interval = given.duration("--interval", Duration::from_secs(2))?;
    if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
        return Err(format!(
            "{}: {} is outside 10ms..=1h",
            Given::names("--interval"),
            format_duration(interval)
        ));
    }
    let stale_after = given.duration("--stale-after", Duration::from_secs(300))?;
    if stale_after < interval {
        return Err(format!(
            "{}: {} is shorter than the poll interval {}",
            Given::names("--stale-after"),
            format_duration(stale_after),
            format_duration(interval)
        ));
    }
    let listen_text = match (given.value("--listen"), settings.get("PORT")) {
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
            Given::names("--listen")
        )
    })?;

    let once = given.switch("--once")?;
    let auth = http_auth(&given)?;
    if !once && !listen.ip().is_loopback() && !auth.is_enabled() {
        return Err(format!(
            "SD_SYNC_AUTH_TOKEN (or SD_SYNC_AUTH_TOKEN_FILE, or SD_SYNC_AUTH_USERNAME with \
             SD_SYNC_AUTH_PASSWORD): required when sd-sync listens beyond loopback ({listen}), \
             so that only Prometheus reads the targets"
        ));
    }

    let valve = ValveConfig {
        max_share_percent: given.number("--max-deletion-share", 50, 0, 100)? as u32,
        max_count: given.number("--max-deletions", 10, 0, 1_000_000)? as usize,
        confirmations: given.number("--deletion-confirmations", 10, 1, 100_000)? as u32,
        allow_mass_deletion: given.switch("--allow-mass-deletion")?,
    };

    Ok(Command::Run(Box::new(Config {
        mappings,
        s3_endpoint,
        region,
        access_key_id,
        secret_access_key: Secret::new(secret_access_key),
        session_token: settings.get("AWS_SESSION_TOKEN").map(Secret::new),
        interval,
        listen,
        stale_after,
        valve,
        fetch_concurrency: given.number("--fetch-concurrency", 64, 1, 1024)? as usize,
        once,
        auth,
    })))
}

/// A secret from the environment variable `env` or from the file named by `file_flag`
/// (surrounding whitespace trimmed, as Prometheus does with its `*_file` settings).
fn secret(given: &Given, env: &str, file_flag: &str) -> Result<Option<Secret>, String> {
    let names = Given::names(file_flag);
    let text = match (given.settings.get(env), given.value(file_flag)) {
        (Some(_), Some(_)) => return Err(format!("{env} and {names}: give one, not both")),
        (None, None) => return Ok(None),
        (Some(value), None) => (value, env.to_owned()),
        (None, Some(path)) => {
            let value = std::fs::read_to_string(&path)
                .map_err(|e| format!("{names}: cannot read {path}: {e}"))?;
            (value, names)
        }
    };
    let (value, from) = text;
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{from}: the secret is empty"));
    }
    Ok(Some(Secret::new(value)))
}

fn http_auth(given: &Given) -> Result<HttpAuth, String> {
    let username = given.value("--auth-username");
    let password = secret(given, "SD_SYNC_AUTH_PASSWORD", "--auth-password-file")?;
    let basic = match (username, password) {
        (None, None) => None,
        (Some(username), Some(password)) if !username.is_empty() && !username.contains(':') => {
            Some((username, password))
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "{}: a username is not empty and has no ':'",
                Given::names("--auth-username")
            ));
        }
        (Some(_), None) => {
            return Err(format!(
                "SD_SYNC_AUTH_PASSWORD or {}: basic auth needs a password",
                Given::names("--auth-password-file")
            ));
        }
        (None, Some(_)) => {
            return Err(format!(
                "{}: basic auth needs a username",
                Given::names("--auth-username")
            ));
        }
    };
    let bearer = secret(given, "SD_SYNC_AUTH_TOKEN", "--auth-token-file")?;
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
            return Err(format!(
                "{}: {b} and {a} have {clash}",
                Given::names("--mapping")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(KEYS.iter().chain(pairs).copied()).unwrap()
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        match parse(args.iter().map(|a| a.to_string()), &settings(env))? {
            Command::Run(config) => Ok(*config),
            Command::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn defaults_apply_to_a_single_mapping() {
        let config = run(
            &["--mapping", "s3://b/active=/t/eu"],
            &[("AWS_REGION", "eu-west-1")],
        )
        .unwrap();
        assert_eq!(config.mappings.len(), 1);
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.interval, Duration::from_secs(2));
        assert_eq!(config.stale_after, Duration::from_secs(300));
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.valve, ValveConfig::default());
        assert_eq!(config.fetch_concurrency, 64);
        assert!(!config.once);
        assert!(
            !format!("{config:?}").contains("secret\""),
            "secrets are redacted"
        );
    }

    #[test]
    fn every_flag_has_an_environment_form_and_the_flag_wins() {
        let env = [
            ("SD_SYNC_MAPPINGS", "s3://b/a=/t/one,\n s3://b/b=/t/two"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("SD_SYNC_INTERVAL", "500ms"),
            ("SD_SYNC_LISTEN", "127.0.0.1:0"),
            ("SD_SYNC_STALE_AFTER", "1m"),
            ("SD_SYNC_MAX_DELETION_SHARE", "25%"),
            ("SD_SYNC_MAX_DELETIONS", "3"),
            ("SD_SYNC_DELETION_CONFIRMATIONS", "4"),
            ("SD_SYNC_ALLOW_MASS_DELETION", "true"),
            ("SD_SYNC_FETCH_CONCURRENCY", "8"),
            ("SD_SYNC_ONCE", "yes"),
        ];
        let config = run(&[], &env).unwrap();
        assert_eq!(config.mappings.len(), 2);
        assert_eq!(config.mappings[1].name, "two");
        assert_eq!(config.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.interval, Duration::from_millis(500));
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.stale_after, Duration::from_secs(60));
        assert_eq!(
            config.valve,
            ValveConfig {
                max_share_percent: 25,
                max_count: 3,
                confirmations: 4,
                allow_mass_deletion: true
            }
        );
        assert_eq!(config.fetch_concurrency, 8);
        assert!(config.once);

        let config = run(
            &[
                "--mapping=s3://c/x=/t/three",
                "--interval",
                "3s",
                "--listen",
                "127.0.0.1:1234",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(
            config.mappings.len(),
            1,
            "--mapping replaces SD_SYNC_MAPPINGS"
        );
        assert_eq!(config.interval, Duration::from_secs(3));
        assert_eq!(config.listen.port(), 1234);
    }

    #[test]
    fn port_alone_listens_on_every_interface() {
        let config = run(
            &["--mapping", "s3://b/a=/t/x", "--s3-endpoint", "http://x"],
            &[("PORT", "8081"), ("SD_SYNC_AUTH_TOKEN", "t")],
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:8081".parse().unwrap());
    }

    #[test]
    fn authentication_is_optional_on_loopback_and_required_beyond() {
        let m = ["--mapping", "s3://b/a=/t/x", "--region", "r"];
        let config = run(&m, &[]).unwrap();
        assert!(!config.auth.is_enabled());
        for listen in ["0.0.0.0:9280", "10.0.0.5:9280", "[::]:9280"] {
            let args = [&m[..], &["--listen", listen]].concat();
            let err = run(&args, &[]).unwrap_err();
            assert!(
                err.starts_with("SD_SYNC_AUTH_TOKEN") && err.contains("beyond loopback"),
                "{err}"
            );
            assert!(!err.contains('\n'));
            let once = [&args[..], &["--once"]].concat();
            assert!(run(&once, &[]).is_ok(), "--once does not listen");
            let with_token = run(&args, &[("SD_SYNC_AUTH_TOKEN", "t0ken")]).unwrap();
            assert_eq!(
                with_token.auth.bearer.as_ref().map(Secret::expose),
                Some("t0ken")
            );
            assert!(!format!("{with_token:?}").contains("t0ken"), "redacted");
        }
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let file = file.to_str().unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \n").unwrap();
        let blank = blank.to_str().unwrap();
        let m = ["--mapping", "s3://b/a=/t/x", "--region", "r"];
        let args = [
            &m[..],
            &[
                "--auth-username",
                "prometheus",
                "--auth-password-file",
                file,
            ],
        ]
        .concat();
        let config = run(&args, &[]).unwrap();
        let (user, password) = config.auth.basic.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("prometheus", "s3cret"));
        let config = run(
            &m,
            &[
                ("SD_SYNC_AUTH_USERNAME", "prometheus"),
                ("SD_SYNC_AUTH_PASSWORD", "pw"),
                ("SD_SYNC_AUTH_TOKEN_FILE", file),
            ],
        )
        .unwrap();
        assert_eq!(config.auth.basic.unwrap().1.expose(), "pw");
        assert_eq!(config.auth.bearer.unwrap().expose(), "s3cret");

        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                &["--auth-username", "u"],
                &[],
                "basic auth needs a password",
            ),
            (
                &[],
                &[("SD_SYNC_AUTH_PASSWORD", "p")],
                "basic auth needs a username",
            ),
            (
                &["--auth-username", "a:b"],
                &[("SD_SYNC_AUTH_PASSWORD", "p")],
                "has no ':'",
            ),
            (
                &["--auth-token-file", file],
                &[("SD_SYNC_AUTH_TOKEN", "t")],
                "give one, not both",
            ),
            (
                &["--auth-token-file", "/nonexistent/token"],
                &[],
                "--auth-token-file (SD_SYNC_AUTH_TOKEN_FILE): cannot read /nonexistent/token",
            ),
            (
                &["--auth-token-file", blank],
                &[],
                "--auth-token-file (SD_SYNC_AUTH_TOKEN_FILE): the secret is empty",
            ),
        ];
        for (extra, env, expected) in cases {
            let args = [&m[..], extra].concat();
            let err = run(&args, env).unwrap_err();
            assert!(err.contains(expected), "{extra:?} {env:?}: {err}");
            assert!(!err.contains("s3cret") && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn bad_flags_and_settings_are_one_clear_line() {
        let m = "s3://b/a=/t/x";
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&[], &[], "at least one mapping"),
            (&["--mapping", "nope"], &[], "does not start with s3://"),
            (
                &["--mapping", m, "--frobnicate"],
                &[],
                "unknown argument \"--frobnicate\"",
            ),
            (&["--mapping"], &[], "--mapping needs a value"),
            (&["--mapping", m], &[], "--region (AWS_REGION)"),
            (
                &["--mapping", m, "--region", "r", "--interval", "2"],
                &[],
                "--interval (SD_SYNC_INTERVAL): \"2\" is not a duration",
            ),
            (
                &["--mapping", m, "--region", "r", "--interval", "0s"],
                &[],
                "outside 10ms",
            ),
            (
                &["--mapping", m, "--region", "r", "--stale-after", "1s"],
                &[],
                "shorter than the poll interval",
            ),
            (
                &["--mapping", m, "--region", "r", "--listen", "localhost"],
                &[],
                "is not ADDR:PORT",
            ),
            (
                &[
                    "--mapping",
                    m,
                    "--region",
                    "r",
                    "--max-deletion-share",
                    "150",
                ],
                &[],
                "in 0..=100",
            ),
            (
                &[
                    "--mapping",
                    m,
                    "--region",
                    "r",
                    "--deletion-confirmations",
                    "0",
                ],
                &[],
                "in 1..=100000",
            ),
            (
                &["--mapping", m, "--region", "r", "--once=yes"],
                &[],
                "--once takes no value",
            ),
            (
                &["--mapping", m, "--region", "r"],
                &[("SD_SYNC_ALLOW_MASS_DELETION", "maybe")],
                "SD_SYNC_ALLOW_MASS_DELETION",
            ),
            (
                &["--mapping", m, "--s3-endpoint", "127.0.0.1:9000"],
                &[],
                "not an http://",
            ),
            (
                &["--mapping", m, "--mapping", "s3://c/=/t/x"],
                &[("AWS_REGION", "r")],
                "the same directory",
            ),
            (
                &["--mapping", m, "--mapping", "s3://c/=/u/x"],
                &[("AWS_REGION", "r")],
                "same last component",
            ),
        ];
        for (args, env, expected) in cases {
            let err = run(args, env).unwrap_err();
            assert!(err.contains(expected), "{args:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn credentials_are_required_and_may_come_from_vcap_services() {
        let args = [
            "--mapping".to_string(),
            "s3://b/a=/t/x".into(),
            "--region".into(),
            "r".into(),
        ];
        let none = Settings::from_pairs::<&str, &str>([]).unwrap();
        let err = parse(args.clone(), &none).unwrap_err();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        let vcap = r#"{"user-provided": [{"credentials": {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S"}}]}"#;
        let from_vcap = Settings::from_pairs([("VCAP_SERVICES", vcap)]).unwrap();
        let Command::Run(config) = parse(args, &from_vcap).unwrap() else {
            panic!("expected a run")
        };
        assert_eq!(config.access_key_id, "A");
    }

    #[test]
    fn help_is_a_command() {
        let parsed = parse(["--help".to_string()], &settings(&[])).unwrap();
        assert!(matches!(parsed, Command::Help));
        for flag in FLAGS {
            assert!(
                HELP.contains(flag.flag) && HELP.contains(flag.env),
                "{}",
                flag.flag
            );
        }
    }
}
