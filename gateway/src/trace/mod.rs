//! Recording the live traffic and the control loop's view of it, for replay (`mark simulate
//! --workload trace:DIR`) and for judging policies on real traffic (docs/policies.md).
//!
//! - `schema`: the records (JSON Lines, schema 1);
//! - `writer`: the recorder's thread: segments, rotation, the disk bound;
//! - `reader`: a trace directory back into arrivals, windows, fleet and live figures.
//!
//! The request path pays one atomic load when nothing records, and a push of 16 bytes onto a
//! bounded buffer under an uncontended lock when something does (the model's name is interned;
//! nobody is woken: the writer takes the buffer every 10 ms). A full buffer drops the record
//! (counted, and written as a `dropped` record) instead of delaying the request. One recording
//! at a time per [`Tracing`], which the application state holds (no process-wide statics: two
//! gateways in one test process record apart).

pub mod live;
pub use mark_sim::trace::{reader, schema};
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use serde::Serialize;

use schema::{Context, InstanceRow, Rec};

/// A fresh directory for one run's recording under `parent` (`--record-trace DIR`):
/// `run-<unix milliseconds, 13 digits>-<pid>`, so that a restarted gateway records beside the
/// last run instead of refusing to start (and a stop and start within a second get two
/// names), and names sort by time (`trace:DIR` replays the newest).
pub fn run_dir(parent: &Path) -> PathBuf {
    parent.join(format!(
        "run-{:013}-{}",
        (crate::clock::wall_s() * 1000.0) as u64,
        std::process::id()
    ))
}

/// Records buffered for the writer (each kind) before new ones are dropped.
const QUEUE: usize = 1 << 16;

/// What the request path and the control loop hand to the writer.
#[derive(Default)]
pub struct Pending {
    /// Arrivals: (t, model index in `models`, items).
    pub arrivals: Vec<(f64, u16, u32)>,
    /// Model names, interned (only grows).
    pub models: Vec<String>,
    /// The control loop's records.
    pub other: Vec<Rec>,
    /// Set by `stop`: the end record's time.
    pub end: Option<f64>,
}

/// Smallest `--record-max-bytes`.
pub const MIN_BYTES: u64 = 64 << 10;

/// A gateway's trace recording: none, or one running; and what the headers of segments to come
/// carry.
#[derive(Default)]
pub struct Tracing {
    recorder: ArcSwapOption<Recorder>,
    header: Arc<Header>,
}

/// The control loop's setting and the fleet, for segment headers.
#[derive(Default)]
pub struct Header {
    context: Mutex<Option<Context>>,
    fleet: Mutex<Vec<InstanceRow>>,
}

impl Header {
    pub(crate) fn context(&self) -> Option<Context> {
        self.context.lock().expect("trace lock").clone()
    }

    pub(crate) fn fleet(&self) -> Vec<InstanceRow> {
        self.fleet.lock().expect("trace lock").clone()
    }
}

/// What the writer thread and the status share.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records written.
    pub records: AtomicU64,
    /// Bytes on disk now (after deletions).
    pub bytes: AtomicU64,
    /// Segments written so far.
    pub segments: AtomicU64,
    /// Segments deleted to stay under the bound.
    pub deleted: AtomicU64,
    /// Records dropped because the queue was full, not yet written as a `dropped` record.
    pub dropped_pending: AtomicU64,
    /// Records dropped in all.
    pub dropped: AtomicU64,
    /// The writer's last error, if it had one.
    pub error: Mutex<Option<String>>,
    /// Write errors so far (the writer goes on in a new segment after each).
    pub write_errors: AtomicU64,
}

/// A running recording.
pub struct Recorder {
    buffer: Arc<Mutex<Pending>>,
    started: Instant,
    dir: PathBuf,
    max_bytes: u64,
    counters: Arc<Counters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// `GET /admin/v1/trace/status` and the answers of start and stop.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Recording now.
    pub recording: bool,
    /// Directory.
    pub dir: String,
    /// Seconds recorded.
    pub seconds: f64,
    /// Records written.
    pub records: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Segments written.
    pub segments: u64,
    /// Oldest segments deleted to stay under the bound.
    pub deleted_segments: u64,
    /// Records dropped (the writer fell behind).
    pub dropped: u64,
    /// The writer's last error, if it had one.
    pub error: Option<String>,
    /// Write errors so far (after each the writer goes on in a new segment).
    pub write_errors: u64,
}

impl Recorder {
    fn status(&self, recording: bool) -> Status {
        let c = &self.counters;
        Status {
            recording,
            dir: self.dir.display().to_string(),
            seconds: self.started.elapsed().as_secs_f64(),
            records: c.records.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            max_bytes: self.max_bytes,
            segments: c.segments.load(Relaxed),
            deleted_segments: c.deleted.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            error: c.error.lock().expect("trace lock").clone(),
            write_errors: c.write_errors.load(Relaxed),
        }
    }

    fn dropped(&self) {
        self.counters.dropped.fetch_add(1, Relaxed);
        self.counters.dropped_pending.fetch_add(1, Relaxed);
    }

    fn send(&self, r: Rec) {
        let mut b = self.buffer.lock().expect("trace buffer lock");
        if b.other.len() >= QUEUE {
            drop(b);
            return self.dropped();
        }
        b.other.push(r);
    }

    fn arrive(&self, model: &str, items: u32) {
        let t = self.started.elapsed().as_secs_f64();
        let mut b = self.buffer.lock().expect("trace buffer lock");
        let idx = match b.models.iter().position(|m| m == model) {
            Some(i) => i,
            None if b.models.len() < usize::from(u16::MAX) => {
                b.models.push(model.to_string());
                b.models.len() - 1
            }
            None => usize::from(u16::MAX),
        };
        if b.arrivals.len() >= QUEUE || idx == usize::from(u16::MAX) {
            drop(b);
            return self.dropped();
        }
        b.arrivals.push((t, idx as u16, items));
    }
}

impl Tracing {
    /// Starts recording into `dir` (created; it must not hold a trace already), at most
    /// `max_bytes` on disk.
    pub fn start(&self, dir: &Path, max_bytes: u64) -> Result<Status, String> {
        if max_bytes < MIN_BYTES {
            return Err(format!(
                "the trace bound {max_bytes} bytes is below the smallest, {MIN_BYTES}"
            ));
        }
        if let Some(r) = self.recorder.load_full() {
            return Err(format!(
                "already recording into {}; stop it first",
                r.dir.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if writer::segments(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .next()
            .is_some()
        {
            return Err(format!(
                "{} already holds a trace; choose another directory",
                dir.display()
            ));
        }
        let buffer = Arc::new(Mutex::new(Pending::default()));
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        let unix = crate::clock::wall_s();
        let w = writer::Writer::new(
            dir.to_path_buf(),
            max_bytes,
            counters.clone(),
            started,
            unix,
            self.header.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn({
                let buffer = buffer.clone();
                move || w.run(&buffer)
            })
            .map_err(|e| format!("trace writer thread: {e}"))?;
        let r = Arc::new(Recorder {
            buffer,
            started,
            dir: dir.to_path_buf(),
            max_bytes,
            counters,
            thread: Mutex::new(Some(thread)),
        });
        let st = r.status(true);
        self.recorder.store(Some(r));
        tracing::info!(dir = %dir.display(), max_bytes, "recording a trace");
        Ok(st)
    }

    /// Stops recording: the writer writes what is queued and an `end` record, and closes.
    pub fn stop(&self) -> Option<Status> {
        let r = self.recorder.swap(None)?;
        let t = r.started.elapsed().as_secs_f64();
        r.buffer.lock().expect("trace buffer lock").end = Some(t);
        if let Some(h) = r.thread.lock().expect("trace lock").take() {
            // a hung filesystem must not hold the shutdown: wait 5 s at most, then leave it
            let until = Instant::now() + std::time::Duration::from_secs(5);
            while !h.is_finished() && Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!(dir = %r.dir.display(), "the trace writer did not finish within 5 s; left behind");
            }
        }
        let st = r.status(false);
        tracing::info!(dir = %st.dir, records = st.records, bytes = st.bytes, "trace recording stopped");
        Some(st)
    }

    /// The running recording's status.
    pub fn status(&self) -> Option<Status> {
        self.recorder.load_full().map(|r| r.status(true))
    }

    /// One request's arrival (the request path).
    #[inline]
    pub fn arrival(&self, model: &str, items: u32) {
        let g = self.recorder.load();
        if let Some(r) = g.as_ref() {
            r.arrive(model, items);
        }
    }

    /// A control-loop record, made with the recording's time only when something records.
    pub fn record(&self, make: impl FnOnce(f64) -> Rec) {
        let g = self.recorder.load();
        if let Some(r) = g.as_ref() {
            r.send(make(r.started.elapsed().as_secs_f64()));
        }
    }

    /// The control loop's setting, for the headers of segments to come.
    pub fn set_context(&self, c: Context) {
        *self.header.context.lock().expect("trace lock") = Some(c.clone());
        self.record(|t| Rec::Context { t, context: c });
    }

    /// The fleet now, for the headers of segments to come.
    pub fn set_fleet(&self, f: Vec<InstanceRow>) {
        *self.header.fleet.lock().expect("trace lock") = f;
    }
}

/// The trace recorder in the `/metrics` exposition.
pub struct TraceMetrics(pub Arc<Tracing>);

impl crate::metrics::exposition::Encode for TraceMetrics {
    fn encode(
        &self,
        enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> std::fmt::Result {
        use crate::metrics::exposition::{counter, gauge};
        let st = self.0.status();
        let (rec, records, dropped, bytes) = st
            .as_ref()
            .map_or((0, 0, 0, 0), |s| (1, s.records, s.dropped, s.bytes));
        gauge(
            enc,
            "mark_trace_recording",
            "A trace is being recorded (1) or not (0).",
            [(Vec::new(), f64::from(rec))],
        )?;
        counter(
            enc,
            "mark_trace_records_total",
            "Records written to the current trace.",
            [(Vec::new(), records)],
        )?;
        counter(
            enc,
            "mark_trace_dropped_total",
            "Records of the current trace dropped because the writer fell behind.",
            [(Vec::new(), dropped)],
        )?;
        counter(
            enc,
            "mark_trace_write_errors_total",
            "Write errors of the current trace (the writer goes on in a new segment after each).",
            [(Vec::new(), st.as_ref().map_or(0, |s| s.write_errors))],
        )?;
        gauge(
            enc,
            "mark_trace_bytes",
            "Bytes the current trace holds on disk.",
            [(Vec::new(), bytes as f64)],
        )
    }
}
