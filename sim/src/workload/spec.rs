//! Parsing a `--workload` spec into a workload.

use std::path::Path;

use super::{
    hourly_steps, read_csv, read_map, stress, twitter_like, Workload, WorkloadError, MAX_SECONDS,
};

fn bad(m: impl Into<String>) -> WorkloadError {
    WorkloadError(m.into())
}

impl Workload {
    /// Parses a `--workload` spec: `twitter-like[:SEED]`, `steps[:SEED]` (a day of hourly
    /// steps), `stress[:RATE[:SECONDS]]`,
    /// `csv:FILE[:INTERVAL_S]`, `uniform:FILE[:INTERVAL_S]` (evenly spaced arrivals),
    /// `map:DIR_OR_FILE[:WINDOW_S]`, `trace:DIR` (a trace `mark serve --record-trace` wrote),
    /// or a bare path (a directory or `.map` file is a MAP,
    /// anything else a CSV).
    pub fn parse(spec: &str) -> Result<Workload, WorkloadError> {
        let mut parts = spec.splitn(2, ':');
        let kind = parts.next().unwrap_or_default();
        let rest = parts.next();
        let num = |s: Option<&str>, default: f64, what: &str| -> Result<f64, WorkloadError> {
            match s {
                None | Some("") => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| bad(format!("{what} '{v}' is not a positive number"))),
            }
        };
        // FILE[:SECONDS]: the number is whatever follows the last ':' when it parses
        let file_and_secs =
            |r: Option<&str>, default: f64| -> Result<(String, f64), WorkloadError> {
                let r = r.ok_or_else(|| bad(format!("{kind}: needs a file")))?;
                match r.rsplit_once(':') {
                    Some((f, s)) if s.parse::<f64>().is_ok() => {
                        Ok((f.to_string(), num(Some(s), default, "seconds")?))
                    }
                    _ => Ok((r.to_string(), default)),
                }
            };
        match kind {
            "twitter-like" => Ok(twitter_like(num(rest, 1.0, "seed")? as u64)),
            "steps" => Ok(hourly_steps(num(rest, 1.0, "seed")? as u64)),
            "stress" => {
                let (rate, secs) = match rest {
                    Some(r) => {
                        let mut it = r.splitn(2, ':');
                        (
                            num(it.next(), 200.0, "rate")?,
                            num(it.next(), 3600.0, "seconds")?,
                        )
                    }
                    None => (200.0, 3600.0),
                };
                if secs > MAX_SECONDS {
                    return Err(bad(format!(
                        "stress: {secs} seconds is more than a year ({MAX_SECONDS} s)"
                    )));
                }
                Ok(stress(rate, secs))
            }
            "csv" | "uniform" => {
                let (f, secs) = file_and_secs(rest, 60.0)?;
                let mut w = read_csv(Path::new(&f), secs)?;
                if let Workload::Rates { uniform, .. } = &mut w {
                    *uniform = kind == "uniform";
                }
                Ok(w)
            }
            "trace" => {
                let dir = rest.ok_or_else(|| bad("trace: needs a directory"))?;
                let t = crate::trace::reader::read(Path::new(dir), None)
                    .map_err(|e| bad(e.to_string()))?;
                Ok(super::from_trace(&t, 60.0))
            }
            "map" => {
                let (f, secs) = file_and_secs(rest, 60.0)?;
                read_map(Path::new(&f), secs)
            }
            _ => {
                let p = Path::new(spec);
                if p.is_dir() || spec.ends_with(".map") {
                    read_map(p, 60.0)
                } else if p.is_file() {
                    read_csv(p, 60.0)
                } else {
                    Err(bad(format!(
                        "unknown workload '{spec}': use twitter-like[:SEED], steps[:SEED], stress[:RATE[:SECONDS]], csv:FILE[:INTERVAL_S], uniform:FILE[:INTERVAL_S], map:DIR[:WINDOW_S], trace:DIR"
                    )))
                }
            }
        }
    }
}
