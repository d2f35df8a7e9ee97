//! A fleet worker that freezes (SIGSTOP: a hung process, or a spot instance gone without a
//! reset) under load: its batch is retried elsewhere after the remote deadline, no client waits
//! for it or gets an error, it leaves the rotation, and the control loop terminates and
//! replaces it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::cloud::local::LocalCloud;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::control::fleet::InstanceState;

use crate::util::ONE_TYPE_CATALOG as CATALOG;

fn pid_of(id: &str) -> u32 {
    // local instance ids are local-<pid>-<port>
    id.split('-')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("local id")
}

/// One `mlp` (batches up to 32, 100 ms SLO, served late rather than refused) on the local cloud
/// (interval 2 s, at most 4 instances) with `extra` flags and `envs` for `mark serve`.
struct MlpFleet {
    g: Gateway,
    admin: String,
    cloud: LocalCloud,
    url: String,
    reference: Arc<Vec<f32>>,
}

impl MlpFleet {
    async fn start(tag: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let repo = repo_with(&[(
            "mlp",
            "max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
        )]);
        let (g, state_dir) =
            start_local_cloud_env(&repo, CATALOG, tag, "2", "4", extra, envs).await;
        let admin = g.admin.clone().unwrap();
        let cloud = LocalCloud::new(
            &state_dir,
            "mark",
            "mlp",
            &mark_bin(),
            &repo,
            Catalog::parse(CATALOG, "c").unwrap(),
        );
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = Arc::new(output_f32(
            &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
            "probs",
        ));
        MlpFleet {
            g,
            admin,
            cloud,
            url,
            reference,
        }
    }

    /// Open-loop load at `rate` for `secs`, every answer checked: (right, lost or wrong).
    fn load(&self, rate: f64, secs: f64) -> tokio::task::JoinHandle<(u64, u64)> {
        let (url, reference) = (self.url.clone(), self.reference.clone());
        tokio::spawn(async move { open_loop(&url, rate, secs, &reference).await })
    }

    /// A fault file with `text`, for `--cloud-faults`.
    fn faults(tag: &str, text: &str) -> String {
        let f = temp_dir(tag).join("faults.toml");
        std::fs::write(&f, text).unwrap();
        f.to_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_nothing_and_is_replaced() {
    within(180, async {
        let repo = repo_with(&[(
            "mlp",
            "max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
        )]);
        let (g, state_dir) = start_local_cloud(&repo, CATALOG, "frozen", "2", "4").await;
        let admin = g.admin.clone().unwrap();
        let cloud = LocalCloud::new(&state_dir, "mark", "mlp", &mark_bin(), &repo, Catalog::parse(CATALOG, "c").unwrap());
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = Arc::new(output_f32(&post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(), "probs"));

        // load until at least two workers run
        let warm = tokio::spawn({
            let (url, reference) = (url.clone(), reference.clone());
            async move { open_loop(&url, 150.0, 10.0, &reference).await }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while cloud.list().iter().filter(|i| i.state == InstanceState::Running).count() < 2 {
            assert!(Instant::now() < deadline, "the fleet never reached 2 running workers");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ok0, bad0) = warm.await.unwrap();
        assert_eq!(bad0, 0, "{ok0} ok");

        // freeze one worker under load
        let load = tokio::spawn({
            let (url, reference) = (url.clone(), reference.clone());
            async move { open_loop(&url, 150.0, 12.0, &reference).await }
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let frozen = cloud
            .list()
            .into_iter()
            .find(|i| i.state == InstanceState::Running)
            .expect("a running worker")
            .id;
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &pid_of(&frozen).to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        let frozen_at = Instant::now();
        let (ok, bad) = load.await.unwrap();
        let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body).to_string();
        let retries = metric(&text, "mark_remote_retries_total{model=\"mlp\"}")
            + metric(&text, "mark_lambda_retries_total{model=\"mlp\"}");
        println!("worker {frozen} frozen under 150 req/s: {ok} answered correctly, {bad} lost or wrong, {retries} batches retried");
        assert_eq!(bad, 0, "no request lost or wrong");
        assert!(retries >= 1.0, "the frozen worker's batch was retried: {text}");

        // out of rotation, then terminated by the control loop (grace: 10 s) and replaced
        let deadline = Instant::now() + Duration::from_secs(40);
        while cloud.list().iter().any(|i| i.id == frozen) {
            assert!(Instant::now() < deadline, "the frozen worker was never terminated");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        println!("frozen worker terminated {:?} after it froze", frozen_at.elapsed());
        let st = admin_status(&admin, "t").await;
        assert!(st["control"]["terminations"].as_u64().unwrap() >= 1, "{st}");
        drop(g);
        for i in cloud.list() {
            let _ = cloud.interrupt(&i.id);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_that_never_boots_is_terminated_counted_and_replaced() {
    within(180, async {
        // the first launch starts a worker that never listens (a broken image); the type boots
        // in 1 s, so its pending deadline is 3 s
        let faults = MlpFleet::faults("never-boots-faults", "boot_failures = 1\n");
        let f = MlpFleet::start("never-boots", &["--cloud-faults", &faults], &[]).await;
        let (g, admin, cloud) = (&f.g, &f.admin, &f.cloud);
        let load = f.load(150.0, 20.0);
        // the broken launch shows up pending, then goes; a worker that serves takes its place
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut broken = None;
        loop {
            let st = admin_status(admin, "t").await;
            let failures = st["control"]["launch_failures"].as_u64().unwrap_or(0);
            let running = cloud
                .list()
                .iter()
                .filter(|i| i.state == InstanceState::Running)
                .count();
            if broken.is_none() {
                broken = cloud
                    .list()
                    .into_iter()
                    .find(|i| i.state == InstanceState::Pending)
                    .map(|i| i.id);
            }
            if failures >= 1 && running >= 1 {
                println!(
                    "launch failures {failures}, {running} running, refusals {}, backed off {}",
                    st["control"]["launch_refusals"], st["control"]["backed_off_types"]
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no failure counted or no replacement: {st}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let broken = broken.expect("the never-booting instance was listed pending");
        assert!(
            !cloud.list().iter().any(|i| i.id == broken),
            "the instance that never booted is terminated"
        );
        let text =
            String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
                .to_string();
        assert!(metric(&text, "mark_fleet_launch_failures") >= 1.0, "{text}");
        let (ok, bad) = load.await.unwrap();
        println!("{ok} answered correctly under the broken launch, {bad} lost or wrong");
        assert_eq!(bad, 0);
        // the gateway's cleanup ends the fleet's workers
        drop(f);
    })
    .await;
}

/// A loopback stand-in for EC2's instance metadata (IMDSv2): `PUT /latest/api/token` hands out a
/// token per worker; once `notice` is set, the first worker that asks gets the spot
/// interruption notice (200 on `/latest/meta-data/spot/instance-action`) and keeps getting it;
/// everything else is 404, and a call without a token 401.
async fn imds(notice: Arc<std::sync::atomic::AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let chosen: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (notice, chosen, next) = (notice.clone(), chosen.clone(), next.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf[n..])).await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(k)) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let first = head.lines().next().unwrap_or_default().to_string();
                let token = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("x-aws-ec2-metadata-token:")
                        .then(|| l[25..].trim().to_string())
                });
                let (status, body) = if first.starts_with("PUT /latest/api/token") {
                    (
                        200,
                        format!(
                            "tok-{}",
                            next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        ),
                    )
                } else if token.is_none() {
                    (401, String::new())
                } else if first.starts_with("GET /latest/meta-data/spot/instance-action")
                    && notice.load(std::sync::atomic::Ordering::Relaxed)
                {
                    let mut c = chosen.lock().unwrap();
                    let t = token.unwrap();
                    if c.is_none() {
                        *c = Some(t.clone());
                    }
                    if c.as_deref() == Some(t.as_str()) {
                        (
                            200,
                            "{\"action\": \"terminate\", \"time\": \"2026-12-06T20:00:00Z\"}"
                                .to_string(),
                        )
                    } else {
                        (404, String::new())
                    }
                } else {
                    (404, String::new())
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// The local instance whose worker says it drains, if one does.
async fn draining_worker(cloud: &LocalCloud) -> Option<(String, String)> {
    for i in cloud.list() {
        if let Ok(r) = get(&format!("http://{}/v2/health/ready", i.addr)).await {
            if r.headers.contains_key("x-mark-draining") {
                return Some((i.id, i.addr));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_notice_under_load_loses_no_request_and_is_replaced_at_once() {
    within(180, async {
        let notice = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let endpoint = imds(notice.clone()).await;
        let envs = [
            ("MARK_IMDS_ENDPOINT", endpoint.as_str()),
            ("MARK_NOTICE_POLL_SECS", "0.5"),
        ];
        let f = MlpFleet::start("spot-notice", &[], &envs).await;
        let (admin, cloud) = (&f.admin, &f.cloud);
        let load = f.load(150.0, 24.0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while cloud
            .list()
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .count()
            < 2
        {
            assert!(
                Instant::now() < deadline,
                "the fleet never reached 2 running workers"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let launches_before = admin_status(admin, "t").await["control"]["launches"]
            .as_u64()
            .unwrap_or(0);
        // the notice: the worker drains; the gateway stops routing to it and plans its replacement
        notice.store(true, std::sync::atomic::Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        let (id, _addr) = loop {
            if let Some(w) = draining_worker(cloud).await {
                break w;
            }
            assert!(Instant::now() < deadline, "no worker drained on the notice");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = admin_status(admin, "t").await;
            if st["control"]["notices"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway never saw the notice: {st}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // the reclaim (shortened from EC2's 2 minutes): the instance dies
        tokio::time::sleep(Duration::from_secs(3)).await;
        cloud.interrupt(&id).unwrap();
        let (ok, bad) = load.await.unwrap();
        let st = admin_status(admin, "t").await;
        let launches = st["control"]["launches"].as_u64().unwrap_or(0);
        println!(
            "spot notice to {id} under 150 req/s: {ok} answered correctly, {bad} lost or wrong; \
             launches {launches_before} -> {launches}, notices {}",
            st["control"]["notices"]
        );
        assert_eq!(
            bad, 0,
            "no request lost or wrong across the notice and the reclaim"
        );
        assert!(
            launches > launches_before,
            "a replacement was launched: {st}"
        );
        // the gateway's cleanup ends the fleet's workers
        drop(f);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_cloud_api_does_not_inflate_demand_or_grow_the_fleet() {
    within(180, async {
        // every cloud call hangs for 12 s from 4 s after the loop starts: the loop's tick is held
        // for 24 windows of 0.5 s; the demand measured meanwhile must be spread over them
        let faults = MlpFleet::faults("stall-faults", "[[stall]]\nat_s = 4\nfor_s = 12\n");
        let f = MlpFleet::start("stall", &["--cloud-faults", &faults], &[]).await;
        let (admin, cloud) = (&f.admin, &f.cloud);
        let rate = 100.0;
        let load = f.load(rate, 26.0);
        let mut peak_fleet = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(25) {
            peak_fleet = peak_fleet.max(cloud.list().len());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (ok, bad) = load.await.unwrap();
        let st = admin_status(admin, "t").await;
        let history: Vec<f64> = st["control"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        let peak = history.iter().copied().fold(0.0, f64::max);
        println!(
            "12 s API stall under {rate} req/s: interval peaks {history:?} (max {peak:.0}), \
             fleet at most {peak_fleet}, launches {}, {ok} answered, {bad} lost",
            st["control"]["launches"]
        );
        assert_eq!(bad, 0);
        // counted in the window the stall ended, 12 s of arrivals would read as 2,400 req/s
        assert!(
            peak <= 2.0 * rate,
            "a peak of {peak} req/s for {rate} offered: {history:?}"
        );
        assert!(
            peak_fleet <= 3,
            "the fleet grew to {peak_fleet} for a load 2 workers carry"
        );
        // the gateway's cleanup ends the fleet's workers
        drop(f);
    })
    .await;
}
