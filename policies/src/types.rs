//! Plain-Rust mirrors of the WIT types (`wit/policy.wit`), so the policies run natively without
//! any WebAssembly machinery.

/// Measured latency of one batch size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfilePoint {
    /// Items along dim 0.
    pub batch: u32,
    /// Expected (p99) latency, microseconds.
    pub latency_us: f64,
}

/// What a batcher sees of a model queue when a backend is free.
#[derive(Debug, Clone, Copy)]
pub struct QueueState<'a> {
    /// Items waiting that can join the next batch.
    pub queued_items: u32,
    /// Requests waiting.
    pub queued_requests: u32,
    /// Age of the oldest waiting request, microseconds.
    pub oldest_wait_us: u64,
    /// Latency objective, microseconds.
    pub slo_us: u64,
    /// Arrival rate, items per second.
    pub arrival_rate: f64,
    /// Largest batch the backend accepts.
    pub max_batch: u32,
    /// Executors serving this queue.
    pub executors: u32,
    /// Latency per batch size, sorted by batch.
    pub profile: &'a [ProfilePoint],
}

/// A batcher's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDecision {
    /// Send up to this many items now.
    Send(u32),
    /// Wait up to this many microseconds for more.
    Wait(u64),
}

/// Pricing market. Written `on-demand` / `spot` everywhere text meets it (catalog, tags, CLI,
/// status JSON): through `Display`/`FromStr`, and serde with the `serde` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Market {
    /// On-demand.
    OnDemand,
    /// Spot (interruptible, cheaper).
    Spot,
}

impl Market {
    /// Both markets, on-demand first.
    pub const ALL: [Market; 2] = [Market::OnDemand, Market::Spot];

    /// The name used in text: `on-demand` or `spot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
        }
    }
}

impl core::fmt::Display for Market {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A market name that is neither `on-demand` nor `spot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMarket(pub String);

impl core::fmt::Display for UnknownMarket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "unknown market '{}' (on-demand or spot)", self.0)
    }
}

impl std::error::Error for UnknownMarket {}

impl core::str::FromStr for Market {
    type Err = UnknownMarket;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on-demand" => Ok(Market::OnDemand),
            "spot" => Ok(Market::Spot),
            other => Err(UnknownMarket(other.into())),
        }
    }
}

/// One instance type of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceType {
    /// Cloud name.
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// GPUs.
    pub gpus: u32,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// USD per hour on-demand.
    pub price_on_demand: f64,
    /// USD per hour spot (0 = not offered).
    pub price_spot: f64,
    /// Seconds from launch to serving.
    pub launch_seconds: f64,
    /// Requests per second served within the SLO.
    pub capacity_rps: f64,
    /// Burstable (CPU credits).
    pub burstable: bool,
}

impl InstanceType {
    /// USD per hour in `market`.
    pub fn price(&self, market: Market) -> f64 {
        match market {
            Market::OnDemand => self.price_on_demand,
            Market::Spot => self.price_spot,
        }
    }
}

/// Instances of one type and market in the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEntry {
    /// Type name.
    pub instance_type: String,
    /// Market.
    pub market: Market,
    /// Serving.
    pub running: u32,
    /// Launched, not serving yet.
    pub pending: u32,
    /// Ages in seconds.
    pub ages_seconds: Vec<f64>,
}

/// The latency objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Per-request objective, ms.
    pub latency_ms: f64,
    /// Share that must meet it.
    pub attainment_target: f64,
}

/// Desired count of one type and market.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetTarget {
    /// Type name.
    pub instance_type: String,
    /// Market.
    pub market: Market,
    /// Count.
    pub count: u32,
}

/// A provisioner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Target fleet; types not listed go to zero.
    pub targets: Vec<FleetTarget>,
    /// Share of load to send to serverless functions.
    pub lambda_share: f64,
}

/// What one instance of a type serves of one model alone.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeCapacity {
    /// Type name.
    pub instance_type: String,
    /// Requests per second of this model one instance serves within the model's SLO (0: the
    /// type has no curve for it and does not serve it).
    pub capacity_rps: f64,
}

/// One model's part in a plan for several (WIT 0.2.0 `model-demand`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDemand {
    /// Model name.
    pub model: String,
    /// Predicted peak rate per interval, req/s.
    pub forecast: Vec<f64>,
    /// The model's latency objective.
    pub slo: Slo,
    /// `cap(T, m)` for every catalog type.
    pub capacity: Vec<TypeCapacity>,
    /// Memory the model takes on an instance once loaded, GiB (measured at load).
    pub footprint_gib: f64,
    /// Attainment of recent intervals (None before any request).
    pub attainment: Option<f64>,
    /// p99 latency of its answers over the interval before this plan, ms (the upper bound of
    /// the histogram bucket it falls in: at most 10% high in the simulator, the gateway's
    /// latency buckets live); None when nothing was answered.
    pub p99_ms: Option<f64>,
}

/// Why a policy declined to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// Inputs were unusable.
    InvalidInput(String),
    /// The policy does not handle this case.
    Unsupported(String),
}

#[cfg(test)]
mod tests {
    use super::Market;

    #[test]
    fn market_names_round_trip() {
        for m in Market::ALL {
            assert_eq!(m.to_string().parse::<Market>(), Ok(m));
        }
        assert_eq!("on-demand".parse(), Ok(Market::OnDemand));
        let e = "ondemand".parse::<Market>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown market 'ondemand' (on-demand or spot)"
        );
    }
}
