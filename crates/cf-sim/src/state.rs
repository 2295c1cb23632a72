//! Everything a running simulator holds: the world, UAA state, injected faults, request
//! counters, rate-limit windows and the router's state, each behind its own lock.
//!
//! Lock order: the world before the router state (the router holds the world's read
//! lock while it picks an instance); never take the world while holding the router state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cache::PresentedCache;
use crate::config::SimConfig;
use crate::error::CcError;
use crate::keys::SigningKey;
use crate::routing::RouterState;
use crate::seed::{SeedSpec, base_world, demo, seed};
use crate::uaa::{UaaSettings, UaaState};
use crate::world::{Party, World};

/// The simulator's state as handlers extract it.
pub type Data = actix_web::web::Data<SimState>;

/// Shared state of one simulator (one per server; cheap to share via `web::Data`).
pub struct SimState {
    /// Base URL advertised in links, `iss` and `jku`, without a trailing slash.
    pub base_url: String,
    pub config: SimConfig,
    pub key: SigningKey,
    pub uaa_settings: UaaSettings,
    /// `http://ADDR` of the simulated gorouter when `--router-listen` is on (set by
    /// [`crate::Sim::start`]; in-process tests may set it themselves).
    pub router_url: Option<String>,
    world: RwLock<World>,
    /// Bumped by every [`SimState::world_mut`]: what [`PresentedCache`] entries are valid for.
    world_generation: AtomicU64,
    presented: PresentedCache,
    uaa: Mutex<UaaState>,
    faults: Mutex<Faults>,
    counters: Mutex<Counters>,
    rate: Mutex<RateLimiter>,
    router: Mutex<RouterState>,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the world: it can hold tens of thousands of apps.
        f.debug_struct("SimState")
            .field("base_url", &self.base_url)
            .field("config", &self.config)
            .field("key", &self.key)
            .field("uaa_settings", &self.uaa_settings)
            .field("router_url", &self.router_url)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    /// Builds the start-up state (seed and demo as configured).
    pub fn new(config: SimConfig, base_url: &str) -> anyhow::Result<Self> {
        let key = match &config.signing_key_pem {
            Some(pem) => SigningKey::from_pem(pem)?,
            None => SigningKey::development(),
        };
        let uaa_settings = UaaSettings {
            admin_user: config.admin_user.clone(),
            admin_password: config.admin_password.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            client_authorities: config.client_authorities.clone(),
            token_ttl: config.token_ttl,
        };
        let world = initial_world(&config, false).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            config,
            key,
            uaa_settings,
            router_url: None,
            world: RwLock::new(world),
            world_generation: AtomicU64::new(0),
            presented: PresentedCache::default(),
            uaa: Mutex::new(UaaState::default()),
            faults: Mutex::new(Faults::default()),
            counters: Mutex::new(Counters::default()),
            rate: Mutex::new(RateLimiter::default()),
            router: Mutex::new(RouterState::default()),
        })
    }

    pub fn world(&self) -> RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The world, for a change: every call starts a new world generation, so what was
    /// presented from the old world is not served again.
    pub fn world_mut(&self) -> RwLockWriteGuard<'_, World> {
        let guard = self.world.write().unwrap_or_else(|e| e.into_inner());
        // Under the write lock: a reader that sees the new generation sees the new world.
        self.world_generation.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// The current world generation; read it while holding [`SimState::world`]'s guard.
    pub fn world_generation(&self) -> u64 {
        self.world_generation.load(Ordering::SeqCst)
    }

    /// Serialised list items of the current world generation (see [`PresentedCache`]).
    pub fn presented(&self) -> &PresentedCache {
        &self.presented
    }

    pub fn uaa(&self) -> MutexGuard<'_, UaaState> {
        lock(&self.uaa)
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub fn counters(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }

    pub fn rate(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.rate)
    }

    /// Router request counters, instance scrape counters, round-robin positions and
    /// per-app metrics-auth settings.
    pub fn router(&self) -> MutexGuard<'_, RouterState> {
        lock(&self.router)
    }

    /// The actor of control-API mutations: the admin user.
    pub fn control_actor(&self) -> Party {
        Party {
            guid: self.uaa_settings.admin_user_id(),
            kind: "user".into(),
            name: self.uaa_settings.admin_user.clone(),
        }
    }

    /// `POST /sim/reset`: world (start-up seed and demo unless `empty`), faults,
    /// counters, rate-limit windows, the router's state (request and scrape counters,
    /// metrics-auth settings) and the UAA-down flag go back to start-up state.
    /// Issued tokens stay valid (`POST /sim/uaa/revoke` is the way to drop them).
    pub fn reset(&self, empty: bool) -> Result<(), CcError> {
        let world = initial_world(&self.config, empty)?;
        *self.world_mut() = world;
        *self.faults() = Faults::default();
        *self.counters() = Counters::default();
        *self.rate() = RateLimiter::default();
        *self.router() = RouterState::default();
        self.uaa().down = false;
        Ok(())
    }
}

/// The two shared domains, then the demo (first, so it is on page one), then the seed.
fn initial_world(config: &SimConfig, empty: bool) -> Result<World, CcError> {
    let mut w = base_world(&config.apps_domain);
    if empty {
        return Ok(w);
    }
    if config.demo {
        demo(&mut w)?;
    }
    if config.seed_apps > 0 || config.seed_spaces.is_some() {
        seed(
            &mut w,
            SeedSpec {
                apps: config.seed_apps,
                spaces: config.seed_spaces,
                orgs: config.seed_orgs,
            },
        )?;
    }
    Ok(w)
}

/// `POST /sim/faults` body.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Matches request paths starting with this (e.g. `/v3/routes`, `/oauth/token`).
    pub path_prefix: String,
    /// Only this method (any when absent).
    pub method: Option<String>,
    /// Status to answer with; absent with `delay_ms` = answer normally, late.
    pub status: Option<u16>,
    /// How many requests to hit (default 1; 0 = until `DELETE /sim/faults`).
    pub count: Option<u32>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
    /// Wait this long first (simulates slow responses and client timeouts).
    pub delay_ms: Option<u64>,
    /// Body override: a JSON string is sent as text, anything else as JSON.
    pub body: Option<Value>,
}

#[derive(Debug, Clone)]
struct Fault {
    id: u64,
    spec: FaultSpec,
    /// `None` = until cleared.
    remaining: Option<u32>,
    hits: u64,
}

/// Injected faults, first match wins.
#[derive(Debug, Default)]
pub struct Faults {
    list: Vec<Fault>,
    next_id: u64,
}

impl Faults {
    pub fn add(&mut self, spec: FaultSpec) -> Result<u64, CcError> {
        if spec.status.is_none() && spec.delay_ms.is_none() {
            return Err(CcError::unprocessable(
                "A fault needs a status, a delay_ms, or both",
            ));
        }
        if let Some(s) = spec.status
            && !(100..=599).contains(&s)
        {
            return Err(CcError::unprocessable("status must be an HTTP status code"));
        }
        if !spec.path_prefix.starts_with('/') {
            return Err(CcError::unprocessable("path_prefix must start with '/'"));
        }
        self.next_id += 1;
        let remaining = match spec.count.unwrap_or(1) {
            0 => None,
            n => Some(n),
        };
        self.list.push(Fault {
            id: self.next_id,
            spec,
            remaining,
            hits: 0,
        });
        Ok(self.next_id)
    }

    /// Takes one hit of the first fault matching the request, if any.
    pub fn take(&mut self, method: &str, path: &str) -> Option<FaultSpec> {
        let pos = self.list.iter().position(|f| {
            path.starts_with(&f.spec.path_prefix)
                && f.spec
                    .method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        let fault = &mut self.list[pos];
        fault.hits += 1;
        let spec = fault.spec.clone();
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.list.remove(pos);
            }
        }
        Some(spec)
    }

    pub fn clear(&mut self) -> usize {
        std::mem::take(&mut self.list).len()
    }

    pub fn to_json(&self) -> Value {
        Value::Array(
            self.list
                .iter()
                .map(|f| {
                    json!({
                        "id": f.id,
                        "path_prefix": f.spec.path_prefix,
                        "method": f.spec.method,
                        "status": f.spec.status,
                        "remaining": f.remaining,
                        "retry_after": f.spec.retry_after,
                        "delay_ms": f.spec.delay_ms,
                        "hits": f.hits,
                    })
                })
                .collect(),
        )
    }
}

/// Which part of the simulator a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    CloudController,
    Uaa,
    Control,
}

impl Surface {
    pub fn of(path: &str) -> Self {
        if path == "/sim" || path.starts_with("/sim/") {
            Surface::Control
        } else if path.starts_with("/oauth/")
            || path == "/token_keys"
            || path == "/token_key"
            || path.starts_with("/.well-known/")
        {
            Surface::Uaa
        } else {
            Surface::CloudController
        }
    }
}

/// Request counters keyed `METHOD /route/:pattern`.
#[derive(Debug, Default)]
pub struct Counters {
    pub total_cc: u64,
    pub total_uaa: u64,
    /// Requests the rate limiter refused (429), also counted in the totals.
    pub rate_limited: u64,
    pub by_endpoint: BTreeMap<String, u64>,
}

impl Counters {
    pub fn count(&mut self, surface: Surface, key: String) {
        match surface {
            Surface::CloudController => self.total_cc += 1,
            Surface::Uaa => self.total_uaa += 1,
            Surface::Control => {}
        }
        *self.by_endpoint.entry(key).or_insert(0) += 1;
    }

    pub fn to_json(&self) -> Value {
        json!({
            "total_cc": self.total_cc,
            "total_uaa": self.total_uaa,
            "rate_limited": self.rate_limited,
            "by_endpoint": self.by_endpoint,
        })
    }
}

/// actix route pattern → counter key path: `{guid}` → `:guid`, `{tail:.*}` → `*`.
pub fn pattern_key(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 1..start + end];
        match inner.split_once(':') {
            Some((_, ".*")) => out.push('*'),
            Some((name, _)) => {
                out.push(':');
                out.push_str(name);
            }
            None => {
                out.push(':');
                out.push_str(inner);
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// What the rate limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub limit: u64,
    /// Remaining, floored to 10 % steps of the limit (like CCNG's estimate).
    pub remaining: u64,
    /// Epoch seconds when the window resets.
    pub reset: i64,
    pub exceeded: bool,
}

/// Fixed windows per token subject (CCNG `rate_limiter.rb`, in-memory flavour).
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: HashMap<String, (i64, u64)>,
}

impl RateLimiter {
    pub fn hit(&mut self, subject: &str, limit: u64, window_secs: u64, now: i64) -> RateDecision {
        let window = window_secs as i64;
        let entry = self.windows.entry(subject.to_string()).or_insert((now, 0));
        if now >= entry.0 + window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        let used = entry.1.min(limit);
        let left = limit - used;
        RateDecision {
            limit,
            remaining: (left * 10).checked_div(limit).unwrap_or(0) * limit / 10,
            reset: entry.0 + window,
            exceeded: entry.1 > limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_debug_output_has_no_secrets() {
        let config = SimConfig {
            admin_password: "hunter2".into(),
            client_secret: "sw0rdfish".into(),
            ..SimConfig::default()
        };
        let debug = format!("{:?}", SimState::new(config, "http://x").unwrap());
        assert!(!debug.contains("hunter2") && !debug.contains("sw0rdfish"));
    }

    #[test]
    fn pattern_keys_use_colon_names() {
        assert_eq!(pattern_key("/v3/apps/{guid}"), "/v3/apps/:guid");
        assert_eq!(
            pattern_key("/v3/apps/{guid}/processes/{type}/actions/scale"),
            "/v3/apps/:guid/processes/:type/actions/scale"
        );
        assert_eq!(pattern_key("/v2/{tail:.*}"), "/v2/*");
        assert_eq!(pattern_key("/v3/apps"), "/v3/apps");
    }

    #[test]
    fn rate_limit_remaining_moves_in_ten_percent_steps() {
        let mut r = RateLimiter::default();
        let d = r.hit("u", 20, 60, 1000);
        assert_eq!((d.remaining, d.reset, d.exceeded), (18, 1060, false)); // 19 left → 18
        for _ in 0..18 {
            r.hit("u", 20, 60, 1001);
        }
        let d = r.hit("u", 20, 60, 1002); // 20th request
        assert_eq!((d.remaining, d.exceeded), (0, false));
        let d = r.hit("u", 20, 60, 1003);
        assert!(d.exceeded);
        assert!(!r.hit("other", 20, 60, 1003).exceeded);
        let d = r.hit("u", 20, 60, 1060); // new window
        assert_eq!((d.exceeded, d.reset), (false, 1120));
    }

    #[test]
    fn faults_fire_count_times_and_match_method_and_prefix() {
        let mut f = Faults::default();
        f.add(FaultSpec {
            path_prefix: "/v3/routes".into(),
            method: Some("GET".into()),
            status: Some(503),
            count: Some(2),
            retry_after: None,
            delay_ms: None,
            body: None,
        })
        .unwrap();
        assert!(f.take("POST", "/v3/routes").is_none());
        assert!(f.take("GET", "/v3/apps").is_none());
        assert!(f.take("get", "/v3/routes?x=1").is_some());
        assert!(f.take("GET", "/v3/routes/abc").is_some());
        assert!(f.take("GET", "/v3/routes").is_none());
    }

    #[test]
    fn surfaces_split_cc_uaa_and_control() {
        assert_eq!(Surface::of("/v3/apps"), Surface::CloudController);
        assert_eq!(Surface::of("/"), Surface::CloudController);
        assert_eq!(Surface::of("/oauth/token"), Surface::Uaa);
        assert_eq!(Surface::of("/token_keys"), Surface::Uaa);
        assert_eq!(Surface::of("/sim/requests"), Surface::Control);
        assert_eq!(Surface::of("/simulation"), Surface::CloudController);
    }
}
