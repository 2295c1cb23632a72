//! The updater's fixture: the one place that knows how a test runs the updater binary.
//!
//! [`UpdaterEnv::of`] is the environment of a deployment next to a broker [`Fixture`]:
//! the same simulator, bucket and database. Settings are changed with one rule, whatever
//! the caller (tests, the import tests, the lease tests, the end-to-end stack, the
//! benchmark): a later value of a variable replaces an earlier one, and an empty value
//! removes the variable. The process sees that environment and nothing else (no
//! developer's `AWS_*` or `DATABASE_URL` leaks in).

use std::collections::BTreeMap;
use std::process::Stdio;

use crate::broker::support::Fixture;
use crate::harness::{Running, bin_path, start_command};
use crate::store_s3::s3_endpoint;

/// The updater's environment (see the module's documentation for the override rule).
#[derive(Clone, Debug)]
pub(crate) struct UpdaterEnv {
    vars: BTreeMap<String, String>,
}

impl UpdaterEnv {
    /// Next to the broker of `f`: its simulator (as admin), bucket and prefix, database;
    /// listening on a free loopback port; logging at `TEST_LOG` (default `warn`).
    pub fn of(f: &Fixture) -> UpdaterEnv {
        let log = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
        UpdaterEnv {
            vars: BTreeMap::new(),
        }
        .with(&[
            ("PAAS_DOMAIN", "apps.example.com"),
            ("API_ENDPOINT", f.sim.base_url.as_str()),
            ("UAA_USERNAME", "admin"),
            ("UAA_PASSWORD", "admin"),
            ("BUCKET_NAME", f.store.bucket()),
            ("BUCKET_PREFIX", f.store.prefix()),
            ("S3_ENDPOINT", s3_endpoint().as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("DATABASE_URL", f.database_url.as_str()),
            ("LISTEN_HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("RUST_LOG", log.as_str()),
        ])
    }

    /// Sets `key` to `value`, replacing an earlier value; an empty `value` removes `key`.
    pub fn set(mut self, key: &str, value: &str) -> UpdaterEnv {
        if value.is_empty() {
            self.vars.remove(key);
        } else {
            self.vars.insert(key.to_owned(), value.to_owned());
        }
        self
    }

    /// [`UpdaterEnv::set`] for each of `vars`, in order.
    pub fn with(self, vars: &[(&str, &str)]) -> UpdaterEnv {
        vars.iter()
            .fold(self, |env, (key, value)| env.set(key, value))
    }

    /// The bucket `bucket` of the S3-compatible server at `endpoint` (a benchmark's
    /// counting proxy or stub) instead of the fixture's.
    pub fn store(self, endpoint: &str, bucket: &str) -> UpdaterEnv {
        self.with(&[("S3_ENDPOINT", endpoint), ("BUCKET_NAME", bucket)])
    }

    /// The variables, for a command built by hand (clear its environment first).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `updater ARGS` with exactly this environment, killed if the handle drops (a test
    /// that fails while waiting for it leaves nothing running).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(bin_path("updater"));
        command
            .args(args)
            .env_clear()
            .envs(self.vars())
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    /// Runs `updater ARGS` to completion.
    pub async fn run(&self, args: &[&str]) -> Exit {
        let output = self.command(args).output().await.expect("the updater runs");
        Exit {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts the long-running updater and waits for its ready line.
    pub fn start(&self) -> Running {
        let mut command = std::process::Command::new(bin_path("updater"));
        command.env_clear().envs(self.vars());
        start_command(command, "updater")
    }
}

/// How a finished `updater` run ended.
pub(crate) struct Exit {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `updater ARGS` next to `f`, with `extra` settings, run to completion.
pub(crate) async fn run_updater(f: &Fixture, args: &[&str], extra: &[(&str, &str)]) -> Exit {
    UpdaterEnv::of(f).with(extra).run(args).await
}

/// The long-running updater next to `f`, with `extra` settings.
pub(crate) fn start_updater(f: &Fixture, extra: &[(&str, &str)]) -> Running {
    UpdaterEnv::of(f).with(extra).start()
}
