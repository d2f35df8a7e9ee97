//! Workloads of the simulator: where requests come from, as an arrival-time stream.
//!
//! - `Rates`: a rate per interval (a CSV, or a generator), Poisson arrivals inside each interval
//!   (or evenly spaced ones, for hand-computable scenarios);
//! - `Map`: a Markovian arrival process (MMPP) given by its D0 and D1 matrices per time window;
//! - generators: `twitter-like` (a day of diurnal load with spikes) and `stress` (MArk's stress
//!   test: steady load, then a +50% step).
//!
//! Files: `spec` parses a `--workload` spec, `readers` reads CSV and MAP files (and writes CSV),
//! `generators` makes the synthetic days.

mod generators;
mod readers;
mod spec;
mod trace;

pub use generators::{hourly_steps, stress, twitter_like};
pub use readers::{parse_csv, read_csv, read_map, write_csv};
pub use trace::from_trace;

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
    /// Recorded arrival times (`trace:DIR`), replayed exactly; `rates` are their counts per
    /// interval, for plots and baselines.
    Trace {
        /// Seconds per interval of `rates`.
        interval_s: f64,
        /// Arrivals per second in each interval.
        rates: Vec<f64>,
        /// Arrival times, seconds, sorted.
        times: std::sync::Arc<Vec<f64>>,
        /// Seconds the trace lasts.
        duration_s: f64,
    },
    /// A 2-state MAP per window: (D0, D1), rates per second.
    Map {
        /// Seconds per window.
        window_s: f64,
        /// Matrices of each window.
        windows: Vec<MapWindow>,
    },
}

/// A workload that cannot be read or parsed: the message names the file, line or spec part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkloadError(pub String);

impl From<String> for WorkloadError {
    fn from(m: String) -> Self {
        WorkloadError(m)
    }
}

/// Longest generated workload (a year): `stress:200:1e300` must not size a vector from it.
pub const MAX_SECONDS: f64 = 366.0 * 86400.0;

impl Workload {
    /// The same workload with every arrival rate multiplied by `factor` (> 0): `--load-scale`.
    /// A MAP keeps its state-switching rates; its arrival matrix D1 scales, and D0's diagonal
    /// follows so that rows still sum to zero.
    pub fn scaled(self, factor: f64) -> Workload {
        match self {
            Workload::Rates {
                interval_s,
                rates,
                uniform,
            } => Workload::Rates {
                interval_s,
                rates: rates.into_iter().map(|r| r * factor).collect(),
                uniform,
            },
            // scaled, a trace is replayed as Poisson arrivals at its scaled rates
            Workload::Trace {
                interval_s, rates, ..
            } => Workload::Rates {
                interval_s,
                rates: rates.into_iter().map(|r| r * factor).collect(),
                uniform: false,
            },
            Workload::Map { window_s, windows } => Workload::Map {
                window_s,
                windows: windows
                    .into_iter()
                    .map(|(mut d0, mut d1)| {
                        for i in 0..2 {
                            for v in &mut d1[i] {
                                *v *= factor;
                            }
                            d0[i][i] = -(d0[i][1 - i] + d1[i][0] + d1[i][1]);
                        }
                        (d0, d1)
                    })
                    .collect(),
            },
        }
    }

    /// Seconds the workload lasts.
    pub fn duration_s(&self) -> f64 {
        match self {
            Workload::Rates {
                interval_s, rates, ..
            } => interval_s * rates.len() as f64,
            Workload::Trace { duration_s, .. } => *duration_s,
            Workload::Map { window_s, windows } => window_s * windows.len() as f64,
        }
    }

    /// Mean arrival rate at time `t` (for plots and the static-peak baseline).
    pub fn mean_rate_at(&self, t: f64) -> f64 {
        match self {
            Workload::Rates {
                interval_s, rates, ..
            }
            | Workload::Trace {
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
            Workload::Rates { rates, .. } | Workload::Trace { rates, .. } => {
                rates.iter().copied().fold(0.0, f64::max)
            }
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
            Workload::Trace { times, .. } => times.len() as f64,
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
            Workload::Trace { times, .. } => {
                let t = *times.get(self.k as usize)?;
                self.k += 1;
                Some(t)
            }
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
    fn load_scale_multiplies_every_rate() {
        let w = Workload::Rates {
            interval_s: 60.0,
            rates: vec![10.0, 20.0],
            uniform: false,
        };
        assert_eq!(w.scaled(10.0).peak_rate(), 200.0);
        // a MAP: the stationary arrival rate scales, the state switching does not
        let d0 = [[-3.0, 1.0], [0.5, -10.5]];
        let d1 = [[2.0, 0.0], [0.0, 10.0]];
        let before = map_rate(&d0, &d1);
        let w = Workload::Map {
            window_s: 60.0,
            windows: vec![(d0, d1)],
        };
        let Workload::Map { windows, .. } = w.scaled(10.0) else {
            unreachable!()
        };
        let (s0, s1) = windows[0];
        assert!((map_rate(&s0, &s1) - 10.0 * before).abs() < 1e-9);
        assert_eq!((s0[0][1], s0[1][0]), (1.0, 0.5));
        for i in 0..2 {
            assert!((s0[i].iter().sum::<f64>() + s1[i].iter().sum::<f64>()).abs() < 1e-12);
        }
    }

    #[test]
    fn hourly_steps_hold_each_level_for_an_hour() {
        let Workload::Rates { rates, .. } = hourly_steps(1) else {
            unreachable!()
        };
        assert_eq!(rates.len(), 1440);
        let hour_mean = |h: usize| rates[h * 60..(h + 1) * 60].iter().sum::<f64>() / 60.0;
        for h in 0..24 {
            let m = hour_mean(h);
            assert!((95.0..=1750.0).contains(&m), "hour {h}: {m}");
            assert!(rates[h * 60..(h + 1) * 60]
                .iter()
                .all(|r| (r - m).abs() < 0.15 * m));
        }
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
        assert!(e.0.contains("not a MAP"), "{e}");
        let e = Workload::parse("nope").unwrap_err();
        assert!(e.0.contains("unknown workload"), "{e}");
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
