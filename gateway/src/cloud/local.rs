//! The `local` cloud: instances are `mark worker` processes on loopback ports. Each launch writes
//! its tags to `<state_dir>/<fleet>/<id>.json`; `list` rebuilds the fleet from those files and the
//! processes behind them, so a restarted gateway adopts running workers. Launch delay comes from
//! the catalog (the worker sleeps before it listens); billing is per second at the catalog price.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use mark_policies::types::Market;

use super::{billed_seconds, CloudError, Instance, InstanceState};
use crate::control::catalog::Catalog;

/// The local driver.
pub struct LocalCloud {
    dir: PathBuf,
    fleet: String,
    model: String,
    mark_bin: PathBuf,
    model_repo: PathBuf,
    catalog: Catalog,
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(flatten)]
    instance: Instance,
    pid: u32,
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
            .arg(spec.launch_seconds.to_string())
            .arg("--model-repo")
            .arg(&self.model_repo)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                CloudError::Failed(format!("spawning {}: {e}", self.mark_bin.display()))
            })?;
        let price = match market {
            Market::OnDemand => spec.price_on_demand,
            Market::Spot => spec.price_spot,
        };
        let instance = Instance {
            id: format!("local-{}-{port}", child.id()),
            fleet: self.fleet.clone(),
            model: self.model.clone(),
            instance_type: instance_type.into(),
            market,
            launched_at: now_s(),
            addr,
            state: InstanceState::Pending,
            price_per_hour: price,
        };
        let rec = Record {
            instance: instance.clone(),
            pid: child.id(),
        };
        let body =
            serde_json::to_vec_pretty(&rec).map_err(|e| CloudError::Failed(e.to_string()))?;
        std::fs::write(self.dir.join(format!("{}.json", instance.id)), body)
            .map_err(|e| CloudError::Failed(e.to_string()))?;
        // The process is reaped by whoever terminates it; dropping `child` does not kill it.
        drop(child);
        Ok(instance)
    }

    fn records(&self) -> Vec<(PathBuf, Record)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                Some((
                    e.path(),
                    serde_json::from_slice::<Record>(&std::fs::read(e.path()).ok()?).ok()?,
                ))
            })
            .collect()
    }

    /// The fleet, rebuilt from tags and processes: dead instances are dropped from the state.
    pub fn list(&self) -> Vec<Instance> {
        let mut out = Vec::new();
        for (path, rec) in self.records() {
            if !alive(rec.pid) {
                let _ = std::fs::remove_file(path);
                continue;
            }
            let mut i = rec.instance;
            let listening = std::net::TcpStream::connect_timeout(
                &i.addr.parse().expect("stored address"),
                Duration::from_millis(200),
            )
            .is_ok();
            i.state = if listening {
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
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    /// USD billed so far for the live fleet at `now` (per second, 60 s minimum).
    pub fn cost_so_far(&self, now: f64) -> f64 {
        self.list()
            .iter()
            .map(|i| i.price_per_hour * billed_seconds(now - i.launched_at) / 3600.0)
            .sum()
    }

    /// USD per hour of the live fleet.
    pub fn dollars_per_hour(&self) -> f64 {
        self.list().iter().map(|i| i.price_per_hour).sum()
    }
}
