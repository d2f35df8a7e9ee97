//! Reading a trace directory back: the arrivals, the control loop's windows, the fleet at the
//! start and the live figures (cost, attainment, p99) a replay is compared with.

use std::path::{Path, PathBuf};

use super::schema::{Context, InstanceRow, Rec, SCHEMA};

/// A trace that cannot be read: the message names the file (and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TraceError(pub String);

/// A histogram as a trace holds it: (upper bound ms or `None` for +Inf, count in bucket).
pub type Buckets = Vec<(Option<f64>, u64)>;

/// A fleet record's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    /// When.
    pub t: f64,
    /// Cost so far.
    pub cost: f64,
    /// Answered so far.
    pub answered: u64,
    /// Latency histogram so far.
    pub buckets: Buckets,
    /// The host's overhead histogram so far (empty in traces of older builds).
    pub host: Buckets,
    /// The fleet workers' overhead histogram so far (likewise).
    pub worker: Buckets,
}

/// What a replay needs of a trace.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The setting (from the first header that has one).
    pub context: Option<Context>,
    /// Segments read.
    pub segments: usize,
    /// When the first segment left starts (older ones may have been deleted).
    pub t0: f64,
    /// The fleet then.
    pub fleet_at_start: Vec<InstanceRow>,
    /// Arrivals of the model: (seconds since `t0`, items).
    pub arrivals: Vec<(f64, u32)>,
    /// Arrivals of other models (not replayed).
    pub other_arrivals: u64,
    /// Windows: (t, arrived, done, missed).
    pub windows: Vec<(f64, u64, u64, u64)>,
    /// First and last fleet totals.
    pub totals: Option<(Totals, Totals)>,
    /// Controller steps recorded.
    pub steps: u64,
    /// Records the recorder dropped.
    pub dropped: u64,
    /// The recording ended cleanly.
    pub ended: bool,
    /// Seconds from `t0` to the last record.
    pub duration_s: f64,
    /// Items of every model read (bounded by `MAX_ARRIVALS`).
    pub items_read: u64,
}

/// Most items one recorded request may carry (a replay expands each into arrivals).
pub const MAX_ITEMS: u32 = 1 << 16;
/// Most items (every model's) read from one trace.
pub const MAX_ARRIVALS: usize = 100_000_000;

fn err(m: impl Into<String>) -> TraceError {
    TraceError(m.into())
}

/// The newest `run-…` subdirectory of `dir` that holds segments.
fn newest_run(dir: &Path) -> Option<std::path::PathBuf> {
    let mut runs: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("run-"))
                && segments(p).is_ok_and(|mut s| s.next().is_some())
        })
        .collect();
    runs.sort();
    runs.pop()
}

/// Reads the trace in `dir` (or in its newest `run-…` subdirectory, as `--record-trace DIR`
/// writes them); `model` picks the model replayed (default: the context's, or the only one).
pub fn read(dir: &Path, model: Option<&str>) -> Result<Trace, TraceError> {
    if !dir.is_dir() {
        return Err(err(format!("{}: not a directory", dir.display())));
    }
    let files: Vec<_> = segments(dir)
        .map_err(|e| err(format!("{}: {e}", dir.display())))?
        .collect();
    if files.is_empty() {
        // a `--record-trace DIR` of several runs: the newest run (`run-<unix time>-<pid>`)
        if let Some(run) = newest_run(dir) {
            eprintln!(
                "{}: replaying its newest run, {}",
                dir.display(),
                run.display()
            );
            return read(&run, model);
        }
        return Err(err(format!(
            "{}: not a trace: no segment files (trace-NNNNNN.jsonl) in it",
            dir.display()
        )));
    }
    let mut tr = Trace::default();
    let mut all: Vec<(f64, String, u32)> = Vec::new();
    let mut last_t = 0.0f64;
    for (fi, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).map_err(|e| err(format!("{}: {e}", f.display())))?;
        let lines: Vec<&str> = text.lines().collect();
        for (li, line) in lines.iter().enumerate() {
            let rec: Rec = match serde_json::from_str(line) {
                Ok(r) => r,
                // a crash (the last segment) or a write error the writer went on after (any
                // segment) can cut a segment's last line short: that one is skipped
                Err(_) if li + 1 == lines.len() && !text.ends_with('\n') => break,
                Err(e) => {
                    return Err(err(format!(
                        "{} line {}: not a trace record: {e}",
                        f.display(),
                        li + 1
                    )))
                }
            };
            if li == 0 && !matches!(rec, Rec::Header { .. }) {
                return Err(err(format!(
                    "{} line 1: not a trace: a segment starts with a header record",
                    f.display()
                )));
            }
            take(&mut tr, &mut all, &mut last_t, fi, rec, f)?;
        }
    }
    tr.segments = files.len();
    let model = match (model, &tr.context) {
        (Some(m), _) => m.to_string(),
        (None, Some(c)) => c.model.clone(),
        (None, None) => all.first().map(|a| a.1.clone()).unwrap_or_default(),
    };
    for (t, m, n) in all {
        if m == model {
            tr.arrivals.push(((t - tr.t0).max(0.0), n));
        } else {
            tr.other_arrivals += u64::from(n);
        }
    }
    tr.duration_s = (last_t - tr.t0).max(0.0);
    Ok(tr)
}

fn take(
    tr: &mut Trace,
    all: &mut Vec<(f64, String, u32)>,
    last_t: &mut f64,
    file_index: usize,
    rec: Rec,
    f: &Path,
) -> Result<(), TraceError> {
    match rec {
        Rec::Header {
            schema,
            t,
            context,
            fleet,
            ..
        } => {
            if schema != SCHEMA {
                return Err(err(format!(
                    "{}: trace schema {schema}; this mark reads schema {SCHEMA}",
                    f.display()
                )));
            }
            if file_index == 0 {
                tr.t0 = t;
                tr.fleet_at_start = fleet;
            }
            if tr.context.is_none() {
                tr.context = context;
            }
            *last_t = last_t.max(t);
        }
        Rec::Context { t, context } => {
            *last_t = last_t.max(t);
            if tr.context.is_none() {
                tr.context = Some(context);
            }
        }
        Rec::Arrival { t, m, n } => {
            if n == 0 || n > MAX_ITEMS || !t.is_finite() {
                return Err(err(format!(
                    "{}: an arrival of {n} items at {t} s: items must be in 1..={MAX_ITEMS}",
                    f.display()
                )));
            }
            tr.items_read += u64::from(n);
            if tr.items_read > MAX_ARRIVALS as u64 {
                return Err(err(format!(
                    "{}: more than {MAX_ARRIVALS} items arrived; replay a shorter trace",
                    f.display()
                )));
            }
            *last_t = last_t.max(t);
            all.push((t, m, n));
        }
        Rec::Window {
            t,
            arrived,
            done,
            missed,
        } => {
            *last_t = last_t.max(t);
            tr.windows.push((t - tr.t0, arrived, done, missed));
        }
        Rec::Step { t, .. } => {
            *last_t = last_t.max(t);
            tr.steps += 1;
        }
        Rec::Fleet {
            t,
            cost,
            answered,
            latency_buckets_ms,
            host_buckets_ms,
            worker_buckets_ms,
            ..
        } => {
            *last_t = last_t.max(t);
            let now = Totals {
                t: t - tr.t0,
                cost,
                answered,
                buckets: latency_buckets_ms,
                host: host_buckets_ms,
                worker: worker_buckets_ms,
            };
            tr.totals = Some(match tr.totals.take() {
                None => (now.clone(), now),
                Some((first, _)) => (first, now),
            });
        }
        Rec::Dropped { t, n } => {
            *last_t = last_t.max(t);
            tr.dropped += n;
        }
        Rec::End { t } => {
            *last_t = last_t.max(t);
            tr.ended = true;
        }
    }
    Ok(())
}

/// The live figures over the trace: requests (items), attainment, cost and p99 (ms), from
/// the windows and the first and last fleet totals.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Live {
    /// Items that arrived (the model's).
    pub requests: u64,
    /// 1 − missed/done over the windows.
    pub attainment: Option<f64>,
    /// Cost between the first and the last fleet record, dollars.
    pub cost: Option<f64>,
    /// p99 latency of the requests answered in between, ms (a bucket's upper bound).
    pub p99_ms: Option<f64>,
    /// The lower bound of that bucket, ms (0 for the first): the live p99 lies in
    /// `(p99_floor_ms, p99_ms]`, as finely as the latency histogram resolves it.
    pub p99_floor_ms: Option<f64>,
    /// p99 of the host's overhead on the gateway's executors in between, ms (a bucket's upper
    /// bound; none in traces of older builds): what the replay adds to their requests.
    pub host_p99_ms: Option<f64>,
    /// The same for the fleet workers' overhead.
    pub worker_p99_ms: Option<f64>,
}

impl Trace {
    /// The live figures.
    pub fn live(&self) -> Live {
        let (done, missed) = self
            .windows
            .iter()
            .fold((0, 0), |(d, m), w| (d + w.2, m + w.3));
        let (cost, p99) = match &self.totals {
            Some((a, b)) if b.t > a.t => (
                Some(b.cost - a.cost),
                p99_row(&rows(between(&a.buckets, &b.buckets))),
            ),
            _ => (None, None),
        };
        Live {
            requests: self.arrivals.iter().map(|a| u64::from(a.1)).sum(),
            attainment: (done > 0).then(|| 1.0 - missed as f64 / done as f64),
            cost,
            p99_ms: p99.map(|r| r.1),
            p99_floor_ms: p99.map(|r| r.0),
            host_p99_ms: p99_row(&self.host_overhead_ms()).map(|r| r.1),
            worker_p99_ms: p99_row(&self.worker_overhead_ms()).map(|r| r.1),
        }
    }

    /// The host's overhead per request the gateway's executors answered between the first and
    /// the last fleet record: (bucket's floor ms, its bound ms or infinity, requests), empty when
    /// the trace has none (older builds, or nothing ran on the executors).
    pub fn host_overhead_ms(&self) -> Vec<(f64, f64, u64)> {
        self.overhead_ms(|t| &t.host)
    }

    /// The same for the requests the fleet's workers answered.
    pub fn worker_overhead_ms(&self) -> Vec<(f64, f64, u64)> {
        self.overhead_ms(|t| &t.worker)
    }

    fn overhead_ms(&self, of: fn(&Totals) -> &Buckets) -> Vec<(f64, f64, u64)> {
        let Some((a, b)) = &self.totals else {
            return Vec::new();
        };
        let diff = between(of(a), of(b));
        if diff.iter().all(|x| x.1 == 0) {
            return Vec::new();
        }
        rows(diff)
    }
}

/// A histogram as rows (bucket's floor, its bound or infinity, count); the first floor is 0.
fn rows(b: Buckets) -> Vec<(f64, f64, u64)> {
    let mut floor = 0.0;
    b.into_iter()
        .map(|(le, n)| {
            let le = le.unwrap_or(f64::INFINITY);
            let row = (floor, le, n);
            floor = le;
            row
        })
        .collect()
}

/// The row (floor, bound, count) of the bucket that holds the 99th percentile; `None` when
/// the rows count nothing.
fn p99_row(rows: &[(f64, f64, u64)]) -> Option<(f64, f64, u64)> {
    let n: u64 = rows.iter().map(|r| r.2).sum();
    let mut seen = 0;
    (n > 0)
        .then(|| {
            rows.iter().find(|r| {
                seen += r.2;
                seen as f64 >= 0.99 * n as f64
            })
        })
        .flatten()
        .copied()
}

/// The counts of histogram `b` less those of the earlier `a` (same bounds; `a` may be empty).
fn between(a: &[(Option<f64>, u64)], b: &[(Option<f64>, u64)]) -> Buckets {
    b.iter()
        .zip(a.iter().map(|x| x.1).chain(std::iter::repeat(0)))
        .map(|(x, before)| (x.0, x.1.saturating_sub(before)))
        .collect()
}

/// The trace segments in `dir`, by name (so in order).
pub fn segments(dir: &Path) -> std::io::Result<std::vec::IntoIter<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("trace-") && n.ends_with(".jsonl"))
        })
        .collect();
    v.sort();
    Ok(v.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_segments_or_with_a_foreign_file_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("mark-trace-r-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = read(&dir, None).unwrap_err().0;
        assert!(e.contains("not a trace: no segment files"), "{e}");
        let f = dir.join("trace-000001.jsonl");
        std::fs::write(&f, "time_s,rate\n0,5\n").unwrap();
        let e = read(&dir, None).unwrap_err().0;
        assert!(e.contains("trace-000001.jsonl line 1"), "{e}");
        std::fs::write(&f, "{\"k\":\"a\",\"t\":1.0,\"m\":\"mlp\",\"n\":1}\n").unwrap();
        let e = read(&dir, None).unwrap_err().0;
        assert!(e.contains("starts with a header"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn live_figures_come_from_windows_and_fleet_totals() {
        let dir = std::env::temp_dir().join(format!("mark-trace-l-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let recs = [
            Rec::Header {
                schema: SCHEMA,
                segment: 1,
                t: 0.5,
                unix: 0.0,
                context: None,
                fleet: vec![],
            },
            Rec::Arrival {
                t: 1.5,
                m: "mlp".into(),
                n: 1,
            },
            Rec::Arrival {
                t: 2.5,
                m: "mlp".into(),
                n: 3,
            },
            Rec::Arrival {
                t: 2.6,
                m: "other".into(),
                n: 1,
            },
            Rec::Fleet {
                t: 1.0,
                instances: vec![],
                dollars_per_hour: 1.0,
                cost: 0.5,
                answered: 0,
                latency_buckets_ms: vec![(Some(10.0), 5), (Some(100.0), 0), (None, 0)],
                host_buckets_ms: vec![(Some(1.0), 5), (Some(5.0), 0), (None, 0)],
                worker_buckets_ms: vec![],
            },
            Rec::Window {
                t: 5.0,
                arrived: 4,
                done: 100,
                missed: 2,
            },
            Rec::Fleet {
                t: 6.0,
                instances: vec![],
                dollars_per_hour: 1.0,
                cost: 0.75,
                answered: 100,
                latency_buckets_ms: vec![(Some(10.0), 103), (Some(100.0), 2), (None, 0)],
                host_buckets_ms: vec![(Some(1.0), 95), (Some(5.0), 10), (None, 0)],
                worker_buckets_ms: vec![(Some(1.0), 0), (Some(5.0), 0), (None, 3)],
            },
        ];
        let text: String = recs
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        // a last line cut short by a crash is skipped
        std::fs::write(
            dir.join("trace-000001.jsonl"),
            text + "{\"k\":\"a\",\"t\":7",
        )
        .unwrap();
        let tr = read(&dir, Some("mlp")).unwrap();
        assert_eq!(tr.arrivals, vec![(1.0, 1), (2.0, 3)]);
        assert_eq!(tr.other_arrivals, 1);
        let live = tr.live();
        assert_eq!(live.requests, 4);
        assert_eq!(live.attainment, Some(0.98));
        assert_eq!(live.cost, Some(0.25));
        // 100 answered in between: 98 within 10 ms, 2 within 100 ms: p99 is in the 100 ms bucket
        assert_eq!(live.p99_ms, Some(100.0));
        // the host's overhead of the requests in between, as (floor, bound, count)
        assert_eq!(
            tr.host_overhead_ms(),
            vec![(0.0, 1.0, 90), (1.0, 5.0, 10), (5.0, f64::INFINITY, 0)]
        );
        assert_eq!(live.host_p99_ms, Some(5.0));
        // a trace that had none before counts from zero
        assert_eq!(live.worker_p99_ms, Some(f64::INFINITY));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
