//! Workloads of the simulator: where requests come from, as an arrival-time stream.
//!
//! - `Rates`: a rate per interval (a CSV, or a generator), Poisson arrivals inside each interval
//!   (or evenly spaced ones, for hand-computable scenarios);
//! - `Map`: a Markovian arrival process (MMPP) given by its D0 and D1 matrices per time window;
//! - generators: `twitter-like` (a day of diurnal load with spikes) and `stress` (MArk's stress
//!   test: steady load, then a +50% step).

use std::path::Path;

use mark_policies::traces::Rng;

/// D0 and D1 of a 2-state MAP.
pub type MapWindow = ([[f64; 2]; 2], [[f64; 2]; 2]);

/// A workload: a duration and how arrivals are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Requests per second per interval.
    Rates {
        /// Seconds per interval.
        interval_s: f64,
        /// Rate of each interval.
        rates: Vec<f64>,
        /// Evenly spaced arrivals instead of Poisson (deterministic).
        uniform: bool,
    },
    /// A 2-state MAP per window: (D0, D1), rates per second.
    Map {
        /// Seconds per window.
        window_s: f64,
        /// Matrices of each window.
        windows: Vec<MapWindow>,
    },
}

fn bad(m: impl Into<String>) -> String {
    m.into()
}

/// Longest generated workload (a year): `stress:200:1e300` must not size a vector from it.
pub const MAX_SECONDS: f64 = 366.0 * 86400.0;

impl Workload {
    /// Parses a `--workload` spec: `twitter-like[:SEED]`, `stress[:RATE[:SECONDS]]`,
    /// `csv:FILE[:INTERVAL_S]`, `uniform:FILE[:INTERVAL_S]` (evenly spaced arrivals),
    /// `map:DIR_OR_FILE[:WINDOW_S]`, or a bare path (a directory or `.map` file is a MAP,
    /// anything else a CSV).
    pub fn parse(spec: &str) -> Result<Workload, String> {
        let mut parts = spec.splitn(2, ':');
        let kind = parts.next().unwrap_or_default();
        let rest = parts.next();
        let num = |s: Option<&str>, default: f64, what: &str| -> Result<f64, String> {
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
        let file_and_secs = |r: Option<&str>, default: f64| -> Result<(String, f64), String> {
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
                        "unknown workload '{spec}': use twitter-like[:SEED], stress[:RATE[:SECONDS]], csv:FILE[:INTERVAL_S], uniform:FILE[:INTERVAL_S], map:DIR[:WINDOW_S]"
                    )))
                }
            }
        }
    }

    /// Seconds the workload lasts.
    pub fn duration_s(&self) -> f64 {
        match self {
            Workload::Rates {
                interval_s, rates, ..
            } => interval_s * rates.len() as f64,
            Workload::Map { window_s, windows } => window_s * windows.len() as f64,
        }
    }

    /// Mean arrival rate at time `t` (for plots and the static-peak baseline).
    pub fn mean_rate_at(&self, t: f64) -> f64 {
        match self {
            Workload::Rates {
                interval_s, rates, ..
            } => rates.get((t / interval_s) as usize).copied().unwrap_or(0.0),
            Workload::Map { window_s, windows } => windows
                .get((t / window_s) as usize)
                .map_or(0.0, |(d0, d1)| map_rate(d0, d1)),
        }
    }

    /// Highest rate: of any interval, or of any MAP state in any window (a burst state's rate,
    /// not the window's mean).
    pub fn peak_rate(&self) -> f64 {
        match self {
            Workload::Rates { rates, .. } => rates.iter().copied().fold(0.0, f64::max),
            Workload::Map { windows, .. } => windows
                .iter()
                .flat_map(|(_, d1)| [d1[0][0] + d1[0][1], d1[1][0] + d1[1][1]])
                .fold(0.0, f64::max),
        }
    }

    /// Expected number of requests.
    pub fn expected_requests(&self) -> f64 {
        match self {
            Workload::Rates {
                interval_s, rates, ..
            } => rates.iter().sum::<f64>() * interval_s,
            Workload::Map { window_s, windows } => {
                windows.iter().map(|(a, b)| map_rate(a, b)).sum::<f64>() * window_s
            }
        }
    }

    /// The arrival stream for `seed`.
    pub fn arrivals(&self, seed: u64) -> Arrivals<'_> {
        Arrivals {
            w: self,
            rng: Rng::new(seed ^ 0xA11_1BA1),
            t: 0.0,
            seg: 0,
            state: 0,
            k: 0,
        }
    }
}

/// Stationary arrival rate of a 2-state MAP: π·D1·1, with π the stationary law of D0 + D1.
pub fn map_rate(d0: &[[f64; 2]; 2], d1: &[[f64; 2]; 2]) -> f64 {
    let q01 = d0[0][1] + d1[0][1];
    let q10 = d0[1][0] + d1[1][0];
    let (p0, p1) = if q01 + q10 > 0.0 {
        (q10 / (q01 + q10), q01 / (q01 + q10))
    } else {
        (1.0, 0.0)
    };
    p0 * (d1[0][0] + d1[0][1]) + p1 * (d1[1][0] + d1[1][1])
}

/// Arrival times in seconds, increasing, until the workload ends.
pub struct Arrivals<'a> {
    w: &'a Workload,
    rng: Rng,
    t: f64,
    seg: usize,
    state: usize,
    k: u64,
}

impl Iterator for Arrivals<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        match self.w {
            Workload::Rates {
                interval_s,
                rates,
                uniform,
            } => loop {
                let rate = *rates.get(self.seg)?;
                let end = (self.seg + 1) as f64 * interval_s;
                if rate > 0.0 {
                    // evenly spaced: k/rate from the interval's start, exactly (no drift)
                    let next = if *uniform {
                        self.seg as f64 * interval_s + (self.k + 1) as f64 / rate
                    } else {
                        self.t - (1.0 - self.rng.uniform()).ln() / rate
                    };
                    if next < end {
                        self.k += 1;
                        self.t = next;
                        return Some(self.t);
                    }
                }
                // memoryless: restart the draw at the boundary with the next rate
                self.seg += 1;
                self.k = 0;
                self.t = end;
            },
            Workload::Map { window_s, windows } => loop {
                let (d0, d1) = windows.get(self.seg)?;
                let end = (self.seg + 1) as f64 * window_s;
                let i = self.state;
                let out = -d0[i][i];
                if out <= 0.0 {
                    self.seg += 1;
                    self.t = end;
                    continue;
                }
                let gap = -(1.0 - self.rng.uniform()).ln() / out;
                if self.t + gap >= end {
                    self.seg += 1;
                    self.t = end;
                    continue;
                }
                self.t += gap;
                // which transition fired: D0 off-diagonal (no arrival) or D1 (arrival)
                let j = 1 - i;
                let mut u = self.rng.uniform() * out;
                if u < d0[i][j] {
                    self.state = j;
                    continue;
                }
                u -= d0[i][j];
                self.state = if u < d1[i][i] { i } else { j };
                return Some(self.t);
            },
        }
    }
}

/// Reads a CSV of rates: one `rate` per line, or `time_s,rate` (the interval then comes from the
/// time column). A header line and `#` comments are skipped.
pub fn read_csv(path: &Path, interval_s: f64) -> Result<Workload, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("workload {}: {e}", path.display()))?;
    parse_csv(&text, &path.display().to_string(), interval_s)
}

/// Parses the text of a rates CSV (see `read_csv`); `origin` names it in errors.
pub fn parse_csv(text: &str, origin: &str, interval_s: f64) -> Result<Workload, String> {
    struct Origin<'a>(&'a str);
    impl Origin<'_> {
        fn display(&self) -> &str {
            self.0
        }
    }
    let path = Origin(origin);
    let (mut times, mut rates) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let nums: Vec<f64> = cols.iter().filter_map(|c| c.parse().ok()).collect();
        if nums.len() != cols.len() {
            if rates.is_empty() && times.is_empty() {
                continue; // header
            }
            return Err(format!(
                "workload {}:{}: '{line}' is not numeric",
                path.display(),
                n + 1
            ));
        }
        let rate = *nums.last().unwrap_or(&f64::NAN);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(format!(
                "workload {}:{}: rate {rate} must be >= 0",
                path.display(),
                n + 1
            ));
        }
        if nums.len() >= 2 {
            times.push(nums[0]);
        }
        rates.push(rate);
    }
    if rates.is_empty() {
        return Err(format!("workload {}: no rates", path.display()));
    }
    let interval_s = if times.len() >= 2 && times.len() == rates.len() {
        let d = times[1] - times[0];
        if d.is_nan() || d <= 0.0 {
            return Err(format!("workload {}: times must increase", path.display()));
        }
        d
    } else {
        interval_s
    };
    Ok(Workload::Rates {
        interval_s,
        rates,
        uniform: false,
    })
}

fn parse_matrix(text: &str, origin: &str) -> Result<Vec<[f64; 2]>, String> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Vec<f64> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{origin}: '{line}': {e}"))?;
        if v.len() != 2 {
            return Err(format!("{origin}: '{line}': expected two numbers"));
        }
        rows.push([v[0], v[1]]);
    }
    Ok(rows)
}

fn check_map(d0: &[[f64; 2]; 2], d1: &[[f64; 2]; 2], origin: &str) -> Result<(), String> {
    let ok = (0..2).all(|i| {
        (0..2).all(|j| d1[i][j].is_finite() && d1[i][j] >= 0.0 && (i == j || d0[i][j] >= 0.0))
            && d0[i][i] <= 0.0
            && ((d0[i][0] + d0[i][1] + d1[i][0] + d1[i][1]).abs() < 1e-6 * (1.0 - d0[i][i]))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{origin}: not a MAP: D1 >= 0, D0 off-diagonal >= 0, D0 diagonal <= 0, and each row of D0 + D1 must sum to 0"
        ))
    }
}

/// Reads a MAP: a directory with, per window, either one file of four rows (D0 then D1) or a
/// pair of files whose names hold `d0` and `d1` (e.g. `D0_3.txt`, `D1_3.txt`); windows in name
/// order. A single file is one window.
pub fn read_map(path: &Path, window_s: f64) -> Result<Workload, String> {
    let mut files: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| format!("workload {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    // natural order: by the number in the name, then the name
    let key = |p: &std::path::PathBuf| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let digits: String = name
            .replace("d0", "")
            .replace("d1", "")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        (digits.parse::<u64>().unwrap_or(0), name)
    };
    files.sort_by_key(key);
    let mut windows = Vec::new();
    let mut pending_d0: Option<[[f64; 2]; 2]> = None;
    for f in &files {
        let origin = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| format!("{origin}: {e}"))?;
        let rows = parse_matrix(&text, &origin)?;
        let name = key(f).1;
        match rows.len() {
            4 => windows.push(([rows[0], rows[1]], [rows[2], rows[3]])),
            2 if name.contains("d0") => pending_d0 = Some([rows[0], rows[1]]),
            2 if name.contains("d1") => {
                let d0 = pending_d0
                    .take()
                    .ok_or_else(|| format!("{origin}: D1 without a D0 before it"))?;
                windows.push((d0, [rows[0], rows[1]]));
            }
            n => {
                return Err(format!(
                    "{origin}: {n} rows; expected 4 (D0 then D1) or 2 in a file named d0/d1"
                ))
            }
        }
    }
    if windows.is_empty() {
        return Err(format!("workload {}: no MAP windows", path.display()));
    }
    for (i, (d0, d1)) in windows.iter().enumerate() {
        check_map(d0, d1, &format!("{} window {i}", path.display()))?;
    }
    Ok(Workload::Map { window_s, windows })
}

/// A day of one-minute rates shaped like public Twitter traces: a diurnal swing between ~70 and
/// ~330 req/s (mean ~200), 4% noise, and a dozen spikes (+40–120% for 2–8 minutes).
pub fn twitter_like(seed: u64) -> Workload {
    let mut r = Rng::new(seed);
    let mut rates: Vec<f64> = (0..1440)
        .map(|i| {
            let x = 2.0 * std::f64::consts::PI * f64::from(i) / 1440.0;
            let base = 200.0 - 110.0 * (x + 0.6).cos() - 20.0 * (2.0 * x).cos();
            (base * (1.0 + 0.04 * r.normal())).max(1.0)
        })
        .collect();
    for _ in 0..12 {
        let at = (r.uniform() * 1400.0) as usize;
        let len = 2 + (r.uniform() * 6.0) as usize;
        let height = 0.4 + 0.8 * r.uniform();
        for (k, v) in rates.iter_mut().skip(at).take(len).enumerate() {
            // sharp rise, linear decay
            *v *= 1.0 + height * (1.0 - k as f64 / len as f64);
        }
    }
    Workload::Rates {
        interval_s: 60.0,
        rates,
        uniform: false,
    }
}

/// MArk's stress test: `rate` req/s for the first half, `1.5 × rate` for the second, in 10 s
/// intervals.
pub fn stress(rate: f64, seconds: f64) -> Workload {
    let n = (seconds.min(MAX_SECONDS) / 10.0).ceil().max(2.0) as usize;
    Workload::Rates {
        interval_s: 10.0,
        rates: (0..n)
            .map(|i| if i < n / 2 { rate } else { rate * 1.5 })
            .collect(),
        uniform: false,
    }
}

/// Writes rates as `time_s,rate` CSV.
pub fn write_csv(path: &Path, w: &Workload) -> std::io::Result<()> {
    let Workload::Rates {
        interval_s, rates, ..
    } = w
    else {
        return Err(std::io::Error::other("only rate workloads export to CSV"));
    };
    let mut s = String::from("time_s,rate\n");
    for (i, r) in rates.iter().enumerate() {
        s.push_str(&format!("{},{:.3}\n", i as f64 * interval_s, r));
    }
    std::fs::write(path, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_counts_match_the_rates() {
        let w = Workload::Rates {
            interval_s: 100.0,
            rates: vec![50.0, 0.0, 200.0],
            uniform: false,
        };
        let a: Vec<f64> = w.arrivals(7).collect();
        let in_seg = |lo: f64, hi: f64| a.iter().filter(|t| **t >= lo && **t < hi).count() as f64;
        assert!((in_seg(0.0, 100.0) - 5000.0).abs() < 300.0);
        assert_eq!(in_seg(100.0, 200.0), 0.0);
        assert!((in_seg(200.0, 300.0) - 20000.0).abs() < 600.0);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            a,
            w.arrivals(7).collect::<Vec<_>>(),
            "same seed, same stream"
        );
    }

    #[test]
    fn uniform_arrivals_are_exact() {
        let w = Workload::Rates {
            interval_s: 10.0,
            rates: vec![10.0],
            uniform: true,
        };
        let a: Vec<f64> = w.arrivals(1).collect();
        assert_eq!(a.len(), 99);
        assert!((a[0] - 0.1).abs() < 1e-12);
    }

    #[test]
    fn mmpp_rate_matches_its_stationary_rate() {
        // two states: 20/s and 200/s, switching every ~10 s on average
        let d1 = [[20.0, 0.0], [0.0, 200.0]];
        let d0 = [[-20.1, 0.1], [0.1, -200.1]];
        let expected = map_rate(&d0, &d1);
        assert!((expected - 110.0).abs() < 1e-9);
        let w = Workload::Map {
            window_s: 2000.0,
            windows: vec![(d0, d1)],
        };
        let n = w.arrivals(3).count() as f64;
        assert!((n / 2000.0 - expected).abs() / expected < 0.15, "{n}");
    }

    #[test]
    fn reads_csv_and_map_files() {
        let dir = std::env::temp_dir().join(format!("mark-wl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("map")).unwrap();
        std::fs::write(dir.join("a.csv"), "time_s,rate\n0,5\n30,7\n").unwrap();
        let w = Workload::parse(&format!("csv:{}", dir.join("a.csv").display())).unwrap();
        assert_eq!(
            w,
            Workload::Rates {
                interval_s: 30.0,
                rates: vec![5.0, 7.0],
                uniform: false
            }
        );
        std::fs::write(dir.join("map/D0_1.txt"), "-2 1\n1 -11\n").unwrap();
        std::fs::write(dir.join("map/D1_1.txt"), "1 0\n0 10\n").unwrap();
        std::fs::write(dir.join("map/D0_2.txt"), "-1 0\n0 -1\n").unwrap();
        std::fs::write(dir.join("map/D1_2.txt"), "1 0\n0 1\n").unwrap();
        let w = Workload::parse(&format!("map:{}:30", dir.join("map").display())).unwrap();
        let Workload::Map { window_s, windows } = &w else {
            panic!()
        };
        assert_eq!((*window_s, windows.len()), (30.0, 2));
        assert!((w.mean_rate_at(0.0) - 5.5).abs() < 1e-9);
        std::fs::write(dir.join("bad.map"), "-1 5\n0 -1\n1 0\n0 1\n").unwrap();
        let e = Workload::parse(dir.join("bad.map").to_str().unwrap()).unwrap_err();
        assert!(e.contains("not a MAP"), "{e}");
        let e = Workload::parse("nope").unwrap_err();
        assert!(e.contains("unknown workload"), "{e}");
    }

    #[test]
    fn generators_have_the_documented_shape() {
        let w = twitter_like(1);
        let m = w.expected_requests() / w.duration_s();
        assert!((150.0..250.0).contains(&m), "mean {m}");
        assert!(w.peak_rate() > 300.0);
        let s = stress(100.0, 600.0);
        assert_eq!(s.mean_rate_at(10.0), 100.0);
        assert_eq!(s.mean_rate_at(590.0), 150.0);
    }
}
