//! Several brokers on one database: concurrent binds and unbinds of the same app must end
//! with the app's file existing exactly when a binding of the app exists.

use std::sync::Arc;

use gds_store::TargetState;
use gds_targets::AppGuid;
use reqwest::StatusCode;
use serde_json::Value;

use super::support::*;
use crate::harness::Running;

on_both_databases!(parallel_binds_and_unbinds_of_one_app_on_two_brokers_keep_the_file_iff_bound);

/// One operation of a round.
#[derive(Clone, Copy, Debug)]
enum Op {
    Bind(usize),
    Unbind(usize),
}

async fn check_invariant(f: &Fixture, round: &str) -> usize {
    let db = f.db().await;
    let bound = db
        .bindings_of_app(&AppGuid::parse(WEB_SHOP).unwrap())
        .await
        .unwrap()
        .len();
    let active = f.file(TargetState::Active, WEB_SHOP).await.is_some();
    let inactive = f.file(TargetState::Inactive, WEB_SHOP).await.is_some();
    assert!(
        !inactive,
        "{round}: web-shop is started, yet has an inactive file"
    );
    assert_eq!(
        active,
        bound > 0,
        "{round}: the file exists = {active}, but the app has {bound} binding(s)"
    );
    db.close().await;
    bound
}

async fn parallel_binds_and_unbinds_of_one_app_on_two_brokers_keep_the_file_iff_bound(
    db: Database,
) {
    let f = Arc::new(Fixture::start(db).await);
    let brokers: [Arc<Running>; 2] = [Arc::new(f.another_broker()), Arc::new(f.another_broker())];
    for instance in ["si-1", "si-2"] {
        assert_eq!(f.provision(instance).await.0, StatusCode::CREATED);
    }
    // Each round unbinds every binding the app has while binding new ones (sometimes
    // none, so that rounds end both bound and unbound), all at once over both brokers:
    // the windows where an unbind removes the files of what it believes is the app's
    // last binding while a bind writes them, or where two unbinds each believe the other
    // binding remains. The first and last rounds are larger free-for-alls.
    let mut next_id = 0;
    let mut bound: Vec<usize> = Vec::new();
    let mut ended_bound = false;
    let mut ended_unbound = false;
    for round in 0..24 {
        let new_bindings = match round {
            0 => 12,
            23 => 0,
            r if r % 4 == 3 => 0,
            r => 1 + r % 2,
        };
        let mut ops: Vec<Op> = bound.iter().map(|&i| Op::Unbind(i)).collect();
        for k in 0..new_bindings {
            // Interleave: binds between the unbinds.
            let at = (k * 2 + 1).min(ops.len());
            ops.insert(at, Op::Bind(next_id));
            next_id += 1;
        }
        if round == 23 {
            // Unbind everything ever bound, twice over, racing itself.
            ops = (0..next_id)
                .flat_map(|i| [Op::Unbind(i), Op::Unbind(i)])
                .collect();
        }
        let mut tasks = Vec::new();
        for (k, op) in ops.iter().copied().enumerate() {
            let f = f.clone();
            let broker = brokers[k % 2].clone();
            tasks.push(tokio::spawn(async move {
                let instance = |i: usize| if i.is_multiple_of(2) { "si-1" } else { "si-2" };
                let (status, body) = match op {
                    Op::Bind(i) => {
                        f.bind_at(
                            &broker,
                            instance(i),
                            &format!("b-{i}"),
                            WEB_SHOP,
                            Value::Null,
                        )
                        .await
                    }
                    Op::Unbind(i) => f.unbind_at(&broker, instance(i), &format!("b-{i}")).await,
                };
                let expected: &[StatusCode] = match op {
                    Op::Bind(_) => &[StatusCode::CREATED, StatusCode::OK],
                    Op::Unbind(_) => &[StatusCode::OK, StatusCode::GONE],
                };
                assert!(expected.contains(&status), "{op:?}: {status} {body}");
            }));
        }
        for task in tasks {
            task.await.expect("an operation panicked");
        }
        let name = format!("round {round} ({} operations)", ops.len());
        let left = check_invariant(&f, &name).await;
        ended_bound |= left > 0;
        ended_unbound |= left == 0;
        let db = f.db().await;
        bound = db
            .bindings_of_app(&AppGuid::parse(WEB_SHOP).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.binding_id[2..].parse().expect("b-N"))
            .collect();
        db.close().await;
    }
    assert!(
        ended_bound && ended_unbound,
        "both end states were exercised"
    );
}
