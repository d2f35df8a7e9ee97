//! Start-up failures of the binary: exit codes and messages.

use crate::util::*;
use std::process::Command;

#[test]
fn bad_model_config_exits_64_naming_the_file() {
    let repo = repo_with(&[("mlp", "max_batch_size = 4097\n")]);
    let out = Command::new(mark_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--model-repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mlp/config.toml") && err.contains("max_batch_size"),
        "{err}"
    );
}

#[test]
fn missing_onnxruntime_library_says_how_to_install() {
    let repo = repo_with(&[("mlp", "")]);
    let out = Command::new(mark_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ort-lib",
            "/nonexistent/libonnxruntime.so",
            "--model-repo",
        ])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/libonnxruntime.so"));
}

/// A CPU type whose catalog entry the test fills with what `mark profile` prints.
const CPU_TYPE: &str = "[[instance]]\nname = \"c7i.large\"\nvcpus = 2\nmemory_gib = 4\nprice_on_demand = 0.089\nlaunch_seconds = 60\n";

#[test]
fn profile_prints_a_catalog_entry_that_loads() {
    let repo = repo_with(&[("mlp", "max_batch_size = 4\n")]);
    let out = Command::new(mark_bin())
        .args(["profile", "--batch-sizes", "1,2,4", "--reps", "5"])
        .args(["--catalog-entry", "c7i.large", "--model-repo"])
        .arg(&repo)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = &text[text.find("# paste after").expect("an entry")..];
    let dir = temp_dir("catalog");
    let path = dir.join("catalog.toml");
    std::fs::write(&path, format!("{CPU_TYPE}{entry}")).unwrap();
    let c = mark_gateway::control::catalog::Catalog::load(&path).expect("the pasted entry loads");
    let p = c
        .profile_of("c7i.large", "mlp")
        .expect("the type's own profile");
    assert_eq!(
        p.points.iter().map(|x| x.batch).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(p.measured_on, "c7i.large");
}

#[test]
fn a_catalog_with_a_falling_profile_exits_64_naming_type_and_model() {
    let dir = temp_dir("badcat");
    std::fs::write(
        dir.join("p.toml"),
        "points = [{ batch = 1, p50_us = 9000.0, p99_us = 9500.0 }, { batch = 8, p50_us = 3000.0, p99_us = 3500.0 }]\n",
    )
    .unwrap();
    let path = dir.join("catalog.toml");
    std::fs::write(
        &path,
        format!("{CPU_TYPE}profile = {{ resnet18 = \"p.toml\" }}\n"),
    )
    .unwrap();
    let out = Command::new(mark_bin())
        .args([
            "simulate",
            "--workload",
            "stress:10:60",
            "--quiet",
            "--catalog",
        ])
        .arg(&path)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("catalog.toml")
            && err.contains("c7i.large: profile of resnet18")
            && err.contains("latency falls from batch 1 to batch 8"),
        "{err}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let repo = repo_with(&[("mlp", "max_batch_size = 2\n")]);
    let out = Command::new(mark_bin())
        .args([
            "--log-format",
            "json",
            "profile",
            "--batch-sizes",
            "1",
            "--reps",
            "2",
        ])
        .arg("--model-repo")
        .arg(&repo)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["fields"]["message"] == "loaded ONNX Runtime"
            && l["fields"]["path"].is_string()),
        "{err}"
    );
    // progress: one line per batch size profiled
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "profiled a batch size"
                && l["fields"]["batch"] == 1
                && l["fields"]["of"] == 1),
        "{err}"
    );
    // an unknown format is a usage error

    let out = Command::new(mark_bin())
        .args(["--log-format", "yaml", "profile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("yaml"));
}

/// `--log-requests`: one line per inference request, REST and gRPC alike; none without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_requests_writes_one_line_per_request() {
    within(120, async {
        let repo = repo_with(&[("mlp", "max_batch_size = 4\n")]);
        let repo = repo.to_str().unwrap();
        for (flag, want) in [(Some("--log-requests"), 2), (None, 0)] {
            let mut args = vec!["--model-repo", repo];
            args.extend(flag);
            let g = Gateway::start_env(&args, &[("MARK_LOG_FORMAT", "json")])
                .ready()
                .await;
            let url = format!("{}/v2/models/mlp/infer", g.base);
            assert_eq!(
                post_json(&url, &mlp_request(&[mlp_row(1)])).await.status,
                200
            );
            assert_eq!(
                post_json(
                    &format!("{}/v2/models/nosuch/infer", g.base),
                    &mlp_request(&[mlp_row(1)])
                )
                .await
                .status,
                404
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let log = std::fs::read_to_string(&g.log).unwrap();
            let lines: Vec<serde_json::Value> = log
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|l: &serde_json::Value| l["fields"]["message"] == "request")
                .collect();
            assert_eq!(lines.len(), want, "{log}");
            if want > 0 {
                assert_eq!(lines[0]["fields"]["status"], 200);
                assert_eq!(lines[0]["fields"]["protocol"], "rest");
                assert!(lines[0]["fields"]["ms"].as_f64().is_some());
                assert_eq!(lines[1]["fields"]["status"], 404);
                assert!(lines[1]["fields"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("unknown model"));
            }
        }
    })
    .await;
}

#[test]
fn a_short_admin_token_is_refused_off_loopback() {
    let repo = repo_with(&[("mlp", "max_batch_size = 4\n")]);
    let out = Command::new(mark_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .args(["--model-repo"])
        .arg(&repo)
        .env("MARK_ADMIN_TOKEN", "secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16"), "{err}");
}

/// Issue 29: the admin token from a file (`--admin-token-file`), not the command line; the file
/// and a token together are refused, and so is an empty file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_comes_from_a_file() {
    within(60, async {
        let repo = repo_with(&[("mlp", "max_batch_size = 4\n")]);
        let dir = temp_dir("admin-token-file");
        let file = dir.join("admin-token");
        std::fs::write(&file, "a-long-admin-token-from-a-file\n").unwrap();
        // `mark serve` with a token file, refused at start: its exit code and message
        let refused = |token_file: &std::path::Path, env_token: Option<&str>| {
            let mut c = Command::new(mark_bin());
            c.args(["serve", "--listen", "127.0.0.1:0", "--no-grpc"])
                .arg("--admin-token-file")
                .arg(token_file)
                .arg("--model-repo")
                .arg(&repo)
                .env_remove("MARK_ADMIN_TOKEN");
            if let Some(t) = env_token {
                c.env("MARK_ADMIN_TOKEN", t);
            }
            let o = c.output().unwrap();
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).to_string(),
            )
        };
        let (code, err) = refused(&file, Some("another-long-admin-token"));
        assert_eq!(code, Some(64));
        assert!(err.contains("give one"), "{err}");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let (code, err) = refused(&empty, None);
        assert_eq!(code, Some(64));
        assert!(err.contains("--admin-token-file"), "{err}");
        let g = Gateway::start(&[
            "--model-repo",
            repo.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token-file",
            file.to_str().unwrap(),
        ])
        .ready()
        .await;
        let admin = g.admin.clone().expect("an admin listener");
        let st = admin_status(&admin, "a-long-admin-token-from-a-file").await;
        assert!(st.is_object(), "the file's token authorizes: {st}");
        let r = send(
            "GET",
            &format!("{admin}/admin/v1/status"),
            &[("authorization", "Bearer wrong".to_string())],
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 401);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_flags_from_a_config_file_that_flags_and_the_environment_override() {
    within(120, async {
        let repo = repo_with(&[("mlp", "max_batch_size = 8\n")]);
        let dir = temp_dir("config-file");
        // the printed default file is a valid config as it is (every key commented out)
        let out = Command::new(mark_bin())
            .args(["config", "print-default"])
            .output()
            .expect("mark config print-default");
        assert!(out.status.success());
        let default = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(default.contains("# max_body_bytes = 67108864"), "{default}");
        let (p1, p2) = (free_port(), free_port());
        let file = dir.join("mark.toml");
        std::fs::write(
            &file,
            format!(
                "{default}\nmodel_repo = \"{}\"\nlisten = \"127.0.0.1:{p1}\"\nno_grpc = true\nmax_body_bytes = 2048\n[admin]\nadmin_listen = \"127.0.0.1:0\"\n",
                repo.display()
            ),
        )
        .unwrap();
        // the file alone: its address, its body limit
        let mut child = Command::new(mark_bin())
            .args(["serve", "--config", file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mark serve --config");
        wait_for_port(p1, || "no listener on the file's address".into());
        let base = format!("http://127.0.0.1:{p1}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while get(&format!("{base}/v2/health/ready"))
            .await
            .map_or(true, |r| r.status != 200)
        {
            assert!(std::time::Instant::now() < deadline, "not ready");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let big = vec![b' '; 4096];
        let r = send("POST", &format!("{base}/v2/models/mlp/infer"), &[], big)
            .await
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(r.status, 413, "the file's max_body_bytes");
        // a flag wins over the file
        let g = Gateway::start(&[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{p2}"),
        ])
        .ready()
        .await;
        assert_eq!(g.addr.port(), p2);
        drop(g);
        // MARK_CONFIG names the file too; a secret, an unknown key and a bad value exit 64 by name
        for (text, want) in [
            ("admin_token = \"hunter2\"\n", "key `admin_token`"),
            ("lisen = \"127.0.0.1:1\"\n", "unknown key `lisen`"),
            ("max_connections = \"many\"\n", "key `max_connections`"),
        ] {
            std::fs::write(&file, text).unwrap();
            let out = Command::new(mark_bin())
                .args(["serve"])
                .env("MARK_CONFIG", &file)
                .output()
                .expect("mark serve");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{text}: {err}");
            assert!(err.contains(want) && err.contains("mark.toml"), "{text}: {err}");
        }
    })
    .await;
}
