//! One model's lane through the simulated gateway (issue 27: many models, one fleet): its own
//! queue, service curves per type, batch waits, spill-over, latency histogram and admission
//! figures. The instances are shared: an idle one takes a batch of one lane at a time, the
//! lane whose oldest request is due first (its arrival plus its SLO), and a batch runs on that
//! lane's curve.

use super::*;

/// What a lane is built from.
#[derive(Clone)]
pub struct LaneSpec<'w> {
    /// Model name.
    pub name: String,
    /// Its arrivals.
    pub workload: &'w Workload,
    /// Every catalog type's service curve for this model (same types, same order, in every lane).
    pub types: Vec<TypeModel>,
    /// Its latency objective, ms.
    pub slo_ms: f64,
    /// Its largest batch.
    pub max_batch: u32,
}

/// A lane's state in a run.
pub(super) struct Lane {
    pub name: String,
    pub slo_ms: f64,
    pub max_batch: u32,
    pub types: Vec<TypeModel>,
    pub queue: VecDeque<f64>,
    pub waiting: Option<(f64, usize)>,
    pub spill_wake: f64,
    pub spill: Option<(f64, usize, Vec<f64>)>,
    pub hist: LatencyHist,
    pub window_arrivals: u64,
    pub arrival_rate: f64,
    /// Requests refused at arrival or dropped before running (`reject_late`).
    pub rejected: u64,
    /// Best items/s of each type (from this lane's curves), for admission.
    pub best_rate: Vec<f64>,
    /// Largest batch any type runs (admission waits for a full one before judging).
    pub full_batch: usize,
    /// Service time of the fastest type's full batch, seconds.
    pub full_batch_s: f64,
    /// Ready capacity (items/s) and when it was computed.
    pub capacity_at: (f64, f64),
    /// Instance-seconds its batches took (its share of the instances' cost).
    pub busy_s: f64,
    /// Requests Lambda served for it.
    pub lambda_items: u64,
    /// The idle worker the live batch loop reserved for this model's next batch: with the
    /// gateway's executors busy and nothing queued, it claims an idle worker and sends it
    /// whatever comes next, even if the executors are free by then (`reserve_after`).
    pub reserved: Option<usize>,
}

impl Lane {
    pub(super) fn new(spec: &LaneSpec<'_>) -> Self {
        Lane {
            name: spec.name.clone(),
            slo_ms: spec.slo_ms,
            max_batch: spec.max_batch,
            types: spec.types.clone(),
            queue: VecDeque::new(),
            waiting: None,
            spill_wake: -1.0,
            spill: None,
            hist: LatencyHist::default(),
            window_arrivals: 0,
            arrival_rate: spec.workload.mean_rate_at(0.0),
            rejected: 0,
            best_rate: Vec::new(),
            full_batch: 1,
            full_batch_s: 0.0,
            capacity_at: (-1.0, 0.0),
            busy_s: 0.0,
            lambda_items: 0,
            reserved: None,
        }
    }
}

/// The lanes' arrival streams merged in time order: (time, lane).
pub(super) struct Merged<'w> {
    streams: Vec<std::iter::Peekable<crate::workload::Arrivals<'w>>>,
}

impl<'w> Merged<'w> {
    /// Lane `m`'s stream is seeded `seed + m` (one lane: `seed`, as a single-model run).
    pub(super) fn new(specs: &[LaneSpec<'w>], seed: u64) -> Self {
        Merged {
            streams: specs
                .iter()
                .enumerate()
                .map(|(m, s)| s.workload.arrivals(seed.wrapping_add(m as u64)).peekable())
                .collect(),
        }
    }

    /// The next arrival without taking it.
    pub(super) fn peek(&mut self) -> Option<(f64, usize)> {
        let mut best: Option<(f64, usize)> = None;
        for (m, s) in self.streams.iter_mut().enumerate() {
            if let Some(&t) = s.peek() {
                if best.is_none_or(|b| t < b.0) {
                    best = Some((t, m));
                }
            }
        }
        best
    }

    /// Takes the arrival `peek` showed.
    pub(super) fn take(&mut self, m: usize) {
        self.streams[m].next();
    }
}
