//! `cf-sim` configuration: flags (clap), each with a `CF_SIM_*` environment form (flags
//! win).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// Everything the simulator needs to start.
#[derive(Clone)]
pub struct SimConfig {
    /// `--listen`, default `127.0.0.1:9292`; port 0 picks a free port.
    pub listen: String,
    /// `--base-url`: the URL the simulator advertises in links, `iss` and `jku`.
    /// Default `http://<listen address>` (`127.0.0.1` when listening on all addresses).
    pub base_url: Option<String>,
    /// `--seed-apps N`: seed N apps at start-up (and on every reset).
    pub seed_apps: usize,
    /// `--seed-spaces M`, default `max(1, N/10)`.
    pub seed_spaces: Option<usize>,
    /// `--seed-orgs K`, default `max(1, M/10)`.
    pub seed_orgs: Option<usize>,
    /// `--demo`: add the demo foundation at start-up (and on every reset).
    pub demo: bool,
    /// `--apps-domain`, default `apps.example.com`.
    pub apps_domain: String,
    /// `--token-ttl SECONDS`, default 1200 (cf-deployment's `cf` client).
    pub token_ttl: u64,
    /// `--rate-limit N` requests per window per token subject; 0 = off (default).
    pub rate_limit: u64,
    /// `--rate-limit-window SECONDS`, default 3600.
    pub rate_limit_window: u64,
    pub admin_user: String,
    pub admin_password: String,
    pub client_id: String,
    pub client_secret: String,
    /// `--client-authorities a,b`, default `cloud_controller.global_auditor`.
    pub client_authorities: Vec<String>,
    /// `--signing-key-file PEM`: replaces the built-in development key.
    pub signing_key_pem: Option<String>,
    /// `--router-listen ADDR`: also serve the simulated gorouter there (off by default;
    /// port 0 picks a free port).
    pub router_listen: Option<String>,
    /// `--router-tls-cert PEM` and `--router-tls-key PEM`: the router serves HTTPS with
    /// this certificate chain and key (as the real gorouter does) instead of HTTP.
    pub router_tls: Option<RouterTls>,
}

/// The router's certificate chain and private key, PEM.
#[derive(Clone)]
pub struct RouterTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9292".into(),
            base_url: None,
            seed_apps: 0,
            seed_spaces: None,
            seed_orgs: None,
            demo: false,
            apps_domain: "apps.example.com".into(),
            token_ttl: 1200,
            rate_limit: 0,
            rate_limit_window: 3600,
            admin_user: "admin".into(),
            admin_password: "admin".into(),
            client_id: "gds-prometheus".into(),
            client_secret: "gds-prometheus-secret".into(),
            client_authorities: vec!["cloud_controller.global_auditor".into()],
            signing_key_pem: None,
            router_listen: None,
            router_tls: None,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("base_url", &self.base_url)
            .field("seed_apps", &self.seed_apps)
            .field("seed_spaces", &self.seed_spaces)
            .field("seed_orgs", &self.seed_orgs)
            .field("demo", &self.demo)
            .field("apps_domain", &self.apps_domain)
            .field("token_ttl", &self.token_ttl)
            .field("rate_limit", &self.rate_limit)
            .field("rate_limit_window", &self.rate_limit_window)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("client_authorities", &self.client_authorities)
            .field(
                "signing_key_pem",
                &self.signing_key_pem.as_ref().map(|_| "[redacted]"),
            )
            .field("router_listen", &self.router_listen)
            .field(
                "router_tls",
                &self.router_tls.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The command line: every flag also has a `CF_SIM_*` environment form (flags win).
#[derive(Parser)]
#[command(
    name = "cf-sim",
    about = "cf-sim: a Cloud Foundry simulator (Cloud Controller v3 subset + UAA on one port)",
    long_about = None,
    args_override_self = true,
    after_help = "Once listening it prints one line to stdout: `cf-sim listening on http://HOST:PORT`, and\n\
                  with --router-listen a second one: `cf-sim router listening on http://HOST:PORT`.\n\
                  Logs go to stderr (RUST_LOG, default info). GET /sim lists the control API."
)]
pub struct Args {
    /// Listen address (port 0 = any free port)
    #[arg(
        long,
        env = "CF_SIM_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9292"
    )]
    listen: String,
    /// URL to advertise in links and tokens [default: http://ADDR of --listen]
    #[arg(long, env = "CF_SIM_BASE_URL", value_name = "URL")]
    base_url: Option<String>,
    /// Seed N apps at start-up (and on every reset)
    #[arg(long, env = "CF_SIM_SEED_APPS", value_name = "N", default_value = "0", value_parser = non_negative)]
    seed_apps: u64,
    /// Spaces for the seeded apps [default: max(1, N/10)]
    #[arg(long, env = "CF_SIM_SEED_SPACES", value_name = "M", value_parser = non_negative)]
    seed_spaces: Option<u64>,
    /// Orgs for the seeded spaces [default: max(1, M/10)]
    #[arg(long, env = "CF_SIM_SEED_ORGS", value_name = "K", value_parser = non_negative)]
    seed_orgs: Option<u64>,
    /// Add the demo org, space and five apps (also --demo=false; env 1/true/yes/on or 0/false/no/off)
    #[arg(
        long,
        env = "CF_SIM_DEMO",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = boolean
    )]
    demo: bool,
    /// The shared external apps domain
    #[arg(
        long,
        env = "CF_SIM_APPS_DOMAIN",
        value_name = "NAME",
        default_value = "apps.example.com"
    )]
    apps_domain: String,
    /// Access token lifetime
    #[arg(long, env = "CF_SIM_TOKEN_TTL", value_name = "SECONDS", default_value = "1200", value_parser = non_negative)]
    token_ttl: u64,
    /// CC requests per window per token subject; 0 = off
    #[arg(long, env = "CF_SIM_RATE_LIMIT", value_name = "N", default_value = "0", value_parser = non_negative)]
    rate_limit: u64,
    /// Rate-limit window
    #[arg(long, env = "CF_SIM_RATE_LIMIT_WINDOW", value_name = "SECS", default_value = "3600", value_parser = positive)]
    rate_limit_window: u64,
    /// Password-grant user
    #[arg(
        long,
        env = "CF_SIM_ADMIN_USER",
        value_name = "NAME",
        default_value = "admin"
    )]
    admin_user: String,
    /// Its password
    #[arg(
        long,
        env = "CF_SIM_ADMIN_PASSWORD",
        value_name = "PASS",
        default_value = "admin",
        hide_env_values = true
    )]
    admin_password: String,
    /// client_credentials client
    #[arg(
        long,
        env = "CF_SIM_CLIENT_ID",
        value_name = "ID",
        default_value = "gds-prometheus"
    )]
    client_id: String,
    /// Its secret
    #[arg(
        long,
        env = "CF_SIM_CLIENT_SECRET",
        value_name = "SECRET",
        default_value = "gds-prometheus-secret",
        hide_default_value = true,
        hide_env_values = true
    )]
    client_secret: String,
    /// Its authorities, comma-separated
    #[arg(
        long,
        env = "CF_SIM_CLIENT_AUTHORITIES",
        value_name = "LIST",
        default_value = "cloud_controller.global_auditor"
    )]
    client_authorities: String,
    /// RSA private key for tokens [default: built-in dev key]
    #[arg(long, env = "CF_SIM_SIGNING_KEY_FILE", value_name = "PEM")]
    signing_key_file: Option<PathBuf>,
    /// Also serve a simulated gorouter in front of the apps' instances on ADDR (port 0 =
    /// any free port) [default: off]
    #[arg(long, env = "CF_SIM_ROUTER_LISTEN", value_name = "ADDR")]
    router_listen: Option<String>,
    /// With --router-listen: serve HTTPS with this certificate chain (with
    /// --router-tls-key) [default: HTTP]
    #[arg(
        long,
        env = "CF_SIM_ROUTER_TLS_CERT",
        value_name = "PEM",
        requires = "router_tls_key"
    )]
    router_tls_cert: Option<PathBuf>,
    /// The router certificate's private key
    #[arg(
        long,
        env = "CF_SIM_ROUTER_TLS_KEY",
        value_name = "PEM",
        requires = "router_tls_cert"
    )]
    router_tls_key: Option<PathBuf>,
}

/// `N` with surrounding blanks allowed.
fn non_negative(v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("`{v}` is not a non-negative integer"))
}

fn positive(v: &str) -> Result<u64, String> {
    match non_negative(v)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("`{v}` is not true or false")),
    }
}

impl Args {
    /// The configuration these arguments describe (reads `--signing-key-file`).
    pub fn into_config(self) -> Result<SimConfig, clap::Error> {
        let signing_key_pem = match &self.signing_key_file {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Args::command().error(
                    ErrorKind::Io,
                    format!("--signing-key-file {}: {e}", path.display()),
                )
            })?),
        };
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read(path).map_err(|e| {
                Args::command().error(ErrorKind::Io, format!("{flag} {}: {e}", path.display()))
            })
        };
        let router_tls = match (&self.router_tls_cert, &self.router_tls_key) {
            (Some(cert), Some(key)) => Some(RouterTls {
                cert_pem: read(cert, "--router-tls-cert")?,
                key_pem: read(key, "--router-tls-key")?,
            }),
            _ => None,
        };
        Ok(SimConfig {
            router_tls,
            listen: self.listen,
            base_url: self.base_url.map(|u| u.trim_end_matches('/').to_string()),
            seed_apps: self.seed_apps as usize,
            seed_spaces: self.seed_spaces.map(|n| n.max(1) as usize),
            seed_orgs: self.seed_orgs.map(|n| n.max(1) as usize),
            demo: self.demo,
            apps_domain: self.apps_domain,
            token_ttl: self.token_ttl,
            rate_limit: self.rate_limit,
            rate_limit_window: self.rate_limit_window,
            admin_user: self.admin_user,
            admin_password: self.admin_password,
            client_id: self.client_id,
            client_secret: self.client_secret,
            client_authorities: self
                .client_authorities
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            signing_key_pem,
            router_listen: self.router_listen.filter(|v| !v.trim().is_empty()),
        })
    }
}

/// Parses a command line (`args` starting with the program name) over the process
/// environment. `--help` comes back as an error of kind `DisplayHelp` (see
/// [`clap::Error::exit`]); print other errors with [`one_line`].
pub fn parse<I, T>(args: I) -> Result<SimConfig, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Args::try_parse_from(args)?.into_config()
}

/// A parse error as one line naming the flag, without clap's usage and hints.
pub fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<SimConfig, String> {
        let mut argv = vec!["cf-sim"];
        argv.extend_from_slice(args);
        parse(argv).map_err(|e| match e.kind() {
            ErrorKind::DisplayHelp => "help".to_string(),
            _ => one_line(&e),
        })
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_match_cf_deployment() {
        let c = run(&[]).unwrap();
        let d = SimConfig::default();
        assert_eq!(c.listen, "127.0.0.1:9292");
        assert_eq!(c.token_ttl, 1200);
        assert_eq!(c.rate_limit, 0);
        assert_eq!(c.rate_limit_window, 3600);
        assert_eq!(
            (c.admin_user.as_str(), c.admin_password.as_str()),
            ("admin", "admin")
        );
        assert_eq!(c.client_id, "gds-prometheus");
        assert!(!c.demo);
        assert_eq!(c.router_listen, None);
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
        assert_eq!(c.client_secret, d.client_secret);
    }

    #[test]
    fn the_router_listens_only_when_asked() {
        let c = run(&["--router-listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(c.router_listen.as_deref(), Some("127.0.0.1:0"));
        let c = run(&["--router-listen="]).unwrap();
        assert_eq!(c.router_listen, None);
    }

    #[test]
    fn flags_accept_both_forms_and_the_last_one_wins() {
        let c = run(&[
            "--seed-apps",
            "5",
            "--seed-apps",
            "100",
            "--demo",
            "--listen=127.0.0.1:0",
            "--base-url",
            "http://cf.test/",
            "--client-authorities",
            " a, b,,",
            "--seed-spaces",
            "0",
        ])
        .unwrap();
        assert_eq!(c.seed_apps, 100);
        assert!(c.demo);
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.base_url.as_deref(), Some("http://cf.test"));
        assert_eq!(c.client_authorities, ["a", "b"]);
        assert_eq!(c.seed_spaces, Some(1));
        assert!(!run(&["--demo=false"]).unwrap().demo);
        assert!(run(&["--demo=yes"]).unwrap().demo);
    }

    #[test]
    fn bad_input_gives_one_clear_line() {
        assert_eq!(
            run(&["--seed-apps", "x"]).unwrap_err(),
            "invalid value 'x' for '--seed-apps <N>': `x` is not a non-negative integer"
        );
        assert_eq!(
            run(&["--rate-limit-window", "0"]).unwrap_err(),
            "invalid value '0' for '--rate-limit-window <SECS>': must be at least 1"
        );
        assert_eq!(
            run(&["--nope"]).unwrap_err(),
            "unexpected argument '--nope' found"
        );
        assert!(
            run(&["--listen"])
                .unwrap_err()
                .contains("'--listen <ADDR>'"),
            "{:?}",
            run(&["--listen"])
        );
        assert!(
            run(&["--signing-key-file", "/nonexistent/key.pem"])
                .unwrap_err()
                .starts_with("--signing-key-file /nonexistent/key.pem: "),
        );
        assert_eq!(run(&["--help"]).unwrap_err(), "help");
    }

    #[test]
    fn help_names_every_flag_with_its_environment_form_but_no_secret() {
        let help = Args::command().render_help().to_string();
        for flag in [
            "listen",
            "base-url",
            "seed-apps",
            "seed-spaces",
            "seed-orgs",
            "demo",
            "apps-domain",
            "token-ttl",
            "rate-limit",
            "rate-limit-window",
            "admin-user",
            "admin-password",
            "client-id",
            "client-secret",
            "client-authorities",
            "signing-key-file",
            "router-listen",
            "router-tls-cert",
            "router-tls-key",
        ] {
            assert!(help.contains(&format!("--{flag}")), "--{flag}: {help}");
            let env = format!("CF_SIM_{}", flag.to_uppercase().replace('-', "_"));
            assert!(help.contains(&env), "{env}: {help}");
        }
        assert!(!help.contains("gds-prometheus-secret"), "{help}");
    }

    #[test]
    fn the_router_serves_tls_only_with_both_a_certificate_and_a_key() {
        assert!(run(&["--router-tls-cert", "/c.pem"]).is_err());
        assert!(run(&["--router-tls-key", "/k.pem"]).is_err());
        let dir = std::env::temp_dir().join(format!("cf-sim-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert, "CERT").unwrap();
        std::fs::write(&key, "KEY").unwrap();
        let c = run(&[
            "--router-tls-cert",
            cert.to_str().unwrap(),
            "--router-tls-key",
            key.to_str().unwrap(),
        ])
        .unwrap();
        let tls = c.router_tls.as_ref().unwrap();
        assert_eq!(
            (&tls.cert_pem[..], &tls.key_pem[..]),
            (&b"CERT"[..], &b"KEY"[..])
        );
        assert!(!format!("{c:?}").contains("KEY"), "{c:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = run(&["--admin-password", "hunter2"]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
