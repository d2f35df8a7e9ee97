//! Model repositories in object storage (issue 30), on moto's S3 started here: `mark repo push`
//! writes a repository; `mark serve --model-repo s3://...` fetches and verifies it and answers as
//! the local repository does; a second push reaches a new process while the first goes on with
//! its version; a corrupted object is refused by name — the last verified version serves, and
//! with none the process exits with the reason.

use std::process::Command;
use std::time::Duration;

use crate::util::*;

const CFG: &str = "max_batch_size = 8\nslo_ms = 200\nexecutors = 1\nintra_threads = 1\n";

fn push(dir: &std::path::Path, url: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(mark_bin())
        .args(["repo", "push", dir.to_str().unwrap(), url])
        .envs(env.iter().copied())
        .output()
        .expect("mark repo push");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "push failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn answer(g: &Gateway, model: &str, seed: u32) -> Vec<f32> {
    let r = post_json(
        &format!("{}/v2/models/{model}/infer", g.base),
        &mlp_request(&[mlp_row(seed)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.error());
    output_f32(&r.json(), "probs")
}

async fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = mark_gateway::aws_sdk::sdk_config(
        "us-east-1",
        Some(endpoint),
        Some(&("testing".to_string(), "testing".to_string())),
        1,
    )
    .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_in_s3_is_served_verified_updated_by_a_push_and_a_corrupted_object_refused() {
    within(240, async {
        let (_moto, moto) = start_moto();
        let url = "s3://mark-models/prod";
        let env = [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("MARK_S3_ENDPOINT", moto.as_str()),
        ];
        let v1 = repo_with(&[("mlp", CFG)]);
        let said = push(&v1, url, &env);
        println!("{}", said.trim());
        assert!(said.contains("version"), "{said}");

        // a gateway on the local repository, and one on the pushed copy
        let local = Gateway::start(&["--model-repo", v1.to_str().unwrap(), "--no-grpc"])
            .ready()
            .await;
        let cache = temp_dir("repo-cache");
        let mut env_a: Vec<(&str, &str)> = env.to_vec();
        env_a.push(("MARK_REPO_CACHE", cache.to_str().unwrap()));
        let a = Gateway::start_env(&["--model-repo", url, "--no-grpc"], &env_a)
            .ready()
            .await;
        for seed in [1, 7, 9] {
            assert_eq!(
                answer(&a, "mlp", seed).await,
                answer(&local, "mlp", seed).await
            );
        }

        // a second push (one more model): a new process serves it, the first keeps its version
        let v2 = rows::repo_aliased(&[("mlp", "mlp", CFG), ("mlp-b", "mlp", CFG)]);
        let said2 = push(&v2, url, &env);
        println!("{}", said2.trim());
        assert!(
            said2.contains("1 uploaded") || said2.contains("uploaded"),
            "{said2}"
        );
        let b = Gateway::start_env(&["--model-repo", url, "--no-grpc"], &env_a)
            .ready()
            .await;
        assert_eq!(answer(&b, "mlp-b", 3).await, answer(&local, "mlp", 3).await);
        let r = get(&format!("{}/v2/models/mlp-b/ready", a.base))
            .await
            .unwrap();
        assert_eq!(
            r.status, 404,
            "the first process serves the version it fetched"
        );

        // a third push whose new object is then corrupted in the bucket
        let v3 = rows::repo_aliased(&[
            ("mlp", "mlp", CFG),
            (
                "mlp-b",
                "mlp",
                "max_batch_size = 4\nslo_ms = 250\nexecutors = 1\nintra_threads = 1\n",
            ),
        ]);
        push(&v3, url, &env);
        let client = s3(&moto).await;
        let manifest = client
            .get_object()
            .bucket("mark-models")
            .key("prod/manifest.json")
            .send()
            .await
            .expect("manifest");
        let bytes = manifest.body.collect().await.expect("body").into_bytes();
        let m: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let sha = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == "mlp-b/config.toml")
            .expect("entry")["sha256"]
            .as_str()
            .unwrap()
            .to_string();
        client
            .put_object()
            .bucket("mark-models")
            .key(format!("prod/objects/{sha}"))
            .body(b"max_batch_size = 4096\n".to_vec().into())
            .send()
            .await
            .expect("corrupt the object");
        // with the warm cache: refused, and the last verified version (v2) serves
        let c = Gateway::start_env(&["--model-repo", url, "--no-grpc"], &env_a)
            .ready()
            .await;
        assert_eq!(answer(&c, "mlp-b", 5).await, answer(&local, "mlp", 5).await);
        let log = std::fs::read_to_string(&c.log).unwrap_or_default();
        assert!(
            log.contains(&format!("objects/{sha}")) && log.contains("refused"),
            "no clear error in:\n{log}"
        );
        // with an empty cache: nothing verified to serve, the process exits with the reason
        let empty = temp_dir("repo-cache-empty");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(mark_bin())
                .args([
                    "serve",
                    "--model-repo",
                    url,
                    "--no-grpc",
                    "--listen",
                    "127.0.0.1:0",
                ])
                .envs(env.iter().copied())
                .env("MARK_REPO_CACHE", &empty)
                .output(),
        )
        .await
        .expect("exits within a minute")
        .expect("mark serve");
        let err = String::from_utf8_lossy(&out.stderr);
        println!(
            "empty cache: exit {:?}: {}",
            out.status.code(),
            err.lines().last().unwrap_or_default()
        );
        assert_eq!(out.status.code(), Some(69));
        assert!(
            err.contains("refused") && err.contains("no verified version"),
            "{err}"
        );
    })
    .await;
}
