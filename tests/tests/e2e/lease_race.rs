//! The controller lease rests on DynamoDB's conditional writes being atomic: of two takeovers
//! conditional on the same version of the record, one applies. moto's server runs each call on
//! a thread and checks a condition apart from applying the update, so both can apply — which a
//! three-replica test once read as "two acting leaders at once". The replica tests reach moto
//! through `util::throttle`'s proxy, which forwards one call at a time; here, two replicas'
//! stores race for the record through it, round after round, and exactly one wins each round.

use std::time::{SystemTime, UNIX_EPOCH};

use mark_gateway::lease::{CallError, Record, Write, Writer};
use mark_gateway::replica::store::{Store, StoreOptions};

use crate::util::throttle::throttle_proxy;
use crate::util::*;

const ROUNDS: u64 = 150;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Rounds of two concurrent takeovers of the record as each store last read it: how many
/// rounds both applied. When `strict`, a round where neither did fails the test, as does one
/// where a single takeover answered and the generation did not go up by exactly one, or more
/// than 5 takeovers failed without an answer (a timeout: it may have applied).
async fn race(a: &Store, b: &Store, tag: &str, strict: bool) -> u64 {
    let (mut both, mut unanswered) = (0, 0);
    let generation = |r: &Option<Record>| r.as_ref().map_or(0, |r| r.version.generation);
    for round in 0..ROUNDS {
        // a new process each round: a takeover applies only over the version it read
        let who = |id: &str| Writer {
            id: id.into(),
            incarnation: format!("{id}/{tag}{round}"),
            lease_ms: 3000,
        };
        let (wa, wb) = (who("a"), who("b"));
        let before = a.read().await.expect("read the record");
        let seen = before.as_ref().map(|r| r.version);
        let now = wall_ms();
        let (ra, rb) = tokio::join!(
            a.write(&wa, Write::Acquire(seen), now),
            b.write(&wb, Write::Acquire(seen), now)
        );
        if !strict {
            both += u64::from(ra.is_ok() && rb.is_ok());
            continue;
        }
        let lost = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(CallError::Failed(_))))
            .count();
        match (ra.is_ok(), rb.is_ok()) {
            (true, true) => both += 1,
            (false, false) if lost == 0 => panic!("round {round}: neither takeover applied"),
            (false, false) => unanswered += lost,
            _ => {
                unanswered += lost;
                let after = a.read().await.expect("read the record");
                assert_eq!(
                    generation(&after),
                    generation(&before) + 1,
                    "round {round}: one takeover answered, the generation moved otherwise"
                );
            }
        }
    }
    assert!(
        unanswered <= 5,
        "{unanswered} takeovers failed without an answer (timeouts through the proxy)"
    );
    both
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_takeovers_of_one_version_through_the_table_proxy_have_one_winner() {
    within(240, async {
        let (_moto, moto) = start_moto();
        let proxy = throttle_proxy(&moto, false).await;
        let opts = |endpoint: &str, fleet: &str| StoreOptions {
            table: "mark-lease-race".into(),
            region: "us-east-1".into(),
            endpoint: Some(endpoint.to_string()),
            fleet: fleet.into(),
            // static credentials: nothing is read from (or written to) the environment
            credentials: Some(("testing".into(), "testing".into())),
        };
        let store = |o: StoreOptions| async move { Store::connect(&o).await };
        let (a, b) = (
            store(opts(&proxy.url, "proxied")).await,
            store(opts(&proxy.url, "proxied")).await,
        );
        a.ensure_table().await.expect("create the table");
        // moto alone, for the record (how often is up to its threads: printed, not asserted)
        let (da, db) = (
            store(opts(&moto, "direct")).await,
            store(opts(&moto, "direct")).await,
        );
        let direct_both = race(&da, &db, "d", false).await;
        let both = race(&a, &b, "p", true).await;
        println!(
            "{ROUNDS} rounds of two concurrent takeovers: straight to moto both applied in {direct_both}; through the proxy in {both}"
        );
        assert_eq!(both, 0, "two takeovers of one version both applied");
    })
    .await;
}
