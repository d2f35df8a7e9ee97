//! The fault layer over a cloud driver (`mark serve --cloud-faults FILE.toml`): the same fault file
//! as `mark simulate --cloud-faults`, applied to live cloud calls so the end-to-end tests run the
//! control loop against a cloud that fails as EC2 does. Calls hang through a stall, launches are
//! refused while throttled or by chance, new instances stay invisible to listing for the lag, and
//! boot failures launch a worker that never becomes ready (on the local cloud; EC2 boots what it
//! boots). Times count from the layer's creation (the control loop's start).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mark_policies::types::Market;

use super::driver::Driver;
use super::CloudError;
use crate::control::faults::CloudFaults;
use crate::control::fleet::Instance;

/// A driver with faults.
pub struct FaultLayer {
    inner: Driver,
    faults: CloudFaults,
    started: Instant,
    boot_failures_left: AtomicU32,
    rng: Mutex<rand::rngs::StdRng>,
}

impl FaultLayer {
    /// `inner` with `faults`, starting now.
    pub fn new(inner: Driver, faults: CloudFaults) -> Self {
        use rand::SeedableRng;
        FaultLayer {
            boot_failures_left: AtomicU32::new(faults.boot_failures),
            inner,
            faults,
            started: Instant::now(),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(0x31)),
        }
    }

    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn chance(&self, p: f64) -> bool {
        use rand::Rng;
        p > 0.0 && self.rng.lock().expect("fault rng").random::<f64>() < p
    }

    /// A stalled API: the call hangs until the stall ends.
    async fn hang(&self) {
        while let Some(end) = self.faults.stall_end(self.t()) {
            tokio::time::sleep(Duration::from_secs_f64((end - self.t()).max(0.01))).await;
        }
    }

    /// The fleet, without instances younger than the list lag.
    pub async fn list(&self) -> Result<Vec<Instance>, CloudError> {
        self.hang().await;
        let mut fleet = Box::pin(self.inner.list()).await?;
        let (now, lag) = (crate::clock::wall_s(), self.faults.list_lag_s);
        fleet.retain(|i| now - i.launched_at >= lag);
        Ok(fleet)
    }

    /// Launches one instance, or refuses as a throttled or full cloud does.
    pub async fn launch(
        &self,
        instance_type: &str,
        market: Market,
        key: Option<&str>,
    ) -> Result<Instance, CloudError> {
        self.hang().await;
        if self.faults.throttled(self.t()) {
            return Err(CloudError::Failed(
                "RequestLimitExceeded (--cloud-faults)".into(),
            ));
        }
        if self.faults.short_of(instance_type, market, self.t()) {
            return Err(CloudError::Failed(format!(
                "InsufficientInstanceCapacity for {instance_type} (--cloud-faults [[capacity]])"
            )));
        }
        if self.chance(self.faults.launch_error_rate) {
            return Err(CloudError::Failed(
                "InsufficientInstanceCapacity (--cloud-faults)".into(),
            ));
        }
        let scheduled = self
            .boot_failures_left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let never_boots = scheduled || self.chance(self.faults.boot_failure_rate);
        match (&self.inner, never_boots) {
            (Driver::Local(c), true) => {
                let (c, ty, key) = (c.clone(), instance_type.to_string(), key.map(String::from));
                tokio::task::spawn_blocking(move || {
                    c.launch_never_booting(&ty, market, key.as_deref())
                })
                .await
                .map_err(|e| CloudError::Failed(e.to_string()))?
            }
            _ => Box::pin(self.inner.launch(instance_type, market, key)).await,
        }
    }

    /// Terminates one instance (after any stall).
    pub async fn terminate(&self, id: &str) -> Result<(), CloudError> {
        self.hang().await;
        Box::pin(self.inner.terminate(id)).await
    }

    /// The driver under the faults.
    pub fn inner(&self) -> &Driver {
        &self.inner
    }
}

/// `inner` behind `faults`, or `inner` itself without any.
pub fn wrap(inner: Driver, faults: Option<CloudFaults>) -> Driver {
    match faults {
        Some(f) if !f.is_empty() => Driver::Faulty(Arc::new(FaultLayer::new(inner, f))),
        _ => inner,
    }
}
