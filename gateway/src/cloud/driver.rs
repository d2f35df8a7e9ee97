//! One interface over the cloud drivers, as the control loop uses them.

use std::sync::Arc;

use mark_policies::types::Market;

use super::ec2::Ec2Cloud;
use super::local::LocalCloud;
use super::CloudError;
use crate::control::fleet::{Instance, InstanceState};

/// A cloud driver.
#[derive(Clone)]
pub enum Driver {
    /// `mark worker` processes on this machine.
    Local(Arc<LocalCloud>),
    /// AWS EC2.
    Ec2(Arc<Ec2Cloud>),
    /// Either, behind the fault layer (`--cloud-faults`).
    Faulty(Arc<super::faults::FaultLayer>),
}

impl Driver {
    /// The fleet. An error means "unknown", never "empty": the caller must not plan on it.
    /// Running instances whose worker is not alive (models ready) are reported pending.
    pub async fn list(&self) -> Result<Vec<Instance>, CloudError> {
        match self {
            Driver::Local(c) => {
                let c = c.clone();
                tokio::task::spawn_blocking(move || c.list())
                    .await
                    .map_err(|e| CloudError::Failed(e.to_string()))
            }
            Driver::Ec2(c) => {
                let mut fleet = c.list().await?;
                for i in fleet
                    .iter_mut()
                    .filter(|i| i.state == InstanceState::Running)
                {
                    // running means our worker answers with its models ready, not a TCP accept
                    if i.addr.is_empty() || !crate::codec::readiness::serves(&i.addr).await {
                        i.state = InstanceState::Pending;
                    }
                }
                Ok(fleet)
            }
            Driver::Faulty(f) => f.list().await,
        }
    }

    /// Launches one instance, under a launch `key` when a controller planned it
    /// (`autoscale::keyed`).
    pub async fn launch(
        &self,
        instance_type: &str,
        market: Market,
        key: Option<&str>,
    ) -> Result<Instance, CloudError> {
        match self {
            Driver::Local(c) => {
                let (c, ty, key) = (c.clone(), instance_type.to_string(), key.map(String::from));
                tokio::task::spawn_blocking(move || c.launch_keyed(&ty, market, key.as_deref()))
                    .await
                    .map_err(|e| CloudError::Failed(e.to_string()))?
            }
            Driver::Ec2(c) => c.launch_keyed(instance_type, market, key).await,
            Driver::Faulty(f) => f.launch(instance_type, market, key).await,
        }
    }

    /// Terminates one instance.
    pub async fn terminate(&self, id: &str) -> Result<(), CloudError> {
        match self {
            Driver::Local(c) => {
                let (c, id) = (c.clone(), id.to_string());
                tokio::task::spawn_blocking(move || c.terminate(&id))
                    .await
                    .map_err(|e| CloudError::Failed(e.to_string()))?
            }
            Driver::Ec2(c) => c.terminate(id).await,
            Driver::Faulty(f) => f.terminate(id).await,
        }
    }

    /// Stages a spot interruption of `share` of the running instances (at least one when the
    /// share is positive), oldest first: the local cloud kills them at once, as AWS reclaims a
    /// spot instance. EC2 reclaims come from AWS, so the EC2 driver refuses. Returns the ids.
    pub async fn interrupt_share(&self, share: f64) -> Result<Vec<String>, CloudError> {
        let local = match self {
            Driver::Faulty(f) => f.inner(),
            d => d,
        };
        let Driver::Local(c) = local else {
            return Err(CloudError::Failed(
                "spot interruptions on EC2 come from AWS; stage them in an emulator".into(),
            ));
        };
        let running: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(|i| i.state == InstanceState::Running)
            .map(|i| i.id)
            .collect();
        let n = ((running.len() as f64 * share).ceil() as usize).min(running.len());
        let ids: Vec<String> = running.into_iter().take(n).collect();
        let (c, todo) = (c.clone(), ids.clone());
        tokio::task::spawn_blocking(move || todo.iter().try_for_each(|id| c.interrupt(id)))
            .await
            .map_err(|e| CloudError::Failed(e.to_string()))??;
        Ok(ids)
    }
}
