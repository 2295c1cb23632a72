//! `cf-sim` configuration: flags, each with a `CF_SIM_*` environment form (flags win).

use std::fmt;

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
            .finish()
    }
}

/// The outcome of parsing the command line.
#[derive(Debug)]
pub enum Command {
    Run(Box<SimConfig>),
    Help,
}

pub const HELP: &str = "\
cf-sim: a Cloud Foundry simulator (Cloud Controller v3 subset + UAA on one port)

USAGE: cf-sim [FLAGS]

Every flag also has an environment form: --seed-apps N is CF_SIM_SEED_APPS=N, --demo is
CF_SIM_DEMO=true. Flags win over the environment.

  --listen ADDR              listen address (default 127.0.0.1:9292; port 0 = any free port)
  --base-url URL             URL to advertise in links and tokens (default http://<listen>)
  --seed-apps N              seed N apps at start-up (default 0)
  --seed-spaces M            spaces for the seeded apps (default max(1, N/10))
  --seed-orgs K              orgs for the seeded spaces (default max(1, M/10))
  --demo                     add the demo org, space and five apps
  --apps-domain NAME         the shared external apps domain (default apps.example.com)
  --token-ttl SECONDS        access token lifetime (default 1200)
  --rate-limit N             CC requests per window per token subject; 0 = off (default 0)
  --rate-limit-window SECS   rate-limit window (default 3600)
  --admin-user NAME          password-grant user (default admin)
  --admin-password PASS      its password (default admin)
  --client-id ID             client_credentials client (default gds-prometheus)
  --client-secret SECRET     its secret (default gds-prometheus-secret)
  --client-authorities LIST  its authorities, comma-separated
                             (default cloud_controller.global_auditor)
  --signing-key-file PEM     RSA private key for tokens (default: built-in dev key)
  --router-listen ADDR       also serve a simulated gorouter in front of the apps' instances
                             on ADDR (default off; port 0 = any free port)
  --help                     this text

Once listening it prints one line to stdout: `cf-sim listening on http://HOST:PORT`, and
with --router-listen a second one: `cf-sim router listening on http://HOST:PORT`.
Logs go to stderr (RUST_LOG, default info). GET /sim lists the control API.
";

const FLAGS: &[&str] = &[
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
];

fn env_name(flag: &str) -> String {
    format!("CF_SIM_{}", flag.to_uppercase().replace('-', "_"))
}

/// Parses `args` (without the program name) over the environment `env`.
/// Errors are one clear line naming the bad flag.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    // Collect flag values: environment first, flags override.
    let mut values: Vec<(String, String)> = Vec::new();
    for flag in FLAGS {
        if let Some(v) = env(&env_name(flag)) {
            values.push((flag.to_string(), v));
        }
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        let Some(stripped) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument `{arg}` (see --help)"));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (stripped.to_string(), None),
        };
        if !FLAGS.contains(&name.as_str()) {
            return Err(format!("unknown flag `--{name}` (see --help)"));
        }
        let value = if name == "demo" {
            inline.unwrap_or_else(|| "true".into())
        } else {
            match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Err(format!("--{name} needs a value")),
            }
        };
        values.push((name, value));
    }

    let mut c = SimConfig::default();
    for (name, value) in values {
        let number = |v: &str| -> Result<u64, String> {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("--{name}: `{v}` is not a non-negative integer"))
        };
        match name.as_str() {
            "listen" => c.listen = value,
            "base-url" => c.base_url = Some(value.trim_end_matches('/').to_string()),
            "seed-apps" => c.seed_apps = number(&value)? as usize,
            "seed-spaces" => c.seed_spaces = Some(number(&value)?.max(1) as usize),
            "seed-orgs" => c.seed_orgs = Some(number(&value)?.max(1) as usize),
            "demo" => {
                c.demo = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" | "" => false,
                    _ => return Err(format!("--demo: `{value}` is not true or false")),
                }
            }
            "apps-domain" => c.apps_domain = value,
            "token-ttl" => c.token_ttl = number(&value)?,
            "rate-limit" => c.rate_limit = number(&value)?,
            "rate-limit-window" => {
                c.rate_limit_window = number(&value)?;
                if c.rate_limit_window == 0 {
                    return Err("--rate-limit-window must be at least 1".into());
                }
            }
            "admin-user" => c.admin_user = value,
            "admin-password" => c.admin_password = value,
            "client-id" => c.client_id = value,
            "client-secret" => c.client_secret = value,
            "client-authorities" => {
                c.client_authorities = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "signing-key-file" => {
                let pem = std::fs::read_to_string(&value)
                    .map_err(|e| format!("--signing-key-file {value}: {e}"))?;
                c.signing_key_pem = Some(pem);
            }
            "router-listen" => {
                c.router_listen = Some(value).filter(|v| !v.trim().is_empty());
            }
            _ => unreachable!("FLAGS lists every flag"),
        }
    }
    Ok(Command::Run(Box::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<SimConfig, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(args.iter().map(|s| s.to_string()), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Command::Run(c) => Ok(*c),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_match_cf_deployment() {
        let c = run(&[], &[]).unwrap();
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
    }

    #[test]
    fn the_router_listens_only_when_asked() {
        let c = run(&["--router-listen", "127.0.0.1:0"], &[]).unwrap();
        assert_eq!(c.router_listen.as_deref(), Some("127.0.0.1:0"));
        let c = run(&[], &[("CF_SIM_ROUTER_LISTEN", "0.0.0.0:8081")]).unwrap();
        assert_eq!(c.router_listen.as_deref(), Some("0.0.0.0:8081"));
        let c = run(&[], &[("CF_SIM_ROUTER_LISTEN", "")]).unwrap();
        assert_eq!(c.router_listen, None);
    }

    #[test]
    fn flags_override_the_environment_and_accept_both_forms() {
        let c = run(
            &["--seed-apps", "100", "--demo", "--listen=127.0.0.1:0"],
            &[
                ("CF_SIM_SEED_APPS", "5"),
                ("CF_SIM_TOKEN_TTL", "60"),
                ("CF_SIM_RATE_LIMIT", "10"),
            ],
        )
        .unwrap();
        assert_eq!(c.seed_apps, 100);
        assert!(c.demo);
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.token_ttl, 60);
        assert_eq!(c.rate_limit, 10);
    }

    #[test]
    fn bad_input_gives_one_clear_line() {
        assert_eq!(
            run(&["--seed-apps", "x"], &[]).unwrap_err(),
            "--seed-apps: `x` is not a non-negative integer"
        );
        assert!(
            run(&["--nope"], &[])
                .unwrap_err()
                .contains("unknown flag `--nope`")
        );
        assert!(
            run(&["--listen"], &[])
                .unwrap_err()
                .contains("needs a value")
        );
        assert_eq!(run(&["--help"], &[]).unwrap_err(), "help");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = run(&["--admin-password", "hunter2"], &[]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
