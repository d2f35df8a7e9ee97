//! Shared helpers of the end-to-end tests: start the real `mark` binary, talk HTTP to it.
#![allow(dead_code)]

mod http;
pub mod rows;
pub mod throttle;

pub use http::*;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `mark` binary next to the test executable (built by `cargo build --release --bins`).
pub fn mark_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("mark");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build --release --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A catalog of the local cloud's one type (`local.small`) booting in `launch_seconds`, with
/// `capacity` as its `capacity_rps` table's entries (e.g. `mlp = 60`; empty: none, the capacity
/// then comes from the model's own profile).
pub fn local_small_catalog(launch_seconds: f64, capacity: &str) -> String {
    let cap = if capacity.is_empty() {
        String::new()
    } else {
        format!("capacity_rps = {{ {capacity} }}\n")
    };
    format!(
        "[[instance]]\nname = \"local.small\"\nvcpus = 2\nmemory_gib = 4\nprice_on_demand = 0.10\n\
         price_spot = 0.0\nlaunch_seconds = {launch_seconds:.1}\n{cap}"
    )
}

/// The local cloud's one type, at 60 MLP requests/s per instance (a fictional capacity, low on
/// purpose: the controller launches several workers at a few hundred requests per second).
pub const ONE_TYPE_CATALOG: &str = r#"
[[instance]]
name = "local.small"
vcpus = 2
memory_gib = 4
price_on_demand = 0.10
price_spot = 0.0
launch_seconds = 1.0
capacity_rps = { mlp = 60 }
"#;

/// `mark serve` on one `mlp` (batches up to 32, 50 ms SLO, one executor, served late rather
/// than refused) with its admin API and `token`: the gateway and the admin address.
pub async fn start_mlp_with_admin(token: &str) -> (Gateway, String) {
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 32\nslo_ms = 50\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
    )]);
    let g = Gateway::start(&[
        "--model-repo",
        repo.to_str().expect("utf-8 path"),
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token",
        token,
    ])
    .ready()
    .await;
    let admin = g.admin.clone().expect("admin address printed");
    (g, admin)
}

/// `mark serve` with its control loop on the local cloud, as the autoscaling tests run it: the
/// `catalog` TOML written to a fresh directory, admin token `t`, 0.5 s rate windows,
/// `interval` seconds per control interval, at most `max_instances`. Returns the ready gateway
/// and the local cloud's state directory (for a `LocalCloud` that watches the same fleet).
pub async fn start_local_cloud(
    repo: &Path,
    catalog: &str,
    tag: &str,
    interval: &str,
    max_instances: &str,
) -> (Gateway, PathBuf) {
    start_local_cloud_with(repo, catalog, tag, interval, max_instances, &[]).await
}

/// `start_local_cloud` with more flags for `mark serve`.
pub async fn start_local_cloud_with(
    repo: &Path,
    catalog: &str,
    tag: &str,
    interval: &str,
    max_instances: &str,
    extra: &[&str],
) -> (Gateway, PathBuf) {
    start_local_cloud_env(repo, catalog, tag, interval, max_instances, extra, &[]).await
}

/// `start_local_cloud_with` and environment variables for `mark serve` (its workers inherit
/// them).
pub async fn start_local_cloud_env(
    repo: &Path,
    catalog: &str,
    tag: &str,
    interval: &str,
    max_instances: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (Gateway, PathBuf) {
    let dir = temp_dir(tag);
    let catalog_path = dir.join("catalog.toml");
    std::fs::write(&catalog_path, catalog).expect("catalog");
    let state_dir = dir.join("cloud");
    let mut args = vec![
        "--model-repo",
        repo.to_str().expect("utf-8 path"),
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token",
        "t",
        "--cloud",
        "local",
        "--catalog",
        catalog_path.to_str().expect("utf-8 path"),
        "--control-interval",
        interval,
        "--control-window",
        "0.5",
        "--cloud-state",
        state_dir.to_str().expect("utf-8 path"),
        "--max-instances",
        max_instances,
    ];
    args.extend_from_slice(extra);
    let g = Gateway::start_env(&args, envs).ready().await;
    // the workers outlive a killed gateway (a restarted one adopts them): end them with the test
    let mut g = g;
    let (state, repo, catalog) = (state_dir.clone(), repo.to_path_buf(), catalog.to_string());
    g.cleanup = Some(Box::new(move || end_local_workers(&state, &repo, &catalog)));
    (g, state_dir)
}

/// Ends (SIGKILL) every worker of the local cloud's fleet `mark` under `state`.
pub fn end_local_workers(state: &Path, repo: &Path, catalog: &str) {
    let Ok(cat) = mark_gateway::control::catalog::Catalog::parse(catalog, "test catalog") else {
        return;
    };
    // every worker of the fleet, whatever its model (the records are per fleet)
    let cloud =
        mark_gateway::cloud::local::LocalCloud::new(state, "mark", "mlp", &mark_bin(), repo, cat);
    for i in cloud.list() {
        let _ = cloud.interrupt(&i.id);
    }
}

/// A free loopback port (for an emulator the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits up to 30 s until something listens on loopback `port`; `why` explains a timeout.
pub fn wait_for_port(port: u16, why: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mark-e2e-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

/// A model repository holding `models` (name, config.toml body), linking the generated model files.
pub fn repo_with(models: &[(&str, &str)]) -> PathBuf {
    let dir = temp_dir("repo");
    for (name, cfg) in models {
        // the demo's models, or the tests' own (scripts/gen_test_models.py)
        let src = [root().join("models"), root().join(".mark/test-models")]
            .into_iter()
            .map(|d| d.join(name))
            .find(|d| d.join("model.onnx").is_file())
            .unwrap_or_else(|| panic!("run scripts/setup.sh to generate models/{name}"));
        let dst = dir.join(name);
        std::fs::create_dir_all(&dst).expect("model dir");
        std::os::unix::fs::symlink(src.join("model.onnx"), dst.join("model.onnx"))
            .expect("symlink");
        std::fs::write(dst.join("config.toml"), cfg).expect("config");
        if src.join("profile.toml").is_file() {
            std::fs::copy(src.join("profile.toml"), dst.join("profile.toml")).expect("profile");
        }
    }
    dir
}

/// A running `mark serve`, killed on drop.
pub struct Gateway {
    child: Child,
    /// Listening address.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub base: String,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// `http://addr` of the admin API, when it runs.
    pub admin: Option<String>,
    /// Address of the gRPC listener, when it runs.
    pub grpc: Option<SocketAddr>,
    /// Runs after the gateway is killed: terminates the local cloud's workers it launched.
    pub cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl Gateway {
    /// Starts `mark serve --listen 127.0.0.1:0` with extra args and waits for the listening line.
    pub fn start(args: &[&str]) -> Gateway {
        Self::start_env(args, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_env(args: &[&str], envs: &[(&str, &str)]) -> Gateway {
        Self::start_command(Command::new(mark_bin()), args, envs)
    }

    /// Like `start`, with the open-file limit (soft and hard) set to `n`.
    pub fn start_with_fd_limit(n: u32, args: &[&str]) -> Gateway {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={n}:{n}")).arg(mark_bin());
        Self::start_command(cmd, args, &[])
    }

    fn start_command(mut cmd: Command, args: &[&str], envs: &[(&str, &str)]) -> Gateway {
        let log = temp_dir("log").join("stderr.log");
        // an ephemeral gRPC port unless the test picks one: tests run in parallel
        let grpc_default: &[&str] =
            if args.contains(&"--grpc-listen") || args.contains(&"--no-grpc") {
                &[]
            } else {
                &["--grpc-listen", "127.0.0.1:0"]
            };
        // an ephemeral port unless the test picks one (replicas behind a load balancer)
        let listen_default: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = cmd
            .current_dir(root())
            .arg("serve")
            .args(listen_default)
            .args(grpc_default)
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn mark serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        // start-up lines: listening, [gRPC], [admin], "try: ..."; then keep draining so the
        // gateway never writes into a closed pipe
        let mut line = String::new();
        reader.read_line(&mut line).expect("read stdout");
        let (mut admin, mut grpc) = (None, None);
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l).expect("read stdout") == 0 || l.starts_with("try:") {
                break;
            }
            if l.contains("admin API on") {
                admin = l
                    .split("http://")
                    .nth(1)
                    .map(|s| format!("http://{}", s.trim()));
            } else if l.contains("gRPC") {
                grpc = l.split_whitespace().last().and_then(|s| s.parse().ok());
            }
        }
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no address in {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Gateway {
            child,
            addr,
            base: format!("http://{addr}"),
            log,
            admin,
            grpc,
            cleanup: None,
        }
    }

    /// Waits until `/v2/health/ready` answers 200.
    pub async fn ready(self) -> Gateway {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = get(&format!("{}/v2/health/ready", self.base)).await {
                if r.status == 200 {
                    return self;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Gateway {
    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to 60 s) for the process to exit; true when it exited 0.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status, once the process exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A moto server (AWS emulator) started by a test, killed on drop.
pub struct Moto(pub Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto's server (EC2, DynamoDB...) on a free loopback port: the process and its URL.
pub fn start_moto() -> (Moto, String) {
    let port = free_port();
    let bin = root().join(".mark/venv/bin/moto_server");
    assert!(bin.is_file(), "moto_server missing: run scripts/setup.sh");
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn moto_server");
    wait_for_port(port, || "moto did not start".into());
    (Moto(child), format!("http://127.0.0.1:{port}"))
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(c) = self.cleanup.take() {
            c();
        }
    }
}

/// Runs an end-to-end test body under an overall deadline: a hang fails in `secs` seconds with
/// a message instead of at CI's limit.
pub async fn within<F: std::future::Future<Output = ()>>(secs: u64, body: F) {
    if tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .is_err()
    {
        panic!("test did not finish within {secs} s");
    }
}

/// Runs `tests/py/<script>` with the venv's Python and `args`; fails the test with its output when
/// it fails, and prints the output when it passes (the stock clients' findings).
pub async fn python_script(script: &str, args: &[std::ffi::OsString]) -> String {
    let out = tokio::process::Command::new(root().join(".mark/venv/bin/python"))
        .arg(root().join("tests/py").join(script))
        .args(args)
        .output()
        .await
        .expect("run the venv's python (scripts/setup.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script}: {text}");
    println!("{text}");
    text
}
