//! The recorder's thread: writes records as JSON lines into segments `trace-NNNNNN.jsonl`,
//! starts a new segment (with a header carrying the setting and the fleet) when one reaches an
//! eighth of the bound, deletes the oldest segments to stay under the bound, and flushes every
//! second (a crash loses at most the last second). It takes what is buffered every 10 ms and
//! writes arrivals and the control loop's records merged in time order.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::schema::{Rec, SCHEMA};
use super::{Counters, Pending};

pub use super::reader::segments;

/// The writer's state.
pub struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    segment_limit: u64,
    counters: Arc<Counters>,
    started: Instant,
    unix: f64,
    out: Option<BufWriter<File>>,
    segment: u64,
    segment_bytes: u64,
    on_disk: VecDeque<(PathBuf, u64)>,
    header: Arc<super::Header>,
    /// Records written into the buffer since its last successful flush: lost with the segment
    /// when a write fails (at most these: the buffer may have flushed some on its own).
    unflushed: u64,
}

impl Writer {
    /// A writer for `dir`, bounded to `max_bytes`.
    pub fn new(
        dir: PathBuf,
        max_bytes: u64,
        counters: Arc<Counters>,
        started: Instant,
        unix: f64,
        header: Arc<super::Header>,
    ) -> Self {
        Writer {
            header,
            dir,
            max_bytes,
            segment_limit: (max_bytes / 8).max(super::MIN_BYTES / 2),
            counters,
            started,
            unix,
            out: None,
            segment: 0,
            segment_bytes: 0,
            on_disk: VecDeque::new(),
            unflushed: 0,
        }
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A new segment, with its header; the oldest ones go while the total is over the bound.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut o) = self.out.take() {
            o.flush()?;
            self.unflushed = 0;
        }
        if let Some(last) = self.on_disk.back_mut() {
            last.1 = self.segment_bytes;
        }
        self.segment += 1;
        let path = self.dir.join(format!("trace-{:06}.jsonl", self.segment));
        self.out = Some(BufWriter::with_capacity(64 << 10, File::create(&path)?));
        self.on_disk.push_back((path, 0));
        self.segment_bytes = 0;
        self.counters.segments.store(self.segment, Relaxed);
        let header = Rec::Header {
            schema: SCHEMA,
            segment: self.segment,
            t: self.now(),
            unix: self.unix,
            context: self.header.context(),
            fleet: self.header.fleet(),
        };
        self.write(&header)?;
        self.trim()
    }

    /// Deletes the oldest segments (never the current one) while over the bound.
    fn trim(&mut self) -> std::io::Result<()> {
        let total = |d: &VecDeque<(PathBuf, u64)>, cur: u64| -> u64 {
            d.iter()
                .take(d.len().saturating_sub(1))
                .map(|x| x.1)
                .sum::<u64>()
                + cur
        };
        while self.on_disk.len() > 1 && total(&self.on_disk, self.segment_bytes) > self.max_bytes {
            let (p, _) = self.on_disk.pop_front().expect("non-empty");
            // someone else deleted it already: gone is what trimming wants
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            self.counters.deleted.fetch_add(1, Relaxed);
        }
        self.counters
            .bytes
            .store(total(&self.on_disk, self.segment_bytes), Relaxed);
        Ok(())
    }

    fn write(&mut self, r: &Rec) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.out.as_mut().expect("a segment").write_all(&line)?;
        self.segment_bytes += line.len() as u64;
        self.counters.records.fetch_add(1, Relaxed);
        self.unflushed += 1;
        Ok(())
    }

    fn take(&mut self, r: &Rec) -> std::io::Result<()> {
        if self.out.is_none() || self.segment_bytes >= self.segment_limit {
            self.rotate()?;
        }
        self.write(r)
    }

    fn tick(&mut self) -> std::io::Result<()> {
        let n = self.counters.dropped_pending.swap(0, Relaxed);
        if n > 0 {
            let t = self.now();
            self.take(&Rec::Dropped { t, n })?;
        }
        if let Some(o) = self.out.as_mut() {
            o.flush()?;
            self.unflushed = 0;
        }
        self.trim()
    }

    /// Writes one buffer's worth: arrivals and other records merged by time.
    fn drain(&mut self, p: &mut Pending, models: &[String]) -> std::io::Result<()> {
        let (arrivals, other) = (
            std::mem::take(&mut p.arrivals),
            std::mem::take(&mut p.other),
        );
        let mut other = other.into_iter().peekable();
        let mut arrivals = arrivals.into_iter();
        let written = (|| {
            for (t, m, n) in arrivals.by_ref() {
                while let Some(r) = other.next_if(|r| time_of(r) <= t) {
                    self.take(&r)?;
                }
                let m = models.get(usize::from(m)).cloned().unwrap_or_default();
                self.take(&Rec::Arrival { t, m, n })?;
            }
            for r in other.by_ref() {
                self.take(&r)?;
            }
            Ok(())
        })();
        if written.is_err() {
            // what this buffer still held, and the record whose write failed, are lost with the
            // failed segment: counted as dropped
            let lost = (arrivals.len() + other.count()) as u64 + 1;
            self.counters.dropped.fetch_add(lost, Relaxed);
            self.counters.dropped_pending.fetch_add(lost, Relaxed);
        }
        written
    }

    fn go(&mut self, buffer: &Mutex<Pending>) -> std::io::Result<()> {
        self.rotate()?;
        let mut last_flush = Instant::now();
        let mut models: Vec<String> = Vec::new();
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let mut p = {
                let mut b = buffer.lock().expect("trace buffer lock");
                if b.models.len() != models.len() {
                    models = b.models.clone();
                }
                Pending {
                    arrivals: std::mem::take(&mut b.arrivals),
                    models: Vec::new(),
                    other: std::mem::take(&mut b.other),
                    end: b.end,
                }
            };
            self.drain(&mut p, &models)?;
            if let Some(t) = p.end {
                self.tick()?;
                self.take(&Rec::End { t })?;
                return self.tick();
            }
            if last_flush.elapsed() >= Duration::from_secs(1) {
                self.tick()?;
                last_flush = Instant::now();
            }
        }
    }

    /// Runs until `stop` sets the end. An I/O error (a full disk) does not end the recording:
    /// it is counted and kept in the status (`error`, `write_errors`), the segment is abandoned,
    /// and after a second the writer goes on in a new one, with what it can still write (what
    /// was buffered while it failed is lost and counted as dropped). After 100 errors it stops.
    pub fn run(mut self, buffer: &Mutex<Pending>) {
        // errors in a row (none for a minute starts the count again)
        let (mut in_a_row, mut last_error) = (0u32, Instant::now());
        loop {
            match self.go(buffer) {
                Ok(()) => return,
                Err(e) => {
                    let n = self.counters.write_errors.fetch_add(1, Relaxed) + 1;
                    // the records still in the failed segment's buffer never reached the disk
                    let buffered = std::mem::take(&mut self.unflushed);
                    let _ = self
                        .counters
                        .records
                        .fetch_update(Relaxed, Relaxed, |r| Some(r.saturating_sub(buffered)));
                    self.counters.dropped.fetch_add(buffered, Relaxed);
                    self.counters.dropped_pending.fetch_add(buffered, Relaxed);
                    in_a_row = if last_error.elapsed() > Duration::from_secs(60) {
                        1
                    } else {
                        in_a_row + 1
                    };
                    last_error = Instant::now();
                    *self.counters.error.lock().expect("trace lock") = Some(e.to_string());
                    tracing::error!(dir = %self.dir.display(), cause = %e, errors = n, "trace writing failed; retrying in a new segment");
                    self.out = None;
                    if in_a_row >= 100 {
                        *self.counters.error.lock().expect("trace lock") = Some(format!(
                            "stopped after 100 write errors in a row; the last: {e}"
                        ));
                        tracing::error!(dir = %self.dir.display(), "trace writing failed 100 times in a row; the recording stopped");
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    // what piled up meanwhile is dropped (counted), the end kept
                    let mut b = buffer.lock().expect("trace buffer lock");
                    let lost = (b.arrivals.len() + b.other.len()) as u64;
                    b.arrivals.clear();
                    b.other.clear();
                    self.counters.dropped.fetch_add(lost, Relaxed);
                    self.counters.dropped_pending.fetch_add(lost, Relaxed);
                }
            }
        }
    }
}

/// A record's time.
fn time_of(r: &Rec) -> f64 {
    match r {
        Rec::Header { t, .. }
        | Rec::Context { t, .. }
        | Rec::Arrival { t, .. }
        | Rec::Window { t, .. }
        | Rec::Step { t, .. }
        | Rec::Fleet { t, .. }
        | Rec::Dropped { t, .. }
        | Rec::End { t } => *t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory for test `tag`.
    fn fresh(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mark-trace-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A writer into `dir` bounded to `max` bytes, and its counters.
    fn writer(dir: &std::path::Path, max: u64) -> (Writer, Arc<Counters>) {
        let c = Arc::new(Counters::default());
        let w = Writer::new(
            dir.to_path_buf(),
            max,
            c.clone(),
            Instant::now(),
            0.0,
            Default::default(),
        );
        (w, c)
    }

    #[test]
    fn a_segment_deleted_by_someone_else_does_not_stop_the_recording() {
        let dir = fresh("d");
        let max = 256 << 10;
        let (mut w, c) = writer(&dir, max);
        w.rotate().unwrap();
        // the first segment vanishes (an operator's cleanup), then enough records to trim it
        std::fs::remove_file(dir.join("trace-000001.jsonl")).unwrap();
        for i in 0..40_000u32 {
            w.take(&Rec::Arrival {
                t: f64::from(i) * 1e-3,
                m: "mlp".into(),
                n: 1,
            })
            .expect("writing goes on");
        }
        w.tick().unwrap();
        assert!(c.deleted.load(Relaxed) > 0);
        assert!(c.error.lock().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_disk_is_reported_counted_and_survived() {
        // the first segment is /dev/full: every write to it fails with ENOSPC, as on a full disk
        let dir = fresh("full");
        std::os::unix::fs::symlink("/dev/full", dir.join("trace-000001.jsonl")).unwrap();
        let (w, c) = writer(&dir, 64 << 20);
        // 40 s of arrivals, one per millisecond, and the end
        let arrivals = (0..40_000u32).map(|i| (f64::from(i) * 1e-3, 0, 1));
        w.run(&Mutex::new(Pending {
            arrivals: arrivals.collect(),
            models: vec!["mlp".into()],
            end: Some(40.0),
            ..Default::default()
        }));
        assert_eq!(c.write_errors.load(Relaxed), 1);
        let err = c.error.lock().unwrap().clone().unwrap_or_default();
        assert!(err.contains("No space left"), "{err}");
        let dropped = c.dropped.load(Relaxed);
        // the recording went on in a new segment, with its header, a dropped record and the end
        let next = std::fs::read_to_string(dir.join("trace-000002.jsonl")).unwrap();
        // every record is on disk or counted as dropped: the 40,000 arrivals and the failed
        // segment's header
        let on_disk = next.matches("\"k\":\"arrival\"").count() as u64;
        assert_eq!(
            on_disk + dropped,
            40_001,
            "{on_disk} on disk, {dropped} dropped"
        );
        assert!(next.starts_with("{\"k\":\"header\""), "{next}");
        assert!(next.contains("\"k\":\"dropped\""), "{next}");
        assert!(
            next.trim_end().ends_with("{\"k\":\"end\",\"t\":40.0}"),
            "{next}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_rotate_and_the_oldest_go_under_the_bound() {
        let dir = fresh("w");
        let max = 256 << 10;
        let (w, c) = writer(&dir, max);
        let p = Pending {
            arrivals: (0..40_000u32)
                .map(|i| (f64::from(i) * 1e-3, 0, 1))
                .collect(),
            models: vec!["mlp".into()],
            other: vec![Rec::Window {
                t: 0.0105,
                arrived: 10,
                done: 10,
                missed: 0,
            }],
            end: Some(40.0),
        };
        w.run(&Mutex::new(p));
        let files: Vec<PathBuf> = segments(&dir).unwrap().collect();
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(total <= max, "{total} bytes on disk, bound {max}");
        assert!(c.deleted.load(Relaxed) > 0, "old segments were deleted");
        assert_eq!(c.bytes.load(Relaxed), total);
        // every segment starts with its header; the last ends with the end record
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("{\"k\":\"header\""), "{}", f.display());
        }
        let last = std::fs::read_to_string(files.last().unwrap()).unwrap();
        assert!(
            last.trim_end().ends_with("{\"k\":\"end\",\"t\":40.0}"),
            "{last}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
