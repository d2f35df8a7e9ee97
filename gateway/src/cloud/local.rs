//! The `local` cloud: instances are `mark worker` processes on loopback ports. Each launch writes
//! its tags to `<state_dir>/<fleet>/<id>.json`; `list` rebuilds the fleet from those files and the
//! processes behind them, so a restarted gateway adopts running workers. Launch delay comes from
//! the catalog (the worker sleeps before it listens); billing is per second at the catalog price.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mark_policies::types::Market;

use super::CloudError;
use crate::control::catalog::Catalog;
use crate::control::fleet::{Instance, InstanceState};
use crate::control::ledger::instance_cost;

/// The local driver.
pub struct LocalCloud {
    dir: PathBuf,
    fleet: String,
    model: String,
    mark_bin: PathBuf,
    model_repo: PathBuf,
    catalog: Catalog,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(flatten)]
    instance: Instance,
    pid: u32,
    /// The process's start time (clock ticks after boot, `/proc/PID/stat` field 22): a PID
    /// reused by another process after the worker died (or after a reboot) has another.
    #[serde(default)]
    proc_start: Option<u64>,
    /// The kernel's boot id at launch: start times count from boot, so a record from before a
    /// reboot never matches a process after it.
    #[serde(default)]
    boot_id: Option<String>,
    /// The plan that launched it (`mark:plan`), for keyed launches.
    #[serde(default)]
    plan: Option<String>,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Start time of `pid` in clock ticks after boot.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name (which may hold spaces and parentheses)
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when `rec` still describes a live worker process of ours: the same boot, the same PID
/// and the same start time (which identify one process), or for a record without them, a process
/// running `mark worker` on the recorded address. Anything else must never be signalled.
fn is_our_worker(rec: &Record) -> bool {
    if !alive(rec.pid) {
        return false;
    }
    if let Some(start) = rec.proc_start {
        return proc_start(rec.pid) == Some(start)
            && rec
                .boot_id
                .as_ref()
                .is_none_or(|b| boot_id().as_ref() == Some(b));
    }
    std::fs::read(format!("/proc/{}/cmdline", rec.pid)).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
        args.contains(&b"worker".as_slice()) && args.contains(&rec.instance.addr.as_bytes())
    })
}

fn alive(pid: u32) -> bool {
    // a zombie (exited, not reaped) is not alive
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// A free loopback port whose `127.0.0.1:port` is not in `taken`. Probes that hit a taken port
/// stay bound until the end, so the OS cannot hand the same port out twice.
fn free_port_except(taken: &std::collections::HashSet<String>) -> Result<u16, CloudError> {
    let mut held = Vec::new();
    for _ in 0..64 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| CloudError::Failed(e.to_string()))?;
        let port = l
            .local_addr()
            .map_err(|e| CloudError::Failed(e.to_string()))?
            .port();
        if !taken.contains(&format!("127.0.0.1:{port}")) {
            return Ok(port);
        }
        held.push(l);
    }
    Err(CloudError::Failed("no free loopback port".into()))
}

impl LocalCloud {
    /// A driver for `fleet` serving `model`, keeping state under `dir`, launching `mark_bin worker`.
    pub fn new(
        dir: &Path,
        fleet: &str,
        model: &str,
        mark_bin: &Path,
        model_repo: &Path,
        catalog: Catalog,
    ) -> Self {
        LocalCloud {
            dir: dir.join(fleet),
            fleet: fleet.into(),
            model: model.into(),
            mark_bin: mark_bin.into(),
            model_repo: model_repo.into(),
            catalog,
        }
    }

    /// Launches one instance; it is pending for the type's launch time, then running.
    pub fn launch(&self, instance_type: &str, market: Market) -> Result<Instance, CloudError> {
        self.launch_keyed(instance_type, market, None)
    }

    /// Launches an instance whose worker never becomes ready (`--cloud-faults` boot failures):
    /// its process lives, billed, and never listens.
    pub fn launch_never_booting(
        &self,
        instance_type: &str,
        market: Market,
        key: Option<&str>,
    ) -> Result<Instance, CloudError> {
        self.spawn(instance_type, market, key, 1e9)
    }

    /// Launches one instance under the launch `key` (`autoscale::keyed`: interval, type, market,
    /// ordinal); a key already taken (by a controller that made the same launch) launches
    /// nothing.
    pub fn launch_keyed(
        &self,
        instance_type: &str,
        market: Market,
        key: Option<&str>,
    ) -> Result<Instance, CloudError> {
        let delay = self
            .catalog
            .get(instance_type)
            .map_or(0.0, |s| s.launch_seconds);
        self.spawn(instance_type, market, key, delay)
    }

    fn spawn(
        &self,
        instance_type: &str,
        market: Market,
        key: Option<&str>,
        start_delay: f64,
    ) -> Result<Instance, CloudError> {
        if let Some(k) = key {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
                return Err(CloudError::Failed(format!(
                    "launch key {k:?} is not a file name"
                )));
            }
            self.claim_key(k)?;
        }
        let spec = self
            .catalog
            .get(instance_type)
            .ok_or_else(|| CloudError::UnknownType(instance_type.into()))?;
        std::fs::create_dir_all(&self.dir).map_err(|e| CloudError::Failed(e.to_string()))?;
        // A probed port stays free until the worker binds it after its launch delay, so the OS
        // may hand the same one out again meanwhile: skip ports the fleet's records already hold.
        let taken: std::collections::HashSet<String> = self
            .records()
            .into_iter()
            .map(|(_, r)| r.instance.addr)
            .collect();
        let port = free_port_except(&taken)?;
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(self.dir.join(format!("worker-{port}.log")))
            .map_err(|e| CloudError::Failed(e.to_string()))?;
        let child = Command::new(&self.mark_bin)
            .args(["worker", "--listen", &addr, "--start-delay"])
            .arg(start_delay.to_string())
            .arg("--model-repo")
            .arg(&self.model_repo)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                CloudError::Failed(format!("spawning {}: {e}", self.mark_bin.display()))
            })?;
        let price = spec.price(market);
        let instance = Instance {
            id: format!("local-{}-{port}", child.id()),
            fleet: self.fleet.clone(),
            model: self.model.clone(),
            instance_type: instance_type.into(),
            market,
            launched_at: crate::clock::wall_s(),
            addr,
            state: InstanceState::Pending,
            price_per_hour: price,
            zone: String::new(),
        };
        let rec = Record {
            instance: instance.clone(),
            pid: child.id(),
            proc_start: proc_start(child.id()),
            boot_id: boot_id(),
            plan: key.map(str::to_string),
        };
        let body =
            serde_json::to_vec_pretty(&rec).map_err(|e| CloudError::Failed(e.to_string()))?;
        std::fs::write(self.dir.join(format!("{}.json", instance.id)), body)
            .map_err(|e| CloudError::Failed(e.to_string()))?;
        // The process is reaped by whoever terminates it; dropping `child` does not kill it.
        drop(child);
        Ok(instance)
    }

    /// Creates `<state>/keys/<key>` exclusively (an atomic claim on one filesystem); keys older
    /// than a day are removed on the way.
    fn claim_key(&self, key: &str) -> Result<(), CloudError> {
        let dir = self.dir.join("keys");
        std::fs::create_dir_all(&dir).map_err(|e| CloudError::Failed(e.to_string()))?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|d| d > Duration::from_secs(86_400));
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(key))
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(CloudError::AlreadyLaunched(key.into()))
            }
            Err(e) => Err(CloudError::Failed(e.to_string())),
        }
    }

    fn records(&self) -> Vec<(PathBuf, Record)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let path = e.path();
                let bytes = std::fs::read(&path).ok()?;
                match serde_json::from_slice::<Record>(&bytes) {
                    Ok(r) if r.instance.addr.parse::<std::net::SocketAddr>().is_ok() => {
                        Some((path, r))
                    }
                    Ok(_) => {
                        tracing::warn!(record = %path.display(), "skipping a fleet record with a bad address");
                        None
                    }
                    Err(err) => {
                        tracing::warn!(record = %path.display(), cause = %err, "skipping a corrupt fleet record");
                        None
                    }
                }
            })
            .collect()
    }

    /// The fleet, rebuilt from tags and processes: dead instances are dropped from the state.
    pub fn list(&self) -> Vec<Instance> {
        let mut out = Vec::new();
        for (path, rec) in self.records() {
            if !is_our_worker(&rec) {
                let _ = std::fs::remove_file(path);
                continue;
            }
            let mut i = rec.instance;
            // running means its worker is alive with its models loaded, not a TCP accept
            i.state = if crate::codec::readiness::serves_blocking(&i.addr) {
                InstanceState::Running
            } else {
                InstanceState::Pending
            };
            out.push(i);
        }
        out.sort_by(|a, b| a.launched_at.total_cmp(&b.launched_at));
        out
    }

    /// Terminates `id` (SIGTERM: the worker finishes in-flight requests, then exits).
    pub fn terminate(&self, id: &str) -> Result<(), CloudError> {
        self.signal(id, "TERM")
    }

    /// Stages a spot interruption: the instance dies at once (SIGKILL), as a reclaimed spot
    /// instance does after its notice.
    pub fn interrupt(&self, id: &str) -> Result<(), CloudError> {
        self.signal(id, "KILL")
    }

    fn signal(&self, id: &str, sig: &str) -> Result<(), CloudError> {
        let (path, rec) = self
            .records()
            .into_iter()
            .find(|(_, r)| r.instance.id == id)
            .ok_or_else(|| CloudError::Failed(format!("no instance '{id}'")))?;
        if !is_our_worker(&rec) {
            // gone already, or its PID now belongs to another process: never signal that
            tracing::warn!(instance = %id, pid = rec.pid, "instance's process is gone; dropping its record");
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
        let status = Command::new("kill")
            .args([format!("-{sig}"), rec.pid.to_string()])
            .status()
            .map_err(|e| CloudError::Failed(e.to_string()))?;
        if !status.success() && alive(rec.pid) {
            return Err(CloudError::Failed(format!(
                "kill -{sig} {} failed",
                rec.pid
            )));
        }
        if sig == "TERM" {
            // a stopped (frozen) worker handles SIGTERM only once it runs again
            let _ = Command::new("kill")
                .args(["-CONT", &rec.pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    /// USD billed so far for the live fleet at `now` (per second, 60 s minimum).
    pub fn cost_so_far(&self, now: f64) -> f64 {
        self.list()
            .iter()
            .map(|i| instance_cost(i.price_per_hour, i.launched_at, now))
            .sum()
    }

    /// USD per hour of the live fleet.
    pub fn dollars_per_hour(&self) -> f64 {
        self.list().iter().map(|i| i.price_per_hour).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(tag: &str) -> (LocalCloud, PathBuf) {
        let dir = std::env::temp_dir().join(format!("mark-local-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let catalog = Catalog::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog-local.toml"),
        )
        .expect("example catalog");
        let c = LocalCloud::new(&dir, "f", "mlp", Path::new("/bin/false"), &dir, catalog);
        std::fs::create_dir_all(dir.join("f")).unwrap();
        (c, dir)
    }

    fn record(pid: u32, proc_start: Option<u64>, addr: &str) -> Vec<u8> {
        serde_json::to_vec(&Record {
            instance: Instance {
                id: format!("local-{pid}-1"),
                fleet: "f".into(),
                model: "mlp".into(),
                instance_type: "local.small".into(),
                market: Market::OnDemand,
                launched_at: 0.0,
                addr: addr.into(),
                state: InstanceState::Running,
                price_per_hour: 0.1,
                zone: String::new(),
            },
            pid,
            proc_start,
            boot_id: None,
            plan: Some("g7".into()),
        })
        .unwrap()
    }

    #[test]
    fn a_launch_key_is_claimed_once() {
        let (c, dir) = cloud("keys");
        let other = LocalCloud::new(
            &dir,
            "f",
            "mlp",
            Path::new("/bin/false"),
            &dir,
            c.catalog.clone(),
        );
        c.claim_key("g7-0").unwrap();
        // a second controller planning from the same view asks for the same key: refused
        assert!(matches!(
            other.claim_key("g7-0"),
            Err(CloudError::AlreadyLaunched(k)) if k == "g7-0"
        ));
        // a launch under a new key goes through (/bin/false stands in for the worker binary: it
        // spawns); the same key asked again by another controller launches nothing
        let launched = other
            .launch_keyed(
                "local.small",
                Market::OnDemand,
                Some("g7-local.small-on-demand-0"),
            )
            .unwrap();
        assert!(dir.join("f/keys/g7-local.small-on-demand-0").is_file());
        std::fs::remove_file(dir.join(format!("f/{}.json", launched.id))).unwrap();
        assert!(matches!(
            c.launch_keyed(
                "local.small",
                Market::OnDemand,
                Some("g7-local.small-on-demand-0")
            ),
            Err(CloudError::AlreadyLaunched(_))
        ));
        assert!(c
            .launch_keyed("local.small", Market::OnDemand, Some("../x"))
            .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reused_pid_is_never_signalled_and_corrupt_records_are_skipped() {
        let (c, dir) = cloud("pid");
        // an unrelated live process (a sleeping child) under a record of ours
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = other.id();
        std::fs::write(dir.join("f/a.json"), record(pid, None, "127.0.0.1:9")).unwrap();
        // same PID, wrong start time (a PID reused after a reboot)
        std::fs::write(dir.join("f/b.json"), record(pid, Some(1), "127.0.0.1:9")).unwrap();
        // same PID and start time, another boot
        let mut other_boot: Record =
            serde_json::from_slice(&record(pid, proc_start(pid), "127.0.0.1:9")).unwrap();
        other_boot.boot_id = Some("another-boot".into());
        std::fs::write(
            dir.join("f/c.json"),
            serde_json::to_vec(&other_boot).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("f/corrupt.json"), b"{\"pid\": 12, \"addr\": ").unwrap();
        std::fs::write(
            dir.join("f/badaddr.json"),
            record(pid, None, "not an address"),
        )
        .unwrap();
        assert!(c.list().is_empty(), "no worker of ours is running");
        c.terminate(&format!("local-{pid}-1")).ok();
        assert!(alive(pid), "the unrelated process was not signalled");
        assert!(proc_start(pid).is_some());
        let _ = other.kill();
        let _ = other.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
