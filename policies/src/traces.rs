//! Generated per-interval peak-rate traces (deterministic), used to score predictors.

/// A small deterministic PRNG (xorshift), so traces are identical everywhere.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One day of one-minute intervals: diurnal sine between ~60 and ~340 req/s, 5% noise.
pub fn diurnal(seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..1440)
        .map(|i| {
            let base = 200.0 - 140.0 * (2.0 * std::f64::consts::PI * f64::from(i) / 1440.0).cos();
            (base * (1.0 + 0.05 * r.normal())).max(0.0)
        })
        .collect()
}

/// Diurnal plus short spikes (2–4× for 1–5 intervals, ~1% of intervals): a Twitter-like day.
pub fn spiky(seed: u64) -> Vec<f64> {
    let mut t = diurnal(seed);
    let mut r = Rng::new(seed ^ 0xABCD);
    let mut i = 0;
    while i < t.len() {
        if r.uniform() < 0.01 {
            let len = 1 + (r.uniform() * 5.0) as usize;
            let k = 2.0 + 2.0 * r.uniform();
            for x in t.iter_mut().skip(i).take(len) {
                *x *= k;
            }
            i += len;
        }
        i += 1;
    }
    t
}

/// MArk's stress test: steady load, then a +50% step at the middle.
pub fn step(seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..240)
        .map(|i| (if i < 120 { 200.0 } else { 300.0 }) * (1.0 + 0.03 * r.normal()))
        .collect()
}

/// All traces with names.
pub fn all(seed: u64) -> Vec<(&'static str, Vec<f64>)> {
    vec![
        ("diurnal", diurnal(seed)),
        ("spiky", spiky(seed)),
        ("step", step(seed)),
    ]
}
