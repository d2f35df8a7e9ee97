//! Issue 30's path from a laptop to an AWS account, on moto's server (S3, IAM, Lambda, EC2
//! launch templates, DynamoDB) started here: `mark repo push`, `mark deploy --config` (a dry run
//! that changes nothing, a run that creates everything, a run that finds everything unchanged),
//! then a worker booted from the launch template's own user data as a local process (it fetches
//! `mark` and `libonnxruntime.so` from moto's S3 with the stock AWS CLI, checks their digests,
//! fetches and verifies the models, and answers as the local repository does); a second push
//! reaches the next worker with no new template; a corrupted runtime object is refused by its
//! digest. And `mark package lambda`: the zip runs as the function under `cargo lambda watch`,
//! and an unstripped binary is refused before anything is read.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const CFG: &str = "max_batch_size = 8\nslo_ms = 200\nexecutors = 1\nintra_threads = 1\n";
const URL: &str = "s3://mark-deploy/prod";

fn aws_env(moto: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("MARK_S3_ENDPOINT", moto),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs `mark ARGS` to its end (at most 5 minutes): exit code, stdout, stderr.
fn mark(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(mark_bin());
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    bounded(cmd, &format!("mark {args:?}"))
}

/// Runs `cmd` to its end, killed past 5 minutes: exit code, stdout, stderr.
fn bounded(mut cmd: Command, what: &str) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} ran past 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn mark_ok(args: &[&str], env: &[(String, String)]) -> String {
    let (code, out, err) = mark(args, env);
    assert_eq!(code, Some(0), "mark {args:?}:\n{out}\n{err}");
    out
}

/// Runs Python (the project's venv: boto3, the stock SDK) with `code` against moto.
fn python(code: &str, moto: &str) -> String {
    let mut cmd = Command::new(root().join(".mark/venv/bin/python"));
    cmd.args(["-c", code]).env("MOTO", moto).envs(aws_env(moto));
    let (code, out, err) = bounded(cmd, "python");
    assert_eq!(code, Some(0), "python failed: {err}");
    out
}

const BOTO: &str = "import boto3, json, base64, os, sys\n\
kw = dict(endpoint_url=os.environ['MOTO'], region_name='us-east-1')\n";

/// The release binary stripped of its symbols (a smaller zip; a faster boot).
fn shipped_mark(dir: &Path) -> PathBuf {
    let out = dir.join("mark.ship");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(mark_bin())
        .status()
        .expect("strip (binutils)");
    assert!(st.success());
    out
}

/// Kills the process on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots a worker from the user data `script` in `home`, listening on `port`.
fn boot(script: &Path, home: &Path, port: u16, moto: &str) -> (Proc, PathBuf) {
    let log = home.with_extension("log");
    let path = format!(
        "{}:{}",
        root().join(".mark/venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new("bash")
        .arg(script)
        .envs(aws_env(moto))
        .env("PATH", path)
        .env("AWS_ENDPOINT_URL", moto)
        .env("MARK_HOME", home)
        .env("MARK_LISTEN", format!("127.0.0.1:{port}"))
        .env("MARK_IMDS_ENDPOINT", "")
        .env("MARK_FOREGROUND", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("bash");
    (Proc(child), log)
}

async fn ready(base: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = get(&format!("{base}/v2/health/ready")).await {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the worker never became ready:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn answer(base: &str, model: &str, seed: u32) -> Vec<f32> {
    let r = post_json(
        &format!("{base}/v2/models/{model}/infer"),
        &mlp_request(&[mlp_row(seed)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.error());
    output_f32(&r.json(), "probs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_deploy_and_a_worker_booted_from_the_launch_templates_user_data_on_moto() {
    within(600, async {
        let (_moto, moto) = start_moto();
        let env = aws_env(&moto);
        let dir = temp_dir("deploy");
        let ship = shipped_mark(&dir);
        let role = python(
            &format!(
                "{BOTO}r = boto3.client('iam', **kw).create_role(RoleName='mark-spill', \
                 AssumeRolePolicyDocument=json.dumps({{'Version': '2012-10-17', 'Statement': []}}))\n\
                 print(r['Role']['Arn'])"
            ),
            &moto,
        );
        let v1 = repo_with(&[("mlp", CFG)]);
        println!(
            "{}",
            mark_ok(&["repo", "push", v1.to_str().unwrap(), URL], &env).trim()
        );
        let config = dir.join("mark.toml");
        std::fs::write(
            &config,
            format!(
                "model_repo = \"{URL}\"\n[control]\ncloud = \"ec2\"\nfleet = \"deploy-e2e\"\n\
                 catalog = \"{catalog}\"\nec2_endpoint = \"{moto}\"\n\
                 lambda_function = \"deploy-e2e-spill\"\nlambda_endpoint = \"{moto}\"\n\
                 lease_table = \"deploy-e2e-lease\"\nlease_endpoint = \"{moto}\"\n\
                 [deploy]\nlambda_role = \"{role}\"\nimage_id = \"ami-0123456789abcdef0\"\n\
                 instance_profile = \"mark-worker\"\nsecurity_groups = [\"sg-0a1b2c3d\"]\n\
                 mark_binary = \"{ship}\"\n",
                catalog = root().join("examples/catalog-us-east-1.toml").display(),
                role = role.trim(),
                ship = ship.display(),
            ),
        )
        .unwrap();
        let cfg = config.to_str().unwrap();

        // a dry run reads and says what it would do, and changes nothing
        let dry = mark_ok(&["deploy", "--config", cfg, "--dry-run"], &env);
        println!("--- mark deploy --dry-run\n{dry}");
        for line in [
            "runtime: mark s3://mark-deploy/prod/runtime/",
            "would upload",
            "launch template deploy-e2e-workers: would be created",
            "lambda deploy-e2e-spill: would be created (provided.al2023, x86_64, 2048 MB, 30 s",
            "lambda deploy-e2e-spill: reserved concurrency would be 1000",
            "lease table deploy-e2e-lease: would be created",
            "IAM policy for the gateway's role",
        ] {
            assert!(dry.contains(line), "{line:?} missing from:\n{dry}");
        }

        // the real run creates everything (so the dry run had created nothing)
        let first = mark_ok(&["deploy", "--config", cfg], &env);
        println!("--- mark deploy\n{first}");
        for line in [
            " MiB): uploaded",
            "uploaded",
            "launch template deploy-e2e-workers: created, version 1",
            "lambda deploy-e2e-spill: created (provided.al2023",
            "lambda deploy-e2e-spill: reserved concurrency 1000",
            "lease table deploy-e2e-lease: created",
            "ec2_launch_template = \"deploy-e2e-workers\"; ec2_template_user_data = true",
        ] {
            assert!(first.contains(line), "{line:?} missing from:\n{first}");
        }

        // a second run finds everything as it wants it
        let again = mark_ok(&["deploy", "--config", cfg], &env);
        println!("--- mark deploy (again)\n{again}");
        for word in ["uploaded", "created", "updated", "would"] {
            assert!(
                !again.lines().any(|l| !l.contains("IAM") && l.contains(word)),
                "{word:?} in a run that should change nothing:\n{again}"
            );
        }
        assert!(again.contains("launch template deploy-e2e-workers: version 1 unchanged"));
        assert!(again.contains("configuration unchanged") && again.contains("code unchanged"));
        assert!(again.contains("lease table deploy-e2e-lease: exists"));

        // what moto holds, read with the stock SDK
        let user_data = dir.join("user-data.sh");
        let seen = python(
            &format!(
                "{BOTO}lam = boto3.client('lambda', **kw)\nec2 = boto3.client('ec2', **kw)\n\
                 c = lam.get_function_configuration(FunctionName='deploy-e2e-spill')\n\
                 r = lam.get_function_concurrency(FunctionName='deploy-e2e-spill')\n\
                 v = ec2.describe_launch_template_versions(LaunchTemplateName='deploy-e2e-workers', \
                 Versions=['$Default'])['LaunchTemplateVersions'][0]\n\
                 d = v['LaunchTemplateData']\n\
                 t = boto3.client('dynamodb', **kw).describe_table(TableName='deploy-e2e-lease')['Table']\n\
                 open(sys.argv[1] if len(sys.argv) > 1 else '{ud}', 'w').write(base64.b64decode(d['UserData']).decode())\n\
                 print(json.dumps([c['Runtime'], c['Handler'], c['MemorySize'], c['Timeout'], \
                 r['ReservedConcurrentExecutions'], d['MetadataOptions']['HttpTokens'], d['ImageId'], \
                 d['IamInstanceProfile'], d['SecurityGroupIds'], t['TableStatus']]))",
                ud = user_data.display()
            ),
            &moto,
        );
        println!("moto holds: {}", seen.trim());
        assert_eq!(
            seen.trim(),
            r#"["provided.al2023", "bootstrap", 2048, 30, 1000, "required", "ami-0123456789abcdef0", {"Name": "mark-worker"}, ["sg-0a1b2c3d"], "ACTIVE"]"#
        );

        // a worker booted from that user data answers as the local repository does
        let local = Gateway::start(&["--model-repo", v1.to_str().unwrap(), "--no-grpc"])
            .ready()
            .await;
        let port = free_port();
        let (_w1, log1) = boot(&user_data, &dir.join("home1"), port, &moto);
        let w1 = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        ready(&w1, &log1).await;
        println!(
            "worker booted from the user data in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        for seed in [1, 4, 9] {
            assert_eq!(
                answer(&w1, "mlp", seed).await,
                answer(&local.base, "mlp", seed).await
            );
        }

        // a second push reaches the next worker, with the same launch template
        let v2 = rows::repo_aliased(&[("mlp", "mlp", CFG), ("mlp-b", "mlp", CFG)]);
        mark_ok(&["repo", "push", v2.to_str().unwrap(), URL], &env);
        let port2 = free_port();
        let (_w2, log2) = boot(&user_data, &dir.join("home2"), port2, &moto);
        let w2 = format!("http://127.0.0.1:{port2}");
        ready(&w2, &log2).await;
        assert_eq!(
            answer(&w2, "mlp-b", 3).await,
            answer(&local.base, "mlp", 3).await
        );
        let r = get(&format!("{w1}/v2/models/mlp-b/ready")).await.unwrap();
        assert_eq!(r.status, 404, "the first worker keeps the version it fetched");

        // a runtime object corrupted in the bucket is refused by its digest
        let script = std::fs::read_to_string(&user_data).unwrap();
        let line = script
            .lines()
            .find(|l| l.starts_with("fetch ") && l.ends_with("\"$MARK_HOME/mark\""))
            .expect("the fetch of mark");
        // fetch 'BUCKET' 'KEY' SHA256 BYTES DEST
        let parts: Vec<&str> = line.split_whitespace().collect();
        let key = parts[2].trim_matches('\'').to_string();
        python(
            &format!(
                "{BOTO}boto3.client('s3', **kw).put_object(Bucket='mark-deploy', Key='{key}', \
                 Body=b'\\0' * {})",
                parts[4]
            ),
            &moto,
        );
        let (mut w3, log3) = boot(&user_data, &dir.join("home3"), free_port(), &moto);
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = w3.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the corrupted boot did not end");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let said = std::fs::read_to_string(&log3).unwrap();
        println!("corrupted runtime: {status}: {}", said.trim());
        assert!(!status.success());
        assert!(
            said.contains(&format!("mark boot: s3://mark-deploy/{key}: sha256 "))
                && said.contains("refused"),
            "{said}"
        );
        assert!(!dir.join("home3/mark").exists(), "nothing refused is installed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_lambda_zip_runs_as_the_function_and_an_oversized_one_is_refused() {
    within(300, async {
        let dir = temp_dir("package-lambda");
        // a `mark` built with debug info (300 MiB, sparse: no disk used): refused from its size,
        // before anything is read
        let big = dir.join("mark.debug");
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(300 << 20))
            .expect("a sparse file");
        let (code, out, err) = mark(
            &[
                "package",
                "lambda",
                "--out",
                dir.join("big.zip").to_str().unwrap(),
                "--model-repo",
                "s3://any-bucket/prefix",
                "--mark-binary",
                big.to_str().unwrap(),
            ],
            &[],
        );
        println!("unstripped: exit {code:?}: {}", err.trim());
        assert_eq!(code, Some(64), "{out}{err}");
        assert!(
            err.contains("more than Lambda's 250.0 MiB") && err.contains("strip -o mark.lambda"),
            "{err}"
        );
        assert!(!dir.join("big.zip").exists());

        let ship = shipped_mark(&dir);
        let repo = repo_with(&[("mlp", CFG)]);
        let zip = dir.join("function.zip");
        let said = mark_ok(
            &[
                "package",
                "lambda",
                "--out",
                zip.to_str().unwrap(),
                "--model-repo",
                repo.to_str().unwrap(),
                "--mark-binary",
                ship.to_str().unwrap(),
            ],
            &[],
        );
        println!("{}", said.trim());
        // unpacked as Lambda does (the stock zipfile module; modes from the zip)
        let task = dir.join("task");
        let listing = python(
            &format!(
                "import zipfile, os\nz = zipfile.ZipFile('{zip}')\n\
                 for i in z.infolist():\n    z.extract(i, '{task}')\n    \
                 os.chmod(os.path.join('{task}', i.filename), (i.external_attr >> 16) & 0o777)\n    \
                 print(i.filename, oct((i.external_attr >> 16) & 0o777))",
                zip = zip.display(),
                task = task.display()
            ),
            "",
        );
        println!("{}", listing.trim());
        assert!(listing.contains("bootstrap 0o755") && listing.contains("mark 0o755"));
        assert!(listing.contains("models/mlp/model.onnx 0o644"));
        let (_procs, endpoint) = crate::lambda::start_function(
            Command::new(task.join("bootstrap")).env("LAMBDA_TASK_ROOT", &task),
        );
        let l = mark_gateway::exec::lambda_client::LambdaBackend::connect(
            crate::lambda::options(&endpoint),
            crate::lambda::spec(4),
        )
        .await;
        let local = Gateway::start(&["--model-repo", repo.to_str().unwrap(), "--no-grpc"])
            .ready()
            .await;
        let rows = vec![mlp_row(2), mlp_row(5)];
        let got = crate::lambda::invoke_until_up(&l, &rows).await;
        let want = post_json(
            &format!("{}/v2/models/mlp/infer", local.base),
            &mlp_request(&rows),
        )
        .await;
        let probs = got.iter().find(|t| t.name == "probs").expect("probs");
        assert_eq!(probs.to_f32(), output_f32(&want.json(), "probs"));
    })
    .await;
}

/// The ready instances of the local cloud's fleet `mark` under `state`: (id, address).
async fn ready_workers(state: &Path) -> Vec<(String, String)> {
    let cat = mark_gateway::control::catalog::Catalog::parse(ONE_TYPE_CATALOG, "c").unwrap();
    let cloud = mark_gateway::cloud::local::LocalCloud::new(
        state,
        "mark",
        "mlp",
        &mark_bin(),
        Path::new(URL),
        cat,
    );
    let mut out = Vec::new();
    for i in cloud.list() {
        if let Ok(r) = get(&format!("http://{}/v2/health/ready", i.addr)).await {
            if r.status == 200 {
                out.push((i.id, format!("http://{}", i.addr)));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_config_with_local_workers_pulling_from_s3_and_a_push_reaching_the_next_worker() {
    within(300, async {
        let (_moto, moto) = start_moto();
        let mut env = aws_env(&moto);
        let v1 = repo_with(&[("mlp", CFG)]);
        mark_ok(&["repo", "push", v1.to_str().unwrap(), URL], &env);
        let dir = temp_dir("serve-config-s3");
        std::fs::write(dir.join("catalog.toml"), ONE_TYPE_CATALOG).unwrap();
        let state = dir.join("cloud");
        let config = dir.join("mark.toml");
        std::fs::write(
            &config,
            format!(
                "model_repo = \"{URL}\"\nno_grpc = true\n[control]\ncloud = \"local\"\n\
                 catalog = \"{}\"\ncontrol_interval = 1\ncontrol_window = 0.5\n\
                 cloud_state = \"{}\"\nmin_instances = 1\nmax_instances = 2\n",
                dir.join("catalog.toml").display(),
                state.display()
            ),
        )
        .unwrap();
        env.push((
            "MARK_REPO_CACHE".into(),
            dir.join("cache").to_string_lossy().to_string(),
        ));
        let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut g = Gateway::start_env(&["--config", config.to_str().unwrap()], &envs)
            .ready()
            .await;
        let (s, r) = (state.clone(), v1.clone());
        g.cleanup = Some(Box::new(move || {
            end_local_workers(&s, &r, ONE_TYPE_CATALOG)
        }));
        let local = Gateway::start(&["--model-repo", v1.to_str().unwrap(), "--no-grpc"])
            .ready()
            .await;
        let deadline = Instant::now() + Duration::from_secs(90);
        let (id, worker) = loop {
            if let Some(w) = ready_workers(&state).await.into_iter().next() {
                break w;
            }
            assert!(Instant::now() < deadline, "no worker became ready");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        for seed in [2, 6] {
            let want = answer(&local.base, "mlp", seed).await;
            assert_eq!(answer(&worker, "mlp", seed).await, want, "the worker");
            assert_eq!(answer(&g.base, "mlp", seed).await, want, "the gateway");
        }

        // a push, then the worker dies: its replacement serves the new version, and the
        // gateway (not restarted) goes on answering
        let v2 = rows::repo_aliased(&[("mlp", "mlp", CFG), ("mlp-b", "mlp", CFG)]);
        mark_ok(&["repo", "push", v2.to_str().unwrap(), URL], &env);
        let cat = mark_gateway::control::catalog::Catalog::parse(ONE_TYPE_CATALOG, "c").unwrap();
        mark_gateway::cloud::local::LocalCloud::new(
            &state,
            "mark",
            "mlp",
            &mark_bin(),
            Path::new(URL),
            cat,
        )
        .interrupt(&id)
        .expect("kill the worker");
        let deadline = Instant::now() + Duration::from_secs(120);
        let next = loop {
            if let Some(w) = ready_workers(&state).await.into_iter().find(|w| w.0 != id) {
                break w;
            }
            assert!(Instant::now() < deadline, "no replacement worker");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        println!("replacement worker {} at {}", next.0, next.1);
        assert_eq!(
            answer(&next.1, "mlp-b", 3).await,
            answer(&local.base, "mlp", 3).await
        );
        assert_eq!(
            answer(&g.base, "mlp", 3).await,
            answer(&local.base, "mlp", 3).await
        );
    })
    .await;
}
