// The conversions every contract version shares, included by `v1` and `v2` of `convert` with
// `w` naming that version's types (their Rust types differ, their shapes do not).

/// Native queue state to WIT.
pub fn queue_state(s: &n::QueueState<'_>) -> w::QueueState {
    w::QueueState {
        queued_items: s.queued_items,
        queued_requests: s.queued_requests,
        oldest_wait_us: s.oldest_wait_us,
        slo_us: s.slo_us,
        arrival_rate: s.arrival_rate,
        max_batch: s.max_batch,
        executors: s.executors,
        profile: s
            .profile
            .iter()
            .map(|p| w::ProfilePoint {
                batch: p.batch,
                latency_us: p.latency_us,
            })
            .collect(),
    }
}

/// WIT decision to native.
pub fn decision(d: w::BatchDecision) -> n::BatchDecision {
    match d {
        w::BatchDecision::Send(x) => n::BatchDecision::Send(x),
        w::BatchDecision::Wait(x) => n::BatchDecision::Wait(x),
    }
}

impl From<n::Market> for w::Market {
    fn from(m: n::Market) -> Self {
        match m {
            n::Market::OnDemand => w::Market::OnDemand,
            n::Market::Spot => w::Market::Spot,
        }
    }
}

impl From<w::Market> for n::Market {
    fn from(m: w::Market) -> Self {
        match m {
            w::Market::OnDemand => n::Market::OnDemand,
            w::Market::Spot => n::Market::Spot,
        }
    }
}

/// Native fleet to WIT.
pub fn fleet(f: &[n::FleetEntry]) -> Vec<w::FleetEntry> {
    f.iter()
        .map(|e| w::FleetEntry {
            instance_type: e.instance_type.clone(),
            market: e.market.into(),
            running: e.running,
            pending: e.pending,
            ages_seconds: e.ages_seconds.clone(),
        })
        .collect()
}

/// Native catalog to WIT.
pub fn catalog(c: &[n::InstanceType]) -> Vec<w::InstanceType> {
    c.iter()
        .map(|t| w::InstanceType {
            name: t.name.clone(),
            vcpus: t.vcpus,
            gpus: t.gpus,
            memory_gib: t.memory_gib,
            price_on_demand: t.price_on_demand,
            price_spot: t.price_spot,
            launch_seconds: t.launch_seconds,
            capacity_rps: t.capacity_rps,
            burstable: t.burstable,
        })
        .collect()
}

/// Native SLO to WIT.
pub fn slo(s: n::Slo) -> w::Slo {
    w::Slo {
        latency_ms: s.latency_ms,
        attainment_target: s.attainment_target,
    }
}

/// WIT plan to native.
pub fn plan(p: w::Plan) -> n::Plan {
    n::Plan {
        targets: p
            .targets
            .into_iter()
            .map(|t| n::FleetTarget {
                instance_type: t.instance_type,
                market: t.market.into(),
                count: t.count,
            })
            .collect(),
        lambda_share: p.lambda_share,
    }
}

/// WIT error to a message.
pub fn error(e: w::PolicyError) -> String {
    match e {
        w::PolicyError::InvalidInput(m) => format!("invalid input: {m}"),
        w::PolicyError::Unsupported(m) => format!("unsupported: {m}"),
    }
}

