//! `cf-sim`: a Cloud Foundry simulator for development, tests, the demo and benchmarks.
//!
//! One HTTP server plays both the **Cloud Controller v3** (the subset the broker and the
//! updater use) and **UAA**, with the shapes of the real APIs (see
//! `reference/cf-platform.md` §1, §3, §4 and the simulator checklist in §8). Optionally
//! (`--router-listen`) a second listener plays the **gorouter** in front of the apps'
//! instances (§7). It is a development tool, shipped openly: never put it in front of
//! anything real (its signing key is public, see `src/DEV_KEY_README.md`).
//!
//! ```text
//! cf-sim --listen 127.0.0.1:0 --demo --seed-apps 10000
//! cf-sim listening on http://127.0.0.1:40123        <- the only line on stdout
//!
//! cf-sim --listen 127.0.0.1:0 --router-listen 127.0.0.1:0 --demo
//! cf-sim listening on http://127.0.0.1:40123        <- always the first line
//! cf-sim router listening on http://127.0.0.1:40124 <- second line, with --router-listen
//! ```
//!
//! # Cloud Controller v3
//!
//! `GET /` (links `self`, `cloud_controller_v3` + `meta.version`, `uaa` and `login`
//! pointing at this same server; no `cloud_controller_v2`: v2 is disabled, so `/v2/*`
//! is a plain-text 404 except `/v2/info`), `GET /v3`, `GET /v3/info` (token optional;
//! `rate_limits` when the rate limiter is on), and with a bearer token:
//!
//! | endpoint | notes |
//! | --- | --- |
//! | `GET /v3/apps` | `guids, names, space_guids, organization_guids, stacks, lifecycle_type, label_selector, created_ats, updated_ats, page, per_page, order_by (created_at, updated_at, name, state), include (space, space.organization)` |
//! | `GET /v3/apps/:guid` | `include`; `included` at top level |
//! | `PATCH /v3/apps/:guid` | `name`, `metadata.labels` → `audit.app.update` |
//! | `DELETE /v3/apps/:guid` | 202 + `Location: <base>/v3/jobs/<guid>`; app, processes and route destinations vanish at once, routes stay |
//! | `POST /v3/apps/:guid/actions/start`, `/stop` | 200 app |
//! | `GET /v3/apps/:guid/processes`, `/processes/:type`, `/processes/:type/stats` | |
//! | `POST /v3/apps/:guid/processes/:type/actions/scale`, `POST /v3/processes/:guid/actions/scale` | 202 process |
//! | `GET /v3/apps/:guid/routes` | |
//! | `GET /v3/processes` | `guids, types, app_guids, space_guids, organization_guids, ...`; `command` hidden in lists |
//! | `GET /v3/processes/:guid`, `/stats` | command shown; stats RUNNING when started, reduced DOWN rows when stopped |
//! | `GET /v3/routes` | `app_guids, domain_guids, hosts, paths, space_guids, organization_guids, guids, include (domain, space, space.organization)` |
//! | `GET /v3/routes/:guid`, `GET/POST /v3/routes/:guid/destinations`, `DELETE .../destinations/:guid` | map/unmap with audit events |
//! | `GET /v3/domains`, `/v3/domains/:guid` | shared `<apps domain>` and `apps.internal` (`internal: true`) |
//! | `GET /v3/spaces`, `/v3/organizations` (+ `/:guid`) | spaces take `include=organization` |
//! | `GET /v3/audit_events` (+ `/:guid`) | `types, target_guids (+[not]), space_guids, organization_guids, created_ats[lt/lte/gt/gte]` |
//! | `GET /v3/jobs/:guid` | always `COMPLETE` |
//! | `GET /v3/service_offerings`, `/v3/service_plans`, `/v3/service_instances`, `/v3/service_credential_bindings` (+ `/:guid`) | read-only, seeded through the control API; filters, `include` and `fields` in [`cc::services`] |
//!
//! Lists use the CC envelope: absolute `first/last/next/previous` hrefs repeating every
//! parameter plus `page` and `per_page`, sorted, CGI-escaped (`,` → `%2C`), `null` at
//! the ends; `per_page` 1..5000 (default 50); unknown parameters → 400
//! CF-BadQueryParameter; default order = creation order.
//!
//! Authorization: no token → 401 CF-NotAuthenticated; bad signature, expired, revoked,
//! unknown or refresh token → 401 CF-InvalidAuthToken; GET without
//! `cloud_controller.read`/`admin`/`admin_read_only`/`global_auditor`, or a mutation
//! without `cloud_controller.admin`/`write` → 403 CF-NotAuthorized. **Roles are not
//! modelled: every valid reader sees every org, space and app, and process commands are
//! shown to every reader of `GET /v3/processes/:guid`.**
//!
//! Rate limiting (`--rate-limit N`, off by default): fixed windows of
//! `--rate-limit-window` seconds per token subject (user id, else client id), counted
//! for every authenticated `/v3/...` request. Every such response carries
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` (10 % steps) and `X-RateLimit-Reset`;
//! over the limit → 429, `Retry-After`, `Content-Type: text/plain; charset=utf-8`, body
//! `{"errors":[{"detail":"Rate Limit Exceeded","title":"CF-RateLimitExceeded","code":10013}]}`.
//! As in a default CC, admin and admin_read_only tokens are exempt (no count, no
//! headers): use the client (`global_auditor`) to see the limiter. `GET /v3/info` (no
//! token needed; counted when one is sent) has `rate_limits: {enabled, general_limit,
//! reset_interval_in_minutes}` when the limiter is on (a fraction of a minute for a
//! window that is not whole minutes). `GET /sim/requests` counts the limiter's 429s
//! (`rate_limited`).
//!
//! # UAA
//!
//! `POST /oauth/token` (grants `password` through client `cf` with an empty secret,
//! `refresh_token`, `client_credentials`), `GET /token_keys`, `GET /token_key`,
//! `GET /.well-known/openid-configuration`. Tokens are RS256 JWTs (`kid` `key-1`, `jku`
//! `<base>/token_keys`, `iss` `<base>/oauth/token`, `aud` ∋ `cloud_controller`, `scope`
//! array) valid for `--token-ttl` seconds. The admin user has `cloud_controller.admin`,
//! `.read`, `.write` and `openid`; the client has `--client-authorities` (default
//! `cloud_controller.global_auditor`).
//!
//! # Router (`--router-listen ADDR`, env `CF_SIM_ROUTER_LISTEN`; off by default)
//!
//! With `--router-tls-cert PEM --router-tls-key PEM` (`CF_SIM_ROUTER_TLS_CERT`,
//! `CF_SIM_ROUTER_TLS_KEY`) it serves HTTPS (rustls, HTTP/1.1) like the real gorouter, and
//! `router_url` is `https://...`.
//!
//! A simulated gorouter over the same world (see [`router`] for the exact rules):
//! `Host` (port ignored) + path select a route on a non-internal domain (`host.domain`,
//! or the apex domain for an empty host; longest whole-segment path prefix; `""`
//! matches everything) with a destination on an app's `web` process. No route → 404
//! `X-Cf-Routererror: unknown_route`; every destination app stopped or at 0 instances
//! → 503 `no_endpoints`. `X-CF-APP-INSTANCE: GUID:I` picks an instance (malformed →
//! 400 `invalid_cf_app_instance_header`; not a running instance of the route → 400
//! `unknown_route`); without it instances take turns (round-robin per route).
//! Scaling, stopping, unmapping or deleting an app changes what the router serves at
//! once. With the demo: `web-shop.apps.example.com`, `api.apps.example.com` (and
//! `/internal/metrics`), `paas-metric-exporter.apps.example.com`,
//! `orders.apps.example.com`.
//!
//! The instance plays an app using the GOV.UK metrics library: every GET (any path)
//! needs `Authorization: Bearer <its app guid>` (else 401; per app,
//! `POST /sim/apps/:guid/metrics-auth {"required": false}` turns it off, and
//! `{"tokens": [...]}` makes it accept `Bearer <token>` for those instead) and answers
//! `text/plain; version=0.0.4` with
//! `cf_sim_instance_info{app_guid="..",app_name="..",instance_index="i",process_guid=".."} 1`
//! and `cf_sim_instance_scrapes_total <n>` (successful answers of that instance).
//! `GET /sim/router/requests` counts router requests by app guid, instance index, path
//! (no query), status, host and method; `router_url` in `GET /sim` is its address.
//!
//! # Control API (no auth, JSON)
//!
//! See [`control::ENDPOINTS`] (also served by `GET /sim`): create orgs, spaces, apps
//! and routes; map/unmap, scale, stop, start, rename, delete and rolling-deploy apps
//! (recording the same audit events as the CC API, actor = the admin user); record a
//! broker's service offering and plans, service instances and credential bindings as an
//! old broker left them (no broker is called; [`control::services::ENDPOINTS`]); seed
//! (`POST /sim/seed`, deterministic) or add the demo (`POST /sim/demo`); inject faults
//! and latency (`POST /sim/faults`); revoke all tokens (`POST /sim/uaa/revoke`) or take
//! UAA down (`POST /sim/uaa/down`); read and reset request counters (`/sim/requests`,
//! keyed `METHOD /route/:pattern`, e.g. `GET /v3/apps/:guid`); read and reset router
//! request counts (`/sim/router/requests`); require or waive an app's metrics bearer
//! token (`POST /sim/apps/:guid/metrics-auth`); reset everything (`POST /sim/reset`).
//!
//! # Use from tests
//!
//! In-process without a socket: `actix_web::test::init_service(cf_sim::app(state))`
//! with `state = web::Data::new(SimState::new(config, "http://cf.test")?)`; the router
//! on the same state: `init_service(cf_sim::router_app(state.clone()))`. On a real
//! port: `let sim = Sim::start(config)?; let url = sim.local_url.clone();
//! actix_web::rt::spawn(sim.run());` (`sim.router_url` with `config.router_listen`).

// Modules in layers, each using only modules listed before it (no import circle):
// 1. foundations; 2. the world (model and changes); 3. what needs only the world: list
//    queries and the list machinery, presenters, routing decisions, seed, UAA tokens;
// 4. the simulator's state; 5. HTTP handlers per API area; 6. the server wiring.
pub mod cache;
pub mod config;
pub mod error;
pub mod http;
pub mod keys;
pub mod util;

pub mod world;

pub mod query;

pub mod list;
pub mod present;
pub mod routing;
pub mod seed;
pub mod uaa;

pub mod state;

pub mod cc;
pub mod control;
pub mod router;
pub mod uaa_api;

pub mod server;

pub use config::SimConfig;
pub use error::CcError;
pub use router::router_app;
pub use server::{Sim, app};
pub use state::SimState;
