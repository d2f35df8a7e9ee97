//! A fleet worker shared by several gateway replicas says how loaded it is: every answer carries
//! `x-mark-load`, and once its queue would make a new request miss its admission budget it fails
//! readiness and refuses batches with 503 (and the header), so that replicas send them elsewhere.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A batch of `rows` resnet18 images as a binary v2 request.
fn batch(rows: usize) -> (Vec<u8>, usize) {
    let json = format!(
        r#"{{"inputs":[{{"name":"input","shape":[{rows},3,224,224],"datatype":"FP32","parameters":{{"binary_data_size":{}}}}}]}}"#,
        rows * 3 * 224 * 224 * 4
    );
    let mut body = json.clone().into_bytes();
    body.extend(std::iter::repeat_n(0u8, rows * 3 * 224 * 224 * 4));
    (body, json.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saturated_worker_refuses_batches_and_fails_readiness_with_its_load() {
    within(120, async {
        // resnet18 with a 100 ms SLO: a few batches of 8 queued are more than it can start in time
        let repo = repo_with(&[(
            "resnet18",
            "max_batch_size = 8\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
        )]);
        let port = free_port();
        let w = Worker(
            Command::new(mark_bin())
                .current_dir(root())
                .args(["worker", "--listen", &format!("127.0.0.1:{port}"), "--model-repo"])
                .arg(&repo)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn mark worker"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !get(&format!("{base}/v2/health/ready"))
            .await
            .is_ok_and(|r| r.status == 200)
        {
            assert!(Instant::now() < deadline, "worker not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let idle = get(&format!("{base}/v2/health/ready")).await.unwrap();
        assert_eq!(idle.headers["x-mark-load"], "0.000", "an idle worker reports load 0");

        // several replicas' batches at once
        let (body, n) = batch(8);
        let url = format!("{base}/v2/models/resnet18/infer");
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (url, body) = (url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                send(
                    "POST",
                    &url,
                    &[
                        ("content-type", "application/octet-stream".into()),
                        ("inference-header-content-length", n.to_string()),
                    ],
                    body,
                )
                .await
                .expect("answer")
            }));
        }
        // while they queue, readiness fails with the load
        let mut saw_busy_ready = false;
        for _ in 0..40 {
            let r = get(&format!("{base}/v2/health/ready")).await.unwrap();
            let load: f64 = r.headers["x-mark-load"].to_str().unwrap().parse().unwrap();
            if r.status == 503 {
                assert!(load >= 1.0, "503 at load {load}");
                saw_busy_ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            let r = t.await.unwrap();
            let load: f64 = r.headers["x-mark-load"].to_str().unwrap().parse().unwrap();
            match r.status {
                200 => ok += 1,
                503 => {
                    assert!(r.error().contains("saturated"), "{}", r.error());
                    assert!(load >= 1.0, "refused at load {load}");
                    refused += 1;
                }
                s => panic!("status {s}: {}", r.error()),
            }
        }
        println!("12 batches of 8 at once: {ok} run, {refused} refused as saturated; readiness failed while queued: {saw_busy_ready}");
        assert!(ok >= 1 && refused >= 1, "{ok} run, {refused} refused");
        assert!(saw_busy_ready, "readiness never reported saturation");
        // drained: ready again at load 0
        let r = get(&format!("{base}/v2/health/ready")).await.unwrap();
        assert_eq!((r.status, r.headers["x-mark-load"].to_str().unwrap()), (200, "0.000"));
        drop(w);
    })
    .await;
}
