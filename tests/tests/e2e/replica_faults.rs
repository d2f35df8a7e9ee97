//! Replicas where the world is unkind (issue 28): three `mark serve` behind HAProxy on moto's
//! DynamoDB, their wall clocks ±5 s apart, the table throttling (a proxy answering
//! `ThrottlingException`) at start and again mid-run, the leader killed with SIGKILL — never two
//! acting leaders, takeover within 2 leases, the fleet-wide demand within 5% of what the
//! clients sent, no request failed. And two processes started with one `--replica-id`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::replicas::{one_leader, reference, replica_status, Lb, Shared, LEASE_S};
use crate::util::*;

/// Polls every live replica's status every 50 ms until `stop`: the most replicas seen leading
/// in one sweep, and the number of sweeps.
fn watch_leaders(
    admins: Vec<String>,
    alive: Arc<[AtomicBool; 3]>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let (mut most, mut sweeps) = (0, 0);
        while !stop.load(Relaxed) {
            let mut leaders = Vec::new();
            for (i, a) in admins.iter().enumerate() {
                if !alive[i].load(Relaxed) {
                    continue;
                }
                let url = format!("{a}/admin/v1/status");
                let r = send("GET", &url, &[("authorization", "Bearer t".into())], vec![]).await;
                if let Some(r) = r.ok().filter(|r| r.status == 200) {
                    let s = &r.json()["control"]["replica"];
                    if s["leader"] == true {
                        leaders.push((i, s["generation"].clone()));
                    }
                }
            }
            assert!(
                leaders.len() <= 1,
                "two acting leaders at once (replica, lease generation): {leaders:?}"
            );
            most = most.max(leaders.len());
            sweeps += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (most, sweeps)
    })
}

/// Prints each live replica's own count and its fleet-wide counts.
async fn snapshot(when: &str, reps: &[Gateway], alive: &[bool]) {
    let mut line = Vec::new();
    for (i, g) in reps.iter().enumerate().filter(|(i, _)| alive[*i]) {
        let s = replica_status(g).await["replica"].clone();
        line.push(format!(
            "r{i} own {} fleet {} rated {} rate {:.1}",
            s["own_arrived"],
            s["fleet_arrived"],
            s["fleet_rate_arrived"],
            s["fleet_rate"].as_f64().unwrap_or(0.0),
        ));
    }
    println!("{when}: {}", line.join("; "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_under_clock_skew_a_throttled_table_and_a_killed_leader_keep_one_leader() {
    within(300, async {
        let (_moto, moto) = start_moto();
        let sh = Shared::new("replicas-skew", moto).await;
        // the table throttles from the start: serving must not need it
        let table = sh.table();
        table.set(true);
        let ports = [free_port(), free_port(), free_port()];
        let skews = ["-5", "0", "5"];
        let mut reps = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let env = [("MARK_TEST_WALL_SKEW_S", skews[i])];
            reps.push(sh.start_with(&format!("r{i}"), *port, &table.url, &env).ready().await);
        }
        let reference = reference(&reps[0]).await;
        for g in &reps {
            // the status shows the replica from the control loop's first tick
            let t = Instant::now();
            let mut s = replica_status(g).await["replica"].clone();
            while s.is_null() && t.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                s = replica_status(g).await["replica"].clone();
            }
            assert_eq!(s["leader"], false, "a leader without a table: {s}");
            assert_eq!(s["table_reachable"], false);
        }
        println!("three replicas ready and serving while the table throttles ({} calls refused)", table.refused());
        table.set(false);
        let first = one_leader(&reps, &[true; 3], 15.0).await;
        println!("r{first} leads once the table answers");

        let lb = Lb::start(&ports);
        let admins: Vec<String> = reps.iter().map(|g| g.admin.clone().expect("admin")).collect();
        let alive = Arc::new([AtomicBool::new(true), AtomicBool::new(true), AtomicBool::new(true)]);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch_leaders(admins, alive.clone(), stop.clone());
        // two windows for every replica's row to show it alive to every reader
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let infer = format!("{}/v2/models/mlp/infer", lb.url);
        let (url, r) = (infer.clone(), reference.clone());
        let load = tokio::spawn(async move { open_loop(&url, 40.0, 30.0, &r).await });

        // a throttling period of two leases mid-run: the leader stops acting, serving goes on
        tokio::time::sleep(Duration::from_secs(5)).await;
        snapshot("before the throttling", &reps, &[true; 3]).await;
        table.set(true);
        let throttled = Instant::now();
        let mut stopped_acting = None;
        while throttled.elapsed() < Duration::from_secs_f64(2.0 * LEASE_S) {
            let s = replica_status(&reps[first]).await;
            if stopped_acting.is_none() && s["replica"]["leader"] == false {
                stopped_acting = Some(throttled.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stopped_acting = stopped_acting.expect("the leader acted through 2 leases without its table");
        table.set(false);
        let back = one_leader(&reps, &[true; 3], 2.0 * LEASE_S).await;
        println!(
            "table throttled: r{first} stopped acting {stopped_acting:.2} s in (lease {LEASE_S} s); r{back} leads {:.2} s after it answers again",
            throttled.elapsed().as_secs_f64() - 2.0 * LEASE_S
        );
        assert!(stopped_acting <= LEASE_S, "acted {stopped_acting:.2} s without renewing");

        snapshot("after the throttling", &reps, &[true; 3]).await;
        // the leader killed under load
        tokio::time::sleep(Duration::from_secs(4)).await;
        snapshot("before the kill", &reps, &[true; 3]).await;
        let victim = one_leader(&reps, &[true; 3], 1.0).await;
        alive[victim].store(false, Relaxed);
        let victim_arrived = replica_status(&reps[victim]).await["replica"]["own_arrived"]
            .as_u64()
            .unwrap();
        reps[victim].kill9();
        let killed = Instant::now();
        let mut live = [true; 3];
        live[victim] = false;
        let next = one_leader(&reps, &live, 2.0 * LEASE_S + 1.0).await;
        let takeover = killed.elapsed().as_secs_f64();
        println!("r{victim} killed: r{next} leads {takeover:.2} s later (lease {LEASE_S} s)");
        assert!(takeover <= 2.0 * LEASE_S, "takeover took {takeover:.2} s");

        let (ok, bad) = load.await.expect("load");
        tokio::time::sleep(Duration::from_millis(2000)).await;
        snapshot("at the end", &reps, &live).await;
        stop.store(true, Relaxed);
        let (most, sweeps) = watcher.await.expect("watcher");
        assert_eq!(most, 1, "a leader was seen");
        // what the survivors and the killed one counted (its count just before the kill: the
        // few it took since are the ones HAProxy retried elsewhere, counted twice at most)
        let mut sent = victim_arrived;
        let mut launches = Vec::new();
        for (i, g) in reps.iter().enumerate() {
            if i == victim {
                continue;
            }
            let s = replica_status(g).await;
            sent += s["replica"]["own_arrived"].as_u64().unwrap();
            launches.push((i, s["launches"].as_u64().unwrap(), s["replica"]["times_acquired"].as_u64().unwrap()));
        }
        let ls = replica_status(&reps[next]).await["replica"].clone();
        let (fleet, rated) = (
            ls["fleet_arrived"].as_u64().unwrap() as f64,
            ls["fleet_rate_arrived"].as_u64().unwrap() as f64,
        );
        println!(
            "{ok} answered, {bad} failed; clients' items {sent}; the leader counted {fleet} (rate windows {rated}); {sweeps} status sweeps, never two leaders; launches (replica, launches, times it led) {launches:?}"
        );
        assert_eq!(bad, 0, "a request failed");
        let sent = sent as f64;
        assert!((fleet - sent).abs() <= 0.05 * sent, "fleet-wide count {fleet} vs {sent} sent");
        assert!((rated - sent).abs() <= 0.05 * sent, "rate-window demand {rated} vs {sent} sent");
        // a replica that never led never launched
        for (i, n, led) in launches {
            if led == 0 {
                assert_eq!(n, 0, "r{i} launched without ever leading");
            }
        }
        drop(lb);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_process_with_a_duplicate_replica_id_exits_with_a_clear_error() {
    within(120, async {
        let (_moto, moto) = start_moto();
        let sh = Shared::new("replicas-dup", moto).await;
        let (p1, p2) = (free_port(), free_port());
        let first = sh
            .start_with("same", p1, &sh.table().url, &[])
            .ready()
            .await;
        one_leader(std::slice::from_ref(&first), &[true], 15.0).await;
        // one launch template, one id: the second process must not pass its counts off as the
        // first's (each write would add the other's whole count as new demand)
        let mut second = sh
            .start_with("same", p2, &sh.table().url, &[])
            .ready()
            .await;
        let t = Instant::now();
        let status = loop {
            if let Some(st) = second.exited() {
                break st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the duplicate still runs; log:\n{}",
                std::fs::read_to_string(&second.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let log = std::fs::read_to_string(&second.log).unwrap_or_default();
        println!(
            "the duplicate exited after {:.1} s with {status}",
            t.elapsed().as_secs_f64()
        );
        assert!(!status.success());
        assert!(
            log.contains("--replica-id same") && log.contains("share this id"),
            "no clear error in:\n{log}"
        );
        // the first goes on leading, counting only its own clients
        let reference = reference(&first).await;
        let (ok, bad) = open_loop(
            &format!("{}/v2/models/mlp/infer", first.base),
            20.0,
            2.0,
            &reference,
        )
        .await;
        assert_eq!(bad, 0);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let s = replica_status(&first).await["replica"].clone();
        assert_eq!(s["leader"], true);
        let own = s["own_arrived"].as_u64().unwrap();
        let fleet = s["fleet_arrived"].as_u64().unwrap();
        println!("first replica: own {own}, fleet {fleet} ({ok} sent by the test)");
        assert!(
            fleet <= own,
            "the fleet count {fleet} above the only replica's own {own}"
        );
    })
    .await;
}
