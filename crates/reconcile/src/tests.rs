//! Small hand-built worlds; each test compares the plan's text, which is what an operator
//! sees in a dry run.

use super::*;
use gds_store::BindingAuth;
use gds_targets::{AppInfo, Route, ScrapeAuth};

const SHOP: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const API: &str = "aaaaaaaa-0000-4000-8000-000000000002";
const GONE: &str = "aaaaaaaa-0000-4000-8000-000000000003";
const STRAY: &str = "aaaaaaaa-0000-4000-8000-000000000004";

fn g(s: &str) -> AppGuid {
    AppGuid::parse(s).unwrap()
}

fn model() -> ModelConfig {
    ModelConfig {
        paas_domain: "apps.example.com".into(),
    }
}

fn app(guid: &str, name: &str, state: AppState, instances: u32) -> AppInfo {
    AppInfo {
        guid: g(guid),
        name: name.into(),
        state,
        instances,
        org: "o".into(),
        space: "s".into(),
        routes: vec![Route {
            host: name.into(),
            domain: "apps.example.com".into(),
            path: String::new(),
            internal: false,
        }],
        start_command: None,
        exporter_label: false,
    }
}

fn body(info: &AppInfo) -> Vec<u8> {
    build_target_file(info, &model(), &BindingParams::default()).to_bytes()
}

#[derive(Clone)]
struct World {
    bound: Vec<&'static str>,
    apps: Vec<AppInfo>,
    missing: Vec<&'static str>,
    failed: Vec<(&'static str, &'static str)>,
    cc_down: bool,
    active: Option<Vec<(&'static str, ETag)>>,
    inactive: Option<Vec<(&'static str, ETag)>>,
    /// Bound apps with a token binding: they should have a credentials document.
    tokens: Vec<&'static str>,
    /// The listing of `credentials/`.
    documents: Option<Vec<(&'static str, ETag)>>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            bound: vec![],
            apps: vec![],
            missing: vec![],
            failed: vec![],
            cc_down: false,
            active: Some(vec![]),
            inactive: Some(vec![]),
            tokens: vec![],
            documents: Some(vec![]),
        }
    }
}

impl World {
    fn plan_with(&self, scope: &Scope, limits: Limits) -> Plan {
        let desired = Desired {
            bound: self
                .bound
                .iter()
                .map(|a| (g(a), BindingParams::default()))
                .collect(),
            cc: (!self.cc_down).then(|| AppsSnapshot {
                apps: self
                    .apps
                    .iter()
                    .map(|a| (a.guid.clone(), a.clone()))
                    .collect(),
                missing: self.missing.iter().map(|a| g(a)).collect(),
                failed: self
                    .failed
                    .iter()
                    .map(|(a, why)| (g(a), (*why).to_owned()))
                    .collect(),
            }),
            credentials: self.tokens.iter().map(|a| (g(a), document(a))).collect(),
        };
        let listing = |l: &Option<Vec<(&str, ETag)>>| {
            l.as_ref()
                .map(|v| v.iter().map(|(a, e)| (g(a), e.clone())).collect())
        };
        let actual = Actual {
            active: listing(&self.active),
            inactive: listing(&self.inactive),
            credentials: listing(&self.documents),
        };
        plan(&desired, &actual, &model(), scope, limits)
    }

    fn plan(&self) -> Plan {
        self.plan_with(&Scope::All, Limits::default())
    }
}

/// The credentials document of `app` with one token binding.
fn document(app: &str) -> CredentialsDocument {
    CredentialsDocument::for_bindings(
        &g(app),
        vec![BindingAuth {
            binding_id: format!("binding-of-{app}"),
            auth: ScrapeAuth::Token,
            created_at: "2026-12-07T12:00:00.123Z".into(),
        }],
    )
    .expect("a token binding has a document")
}

fn doc_etag(app: &str) -> ETag {
    ETag::of(&document(app).to_bytes())
}

fn stale() -> ETag {
    ETag::of(b"old content")
}

#[track_caller]
fn assert_plan(plan: &Plan, expected: &str) {
    assert_eq!(plan.to_string(), expected, "\n{plan}");
}

#[test]
fn a_bound_started_app_without_a_file_gets_one_in_active() {
    let shop = app(SHOP, "shop", AppState::Started, 2);
    let w = World {
        bound: vec![SHOP],
        apps: vec![shop.clone()],
        ..World::default()
    };
    let plan = w.plan();
    assert_plan(
        &plan,
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         write      active/aaaaaaaa-0000-4000-8000-000000000001.json  (shop: missing)\n",
    );
    assert!(matches!(&plan.actions[0], Action::Write { body: b, .. } if *b == body(&shop)));
}

#[test]
fn an_unchanged_app_plans_nothing() {
    let shop = app(SHOP, "shop", AppState::Started, 2);
    let w = World {
        bound: vec![SHOP],
        active: Some(vec![(SHOP, ETag::of(&body(&shop)))]),
        apps: vec![shop],
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 0 action(s), 0 held back, 0 skipped, 0 orphaned\n",
    );
}

#[test]
fn a_scaled_renamed_or_rerouted_app_is_rewritten() {
    let w = World {
        bound: vec![SHOP],
        apps: vec![app(SHOP, "shop-v2", AppState::Started, 3)],
        active: Some(vec![(SHOP, stale())]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         write      active/aaaaaaaa-0000-4000-8000-000000000001.json  (shop-v2: changed)\n",
    );
}

#[test]
fn a_stopped_app_moves_to_inactive_and_a_started_one_back() {
    let w = World {
        bound: vec![SHOP, API],
        apps: vec![
            app(SHOP, "shop", AppState::Stopped, 2),
            app(API, "api", AppState::Started, 1),
        ],
        active: Some(vec![(SHOP, stale())]),
        inactive: Some(vec![(API, stale())]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 2 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         deactivate active/aaaaaaaa-0000-4000-8000-000000000001.json -> inactive/aaaaaaaa-0000-4000-8000-000000000001.json  (shop: app stopped)\n  \
         activate   inactive/aaaaaaaa-0000-4000-8000-000000000002.json -> active/aaaaaaaa-0000-4000-8000-000000000002.json  (api: app started)\n",
    );
}

#[test]
fn a_stale_copy_in_the_other_state_is_removed() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let w = World {
        bound: vec![SHOP],
        active: Some(vec![(SHOP, ETag::of(&body(&shop)))]),
        inactive: Some(vec![(SHOP, stale())]),
        apps: vec![shop],
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         remove     inactive/aaaaaaaa-0000-4000-8000-000000000001.json  (stale copy)\n",
    );
}

#[test]
fn a_deleted_app_loses_both_files_and_its_bindings_are_orphaned() {
    let w = World {
        bound: vec![GONE],
        missing: vec![GONE],
        active: Some(vec![(GONE, stale())]),
        inactive: Some(vec![(GONE, stale())]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 2 action(s), 0 held back, 0 skipped, 1 orphaned\n  \
         remove     active/aaaaaaaa-0000-4000-8000-000000000003.json  (app deleted)\n  \
         remove     inactive/aaaaaaaa-0000-4000-8000-000000000003.json  (app deleted)\n  \
         orphaned   aaaaaaaa-0000-4000-8000-000000000003\n",
    );
}

#[test]
fn a_file_without_a_binding_is_removed() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let w = World {
        bound: vec![SHOP],
        active: Some(vec![(SHOP, ETag::of(&body(&shop))), (STRAY, stale())]),
        apps: vec![shop],
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         remove     active/aaaaaaaa-0000-4000-8000-000000000004.json  (not bound)\n",
    );
}

#[test]
fn a_database_without_bindings_empties_nothing_unless_allowed() {
    // A new database in front of the original broker's bucket, or a wrong DATABASE_URL.
    let w = World {
        active: Some(vec![(STRAY, stale())]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 0 action(s), 1 held back, 0 skipped, 0 orphaned\n  \
         held back: remove     active/aaaaaaaa-0000-4000-8000-000000000004.json  (not bound)\n",
    );
    let allowed = w.plan_with(
        &Scope::All,
        Limits {
            allow_mass_deletion: true,
            ..Limits::default()
        },
    );
    assert_eq!(allowed.actions.len(), 1, "{allowed}");
    // The fast path too (`desired.bound` is the whole table whatever the scope).
    let scoped = w.plan_with(&Scope::Apps([g(STRAY)].into()), Limits::default());
    assert_eq!(scoped.held_back.len(), 1, "{scoped}");
}

#[test]
fn a_cloud_controller_outage_deletes_and_moves_nothing() {
    let w = World {
        bound: vec![SHOP],
        cc_down: true,
        active: Some(vec![(SHOP, stale()), (STRAY, stale())]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 0 action(s), 0 held back, 1 skipped, 0 orphaned (incomplete reads: nothing deleted)\n  \
         skipped    aaaaaaaa-0000-4000-8000-000000000001  (Cloud Controller read failed)\n",
    );
}

#[test]
fn a_failed_listing_still_writes_what_was_read_but_removes_nothing() {
    let w = World {
        bound: vec![SHOP, GONE],
        apps: vec![app(SHOP, "shop", AppState::Stopped, 1)],
        missing: vec![GONE],
        active: None,
        inactive: Some(vec![(STRAY, stale())]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned (incomplete reads: nothing deleted)\n  \
         write      inactive/aaaaaaaa-0000-4000-8000-000000000001.json  (shop: missing)\n",
    );
}

#[test]
fn a_per_app_failure_skips_only_that_app() {
    let w = World {
        bound: vec![SHOP, API],
        apps: vec![app(API, "api", AppState::Started, 1)],
        failed: vec![(SHOP, "the app's space was not included")],
        active: Some(vec![(SHOP, stale())]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 1 action(s), 0 held back, 1 skipped, 0 orphaned\n  \
         write      active/aaaaaaaa-0000-4000-8000-000000000002.json  (api: missing)\n  \
         skipped    aaaaaaaa-0000-4000-8000-000000000001  (the app's space was not included)\n",
    );
}

fn many_strays(n: usize) -> Vec<(&'static str, ETag)> {
    (0..n)
        .map(|i| {
            let s: &'static str =
                Box::leak(format!("bbbbbbbb-0000-4000-8000-{i:012}").into_boxed_str());
            (s, stale())
        })
        .collect()
}

#[test]
fn mass_deletion_is_held_back_unless_allowed() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let mut active = many_strays(12);
    active.push((SHOP, ETag::of(&body(&shop))));
    let w = World {
        bound: vec![SHOP],
        apps: vec![shop],
        active: Some(active),
        ..World::default()
    };
    let held = w.plan();
    assert!(held.actions.is_empty());
    assert_eq!(held.held_back.len(), 12);
    assert!(
        held.to_string()
            .contains("held back: remove     active/bbbbbbbb-")
    );

    let allowed = w.plan_with(
        &Scope::All,
        Limits {
            allow_mass_deletion: true,
            ..Limits::default()
        },
    );
    assert_eq!(allowed.actions.len(), 12);
    assert!(allowed.held_back.is_empty());
}

#[test]
fn a_few_deletions_or_a_small_share_pass_the_valve() {
    // 10 deletions: not more than 10, however large the share.
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let mut active = many_strays(10);
    active.push((SHOP, ETag::of(&body(&shop))));
    let w = World {
        bound: vec![SHOP],
        apps: vec![shop],
        active: Some(active),
        ..World::default()
    };
    assert_eq!(w.plan().actions.len(), 10);

    // 12 deletions among 40 files: more than 10, but not more than half.
    let mut files = many_strays(40);
    let strays = files.split_off(28);
    let apps: Vec<AppInfo> = files
        .iter()
        .map(|(a, _)| app(a, "x", AppState::Stopped, 1))
        .collect();
    let mut inactive: Vec<(&'static str, ETag)> = files
        .iter()
        .zip(&apps)
        .map(|((a, _), info)| (*a, ETag::of(&body(info))))
        .collect();
    inactive.extend(strays);
    let w = World {
        bound: files.iter().map(|(a, _)| *a).collect(),
        apps,
        inactive: Some(inactive),
        ..World::default()
    };
    let plan = w.plan();
    assert_eq!(plan.actions.len(), 12, "{plan}");
    assert!(plan.held_back.is_empty());
}

#[test]
fn the_fast_path_only_touches_apps_in_scope() {
    let w = World {
        bound: vec![SHOP, API],
        apps: vec![
            app(SHOP, "shop", AppState::Started, 1),
            app(API, "api", AppState::Started, 1),
        ],
        active: Some(vec![(STRAY, stale())]),
        ..World::default()
    };
    let plan = w.plan_with(&Scope::Apps(BTreeSet::from([g(SHOP)])), Limits::default());
    assert_plan(
        &plan,
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         write      active/aaaaaaaa-0000-4000-8000-000000000001.json  (shop: missing)\n",
    );
}

#[test]
fn a_deleted_app_without_files_is_still_reported_orphaned() {
    let w = World {
        bound: vec![GONE],
        missing: vec![GONE],
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 0 action(s), 0 held back, 0 skipped, 1 orphaned\n  \
         orphaned   aaaaaaaa-0000-4000-8000-000000000003\n",
    );
}

#[test]
fn new_binding_parameters_rewrite_an_otherwise_unchanged_file() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let params = BindingParams::from_json(Some(&serde_json::json!({"path": "/internal/metrics"})))
        .expect("valid parameters");
    let desired = Desired {
        bound: [(g(SHOP), params.clone())].into(),
        cc: Some(AppsSnapshot {
            apps: [(g(SHOP), shop.clone())].into(),
            ..AppsSnapshot::default()
        }),
        credentials: BTreeMap::new(),
    };
    let actual = Actual {
        active: Some([(g(SHOP), ETag::of(&body(&shop)))].into()),
        inactive: Some(BTreeMap::new()),
        credentials: Some(BTreeMap::new()),
    };
    let plan = plan(&desired, &actual, &model(), &Scope::All, Limits::default());
    assert_plan(
        &plan,
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         write      active/aaaaaaaa-0000-4000-8000-000000000001.json  (shop: changed)\n",
    );
    let expected = build_target_file(&shop, &model(), &params).to_bytes();
    assert!(matches!(&plan.actions[0], Action::Write { body: b, .. } if *b == expected));
}

#[test]
fn held_back_deletions_still_let_the_writes_through() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let w = World {
        bound: vec![SHOP],
        apps: vec![shop],
        active: Some(many_strays(12)),
        ..World::default()
    };
    let plan = w.plan();
    assert_eq!(plan.held_back.len(), 12);
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].kind(), "write");
    assert!(plan.complete);
}

// Scrape credentials documents (`credentials/<app_guid>.json`).

#[test]
fn a_missing_credentials_document_is_written_before_the_target_file() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let w = World {
        bound: vec![SHOP],
        apps: vec![shop],
        tokens: vec![SHOP],
        ..World::default()
    };
    let plan = w.plan();
    assert_plan(
        &plan,
        "plan: 2 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         write      credentials/aaaaaaaa-0000-4000-8000-000000000001.json  (missing)\n  \
         write      active/aaaaaaaa-0000-4000-8000-000000000001.json  (shop: missing)\n",
    );
    assert!(matches!(
        &plan.actions[0],
        Action::WriteCredentials { body, .. } if *body == document(SHOP).to_bytes()
    ));
    assert_eq!(plan.actions[0].kind(), "write_credentials");
}

#[test]
fn a_stale_credentials_document_is_rewritten_and_a_current_one_left_alone() {
    let w = World {
        bound: vec![SHOP, API],
        apps: vec![
            app(SHOP, "shop", AppState::Started, 1),
            app(API, "api", AppState::Started, 1),
        ],
        active: Some(vec![
            (
                SHOP,
                ETag::of(&body(&app(SHOP, "shop", AppState::Started, 1))),
            ),
            (API, ETag::of(&body(&app(API, "api", AppState::Started, 1)))),
        ]),
        tokens: vec![SHOP, API],
        documents: Some(vec![(SHOP, stale()), (API, doc_etag(API))]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         write      credentials/aaaaaaaa-0000-4000-8000-000000000001.json  (changed)\n",
    );
}

#[test]
fn an_orphan_credentials_document_is_removed_after_the_apps_target_files() {
    let w = World {
        bound: vec![SHOP],
        apps: vec![app(SHOP, "shop", AppState::Started, 1)],
        active: Some(vec![
            (
                SHOP,
                ETag::of(&body(&app(SHOP, "shop", AppState::Started, 1))),
            ),
            (STRAY, stale()),
        ]),
        inactive: Some(vec![(STRAY, stale())]),
        // STRAY: files and a document, no binding; GONE: only a document.
        documents: Some(vec![(STRAY, doc_etag(STRAY)), (GONE, doc_etag(GONE))]),
        ..World::default()
    };
    let plan = w.plan();
    assert_plan(
        &plan,
        "plan: 4 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         remove     credentials/aaaaaaaa-0000-4000-8000-000000000003.json  (not bound)\n  \
         remove     active/aaaaaaaa-0000-4000-8000-000000000004.json  (not bound)\n  \
         remove     inactive/aaaaaaaa-0000-4000-8000-000000000004.json  (not bound)\n  \
         remove     credentials/aaaaaaaa-0000-4000-8000-000000000004.json  (not bound)\n",
    );
    assert_eq!(plan.actions[3].kind(), "remove_credentials");
    assert!(plan.complete);
}

#[test]
fn an_app_whose_bindings_use_no_token_has_no_credentials_document() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    // No document and none wanted: nothing to do.
    let w = World {
        bound: vec![SHOP],
        active: Some(vec![(SHOP, ETag::of(&body(&shop)))]),
        apps: vec![shop],
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 0 action(s), 0 held back, 0 skipped, 0 orphaned\n",
    );
    // A document left by a token binding that is gone: removed, the target file stays.
    let w = World {
        documents: Some(vec![(SHOP, doc_etag(SHOP))]),
        ..w
    };
    assert_plan(
        &w.plan(),
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         remove     credentials/aaaaaaaa-0000-4000-8000-000000000001.json  (no token binding)\n",
    );
}

#[test]
fn a_failed_credentials_listing_writes_the_documents_but_removes_nothing() {
    let w = World {
        bound: vec![SHOP],
        apps: vec![app(SHOP, "shop", AppState::Started, 1)],
        active: Some(vec![
            (
                SHOP,
                ETag::of(&body(&app(SHOP, "shop", AppState::Started, 1))),
            ),
            (STRAY, stale()),
        ]),
        tokens: vec![SHOP],
        documents: None,
        ..World::default()
    };
    let plan = w.plan();
    assert_plan(
        &plan,
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned (incomplete reads: nothing deleted)\n  \
         write      credentials/aaaaaaaa-0000-4000-8000-000000000001.json  (missing)\n",
    );
    assert!(!plan.complete);
}

#[test]
fn a_failed_target_listing_or_cloud_controller_read_removes_no_credentials_document() {
    let base = World {
        bound: vec![SHOP],
        apps: vec![app(SHOP, "shop", AppState::Started, 1)],
        tokens: vec![SHOP],
        documents: Some(vec![(SHOP, doc_etag(SHOP)), (STRAY, doc_etag(STRAY))]),
        ..World::default()
    };
    for w in [
        World {
            active: None,
            ..base.clone()
        },
        World {
            cc_down: true,
            ..base.clone()
        },
    ] {
        let plan = w.plan();
        assert!(
            plan.actions
                .iter()
                .chain(&plan.held_back)
                .all(|a| a.kind().starts_with("write")),
            "{plan}"
        );
        assert!(!plan.complete);
    }
}

#[test]
fn an_empty_database_removes_no_credentials_document_unless_allowed() {
    let w = World {
        documents: Some(vec![(STRAY, doc_etag(STRAY))]),
        ..World::default()
    };
    assert_plan(
        &w.plan(),
        "plan: 0 action(s), 1 held back, 0 skipped, 0 orphaned\n  \
         held back: remove     credentials/aaaaaaaa-0000-4000-8000-000000000004.json  (not bound)\n",
    );
    let allowed = w.plan_with(
        &Scope::All,
        Limits {
            allow_mass_deletion: true,
            ..Limits::default()
        },
    );
    assert_eq!(allowed.actions.len(), 1);
}

#[test]
fn credentials_removals_are_held_back_with_the_target_removals_they_follow() {
    let shop = app(SHOP, "shop", AppState::Started, 1);
    let mut active = many_strays(12);
    let strays: Vec<&'static str> = active.iter().map(|(a, _)| *a).collect();
    active.push((SHOP, ETag::of(&body(&shop))));
    let w = World {
        bound: vec![SHOP],
        apps: vec![shop],
        active: Some(active),
        documents: Some(strays.iter().map(|a| (*a, doc_etag(a))).collect()),
        ..World::default()
    };
    let plan = w.plan();
    assert!(plan.actions.is_empty(), "{plan}");
    assert_eq!(plan.held_back.len(), 24);
    assert_eq!(
        plan.held_back
            .iter()
            .filter(|a| a.kind() == "remove_credentials")
            .count(),
        12
    );
}

#[test]
fn the_fast_path_leaves_credentials_documents_alone() {
    let w = World {
        bound: vec![SHOP],
        apps: vec![app(SHOP, "shop", AppState::Started, 1)],
        tokens: vec![SHOP],
        documents: None,
        ..World::default()
    };
    let plan = w.plan_with(
        &Scope::Apps(BTreeSet::from([g(SHOP), g(STRAY)])),
        Limits::default(),
    );
    assert_plan(
        &plan,
        "plan: 1 action(s), 0 held back, 0 skipped, 0 orphaned\n  \
         write      active/aaaaaaaa-0000-4000-8000-000000000001.json  (shop: missing)\n",
    );
    assert!(plan.complete, "the fast path does not read credentials/");
}
