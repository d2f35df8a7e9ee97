//! The fleet as the control plane sees it: instances as a cloud reports them, the [`Fleet`]
//! interface that the cloud drivers and the simulator's cloud both implement, and [`apply`], the
//! one way a controller step's actions reach a fleet (with the `--max-instances` bound and the
//! launches and terminations allowed per hour, [`ChangeBudget`]).
//!
//! The trait's methods return futures so that real clouds can do I/O; the simulator's are always
//! ready and it drives them with [`ready`], so this layer needs no async runtime.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mark_policies::types::Market;
use serde::{Deserialize, Serialize};

use super::controller::{Action, FleetInstance};

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Launched, not serving yet.
    Pending,
    /// Serving.
    Running,
}

/// An instance as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Cloud id.
    pub id: String,
    /// Fleet it belongs to (tag).
    pub fleet: String,
    /// Model it serves (tag).
    pub model: String,
    /// Type name.
    pub instance_type: String,
    /// Market.
    pub market: Market,
    /// Launch time, seconds since the Unix epoch (tag); the simulator's clock in `mark simulate`.
    pub launched_at: f64,
    /// Where its v2 endpoint listens, once known.
    pub addr: String,
    /// Pending or running.
    pub state: InstanceState,
    /// USD per hour it is billed at.
    pub price_per_hour: f64,
    /// Availability zone, where the cloud says (EC2's placement; empty elsewhere): a spot
    /// instance is billed its own zone's price.
    #[serde(default)]
    pub zone: String,
}

/// Billing rule shared by drivers and the simulator: per second with a 60 s minimum.
pub fn billed_seconds(alive_s: f64) -> f64 {
    alive_s.max(60.0)
}

/// The controller's view of `fleet`: instances for which `counts` holds (a worker out of rotation
/// serves nothing), with launch times on the loop's clock (`loop_time` of the cloud's stamp) and
/// the batches each has in flight.
pub fn view(
    fleet: &[Instance],
    counts: impl Fn(&str) -> bool,
    loop_time: impl Fn(f64) -> f64,
    in_flight: impl Fn(&str) -> u32,
) -> Vec<FleetInstance> {
    fleet
        .iter()
        .filter(|i| counts(&i.id))
        .map(|i| FleetInstance {
            id: i.id.clone(),
            instance_type: i.instance_type.clone(),
            market: i.market,
            launched_at: loop_time(i.launched_at),
            ready: i.state == InstanceState::Running,
            in_flight: in_flight(&i.id),
        })
        .collect()
}

/// Why a fleet call failed, typed at the boundary between the control loop and a cloud: the act
/// phase logs and counts it; `retryable` says whether the same call later may succeed. The cloud
/// drivers' error (`mark_gateway::cloud::CloudError`) is this type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// The catalog (or the cloud) has no such type.
    #[error("unknown instance type '{0}'")]
    UnknownType(String),
    /// A keyed launch whose key another controller already used: not launched again.
    #[error("launch {0} was already made (by another controller): not launched twice")]
    AlreadyLaunched(String),
    /// No live instance with this id (already gone).
    #[error("no live instance '{0}'")]
    NoSuchInstance(String),
    /// The fleet is at its bound.
    #[error("the fleet is at its bound")]
    AtBound,
    /// This replica no longer holds the controller lease: it must not change the fleet.
    #[error("this replica no longer holds the controller lease: not acting")]
    NotLeader,
    /// The call failed (an API error, a timeout, a process that would not start); retrying may
    /// help.
    #[error("{0}")]
    Failed(String),
}

impl FleetError {
    /// Whether the same call may succeed later (a failure of the call itself or a full fleet,
    /// not of its arguments or of who made it).
    pub fn retryable(&self) -> bool {
        matches!(self, FleetError::Failed(_) | FleetError::AtBound)
    }
}

/// A fleet the act phase changes: a cloud driver (through the lease fence), or the simulator's
/// instances. Listing is each side's own business (the live loop lists through its driver, the
/// simulator reads its instances), so it is not part of the trait.
pub trait Fleet {
    /// Launches one instance.
    fn launch(
        &mut self,
        instance_type: &str,
        market: Market,
    ) -> impl Future<Output = Result<(), FleetError>>;
    /// Terminates one instance.
    fn terminate(&mut self, id: &str) -> impl Future<Output = Result<(), FleetError>>;
}

/// What [`apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Instances launched.
    pub launched: u32,
    /// Instances terminated.
    pub terminated: u32,
    /// Launches not attempted: the fleet was at its bound.
    pub skipped_at_max: u32,
    /// Launches and terminations not attempted: the hour's budget was spent.
    pub skipped_by_rate: u32,
    /// Calls that failed, with the cause.
    pub failures: Vec<String>,
    /// Types whose launch the cloud refused (capacity, throttling): the rest of that launch
    /// action was not attempted, and the controller backs the type off (see `launch_health`).
    pub refused: Vec<(String, Market)>,
}

/// Default launches (and terminations) allowed per rolling hour.
pub const CHANGES_PER_HOUR: u32 = 60;

/// Launches and terminations allowed per rolling hour: a safety net under every policy, so a
/// plan or an SLO monitor that goes wrong cannot churn the fleet (and the bill) without bound.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBudget {
    /// Launches allowed in any hour.
    pub launches_per_hour: u32,
    /// Terminations allowed in any hour.
    pub terminations_per_hour: u32,
    launched: VecDeque<f64>,
    terminated: VecDeque<f64>,
}

impl ChangeBudget {
    /// A budget of `launches_per_hour` and `terminations_per_hour`.
    pub fn new(launches_per_hour: u32, terminations_per_hour: u32) -> Self {
        ChangeBudget {
            launches_per_hour,
            terminations_per_hour,
            launched: VecDeque::new(),
            terminated: VecDeque::new(),
        }
    }

    fn left(done: &mut VecDeque<f64>, limit: u32, now: f64) -> bool {
        while done.front().is_some_and(|&t| t <= now - 3600.0) {
            done.pop_front();
        }
        done.len() < limit as usize
    }

    /// Launches made in the hour before `now`.
    pub fn launches_in_hour(&mut self, now: f64) -> u32 {
        Self::left(&mut self.launched, u32::MAX, now);
        self.launched.len() as u32
    }

    /// Terminations made in the hour before `now`.
    pub fn terminations_in_hour(&mut self, now: f64) -> u32 {
        Self::left(&mut self.terminated, u32::MAX, now);
        self.terminated.len() as u32
    }

    /// Takes the launches of the last hour from the cloud (`launched_at` of the instances it
    /// lists) when it knows of more than this process made: a restart or a change of leader must
    /// not reset the hour's budget. (Terminated instances leave the listing, so this is a floor.)
    pub fn adopt_launches(&mut self, launched_at: impl Iterator<Item = f64>, now: f64) {
        Self::left(&mut self.launched, u32::MAX, now);
        let mut recent: Vec<f64> = launched_at
            .filter(|&t| t > now - 3600.0 && t <= now)
            .collect();
        if recent.len() > self.launched.len() {
            recent.sort_by(f64::total_cmp);
            self.launched = recent.into();
        }
    }
}

impl Default for ChangeBudget {
    fn default() -> Self {
        ChangeBudget::new(CHANGES_PER_HOUR, CHANGES_PER_HOUR)
    }
}

/// Applies a step's actions at time `now` to `fleet`, which holds `size` instances: launches
/// stop at `max_instances`, launches and terminations at what `budget` allows this hour; a
/// failed call is reported and the rest still run.
pub async fn apply<F: Fleet>(
    fleet: &mut F,
    actions: Vec<Action>,
    mut size: u32,
    max_instances: u32,
    budget: &mut ChangeBudget,
    now: f64,
) -> Applied {
    let mut done = Applied::default();
    for a in actions {
        match a {
            Action::Launch {
                instance_type,
                market,
                count,
            } => {
                for _ in 0..count {
                    if size >= max_instances {
                        done.skipped_at_max += 1;
                        continue;
                    }
                    if !ChangeBudget::left(&mut budget.launched, budget.launches_per_hour, now) {
                        done.skipped_by_rate += 1;
                        continue;
                    }
                    match fleet.launch(&instance_type, market).await {
                        Ok(()) => {
                            size += 1;
                            done.launched += 1;
                            budget.launched.push_back(now);
                        }
                        Err(e) => {
                            done.failures.push(format!("launch {instance_type}: {e}"));
                            if matches!(e, FleetError::Failed(_)) {
                                // capacity or throttling: asking again at once would only fail
                                // again; the next plan picks another type if it keeps failing
                                done.refused.push((instance_type.clone(), market));
                                break;
                            }
                        }
                    }
                }
            }
            Action::Terminate { id } => {
                if !ChangeBudget::left(&mut budget.terminated, budget.terminations_per_hour, now) {
                    done.skipped_by_rate += 1;
                    continue;
                }
                match fleet.terminate(&id).await {
                    Ok(()) => {
                        size = size.saturating_sub(1);
                        done.terminated += 1;
                        budget.terminated.push_back(now);
                    }
                    Err(e) => done.failures.push(format!("terminate {id}: {e}")),
                }
            }
        }
    }
    done
}

/// The value of a future that is ready at once (the simulator's fleet never waits).
///
/// # Panics
/// If the future is not ready on its first poll: only futures that do no I/O may come here.
pub fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("control::fleet::ready: the future waited (it must not do I/O)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory fleet that refuses one type.
    #[derive(Default)]
    struct Book {
        alive: Vec<String>,
        next: u32,
    }

    impl Fleet for Book {
        async fn launch(&mut self, ty: &str, _: Market) -> Result<(), FleetError> {
            if ty == "broken" {
                return Err(FleetError::Failed("no capacity".into()));
            }
            self.next += 1;
            self.alive.push(format!("i-{}", self.next));
            Ok(())
        }
        async fn terminate(&mut self, id: &str) -> Result<(), FleetError> {
            let n = self.alive.len();
            self.alive.retain(|a| a != id);
            if self.alive.len() == n {
                return Err(FleetError::NoSuchInstance(id.into()));
            }
            Ok(())
        }
    }

    fn launch(ty: &str, count: u32) -> Action {
        Action::on_demand(ty, count)
    }

    #[test]
    fn fleet_errors_say_whether_a_retry_may_help() {
        assert!(FleetError::Failed("throttled".into()).retryable());
        assert!(FleetError::AtBound.retryable());
        for e in [
            FleetError::UnknownType("x".into()),
            FleetError::AlreadyLaunched("g1".into()),
            FleetError::NoSuchInstance("i-1".into()),
            FleetError::NotLeader,
        ] {
            assert!(!e.retryable(), "{e}");
        }
        assert_eq!(
            FleetError::NotLeader.to_string(),
            "this replica no longer holds the controller lease: not acting"
        );
    }

    #[test]
    fn launches_stop_at_the_bound_and_failures_do_not_stop_the_rest() {
        let mut f = Book::default();
        let done = ready(apply(
            &mut f,
            vec![
                launch("broken", 1),
                launch("c5.large", 5),
                Action::Terminate { id: "i-9".into() },
                Action::Terminate { id: "i-1".into() },
            ],
            1,
            4,
            &mut ChangeBudget::default(),
            0.0,
        ));
        assert_eq!(done.launched, 3, "1 + 3 = the bound of 4");
        assert_eq!(done.skipped_at_max, 2);
        assert_eq!(done.terminated, 1);
        assert_eq!(done.failures.len(), 2, "{:?}", done.failures);
        assert_eq!(f.alive, vec!["i-2", "i-3"]);
    }

    #[test]
    fn launches_and_terminations_per_hour_are_bounded_on_a_rolling_hour() {
        let mut f = Book::default();
        let mut budget = ChangeBudget::new(3, 1);
        let done = ready(apply(
            &mut f,
            vec![launch("c5.large", 5)],
            0,
            100,
            &mut budget,
            0.0,
        ));
        assert_eq!((done.launched, done.skipped_by_rate), (3, 2));
        let done = ready(apply(
            &mut f,
            vec![
                Action::Terminate { id: "i-1".into() },
                Action::Terminate { id: "i-2".into() },
            ],
            3,
            100,
            &mut budget,
            1800.0,
        ));
        assert_eq!((done.terminated, done.skipped_by_rate), (1, 1));
        assert_eq!(budget.launches_in_hour(1800.0), 3);
        assert_eq!(budget.terminations_in_hour(1800.0), 1);
        // an hour after the first launches, the budget is back
        let done = ready(apply(
            &mut f,
            vec![launch("c5.large", 2)],
            2,
            100,
            &mut budget,
            3600.0,
        ));
        assert_eq!((done.launched, done.skipped_by_rate), (2, 0));
        assert_eq!(budget.launches_in_hour(3600.0), 2);
    }

    #[test]
    fn the_view_skips_what_does_not_count_and_moves_stamps_to_loop_time() {
        let inst = |id: &str, state| Instance {
            id: id.into(),
            fleet: "f".into(),
            model: "m".into(),
            instance_type: "c5.large".into(),
            market: Market::Spot,
            launched_at: 1000.0,
            addr: String::new(),
            state,
            price_per_hour: 0.1,
            zone: String::new(),
        };
        let fleet = [
            inst("a", InstanceState::Running),
            inst("b", InstanceState::Pending),
            inst("sick", InstanceState::Running),
        ];
        let v = view(
            &fleet,
            |id| id != "sick",
            |t| t - 900.0,
            |id| u32::from(id == "a"),
        );
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].launched_at, v[0].ready, v[0].in_flight),
            (100.0, true, 1)
        );
        assert_eq!(
            (v[1].id.as_str(), v[1].ready, v[1].in_flight),
            ("b", false, 0)
        );
    }

    #[test]
    fn billing_has_a_one_minute_minimum() {
        assert_eq!(billed_seconds(5.0), 60.0);
        assert_eq!(billed_seconds(61.5), 61.5);
    }

    #[test]
    fn the_hours_launch_budget_survives_a_restart() {
        // a new process (or leader) sees 4 instances the cloud launched in the last hour and one
        // older: 4 of its 5 launches are spent
        let mut b = ChangeBudget::new(5, 5);
        b.adopt_launches([100.0, 3000.0, 3100.0, 3200.0, 3300.0].into_iter(), 3800.0);
        assert_eq!(b.launches_in_hour(3800.0), 4);
        assert!(!ChangeBudget::left(&mut b.launched, 4, 3800.0));
        // what this process counted itself is kept when the cloud lists fewer
        b.adopt_launches([3300.0].into_iter(), 3800.0);
        assert_eq!(b.launches_in_hour(3800.0), 4);
    }
}
