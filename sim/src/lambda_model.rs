//! Simulated Lambda: warm containers kept for a keep-alive period, cold starts when none is idle,
//! a concurrency limit, and AWS billing (duration rounded up to the millisecond × memory in GB ×
//! price per GB-s, plus a price per request; a custom runtime's init time is billed too).

use crate::control::catalog::LambdaSpec;

/// The function's state and bill.
#[derive(Debug, Clone)]
pub struct SimLambda {
    /// Pricing, cold start, concurrency limit, warm latency.
    pub spec: LambdaSpec,
    /// Seconds an idle container stays warm.
    pub keepalive_s: f64,
    /// Invocations running.
    pub running: u32,
    idle_since: Vec<f64>,
    /// Invocations so far.
    pub invocations: u64,
    /// Requests served so far.
    pub requests: u64,
    /// Cold starts so far.
    pub cold_starts: u64,
    /// USD so far.
    pub cost: f64,
}

impl SimLambda {
    /// A function with no container yet.
    pub fn new(spec: LambdaSpec, keepalive_s: f64) -> Self {
        SimLambda {
            spec,
            keepalive_s,
            running: 0,
            idle_since: Vec::new(),
            invocations: 0,
            requests: 0,
            cold_starts: 0,
            cost: 0.0,
        }
    }

    /// Whether the concurrency limit allows one more invocation.
    pub fn available(&self) -> bool {
        self.running < self.spec.concurrency_limit
    }

    /// Starts an invocation of `requests` requests whose warm run takes `run_s`; returns its
    /// duration (plus a cold start when no container is warm) and bills it.
    pub fn start(&mut self, now: f64, requests: u32, run_s: f64) -> f64 {
        self.idle_since.retain(|t| now - t <= self.keepalive_s);
        let cold = self.idle_since.pop().is_none();
        let d = run_s + if cold { self.spec.cold_start_s } else { 0.0 };
        if cold {
            self.cold_starts += 1;
        }
        self.running += 1;
        self.invocations += 1;
        self.requests += u64::from(requests);
        let billed_ms = (d * 1000.0).ceil();
        self.cost += billed_ms / 1000.0 * self.spec.memory_mb / 1024.0 * self.spec.price_per_gb_s
            + self.spec.price_per_request;
        d
    }

    /// An invocation ended; its container stays warm.
    pub fn finish(&mut self, now: f64) {
        self.running -= 1;
        self.idle_since.push(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_then_warm_and_billing() {
        let spec = LambdaSpec {
            memory_mb: 1024.0,
            price_per_gb_s: 0.001,
            price_per_request: 0.01,
            cold_start_s: 1.0,
            concurrency_limit: 1,
            latency_s: 0.05,
            payload_limit_bytes: 6 << 20,
        };
        let mut l = SimLambda::new(spec, 600.0);
        assert_eq!(l.start(0.0, 1, 0.05), 1.05);
        assert!(!l.available());
        l.finish(1.05);
        assert_eq!(l.start(2.0, 1, 0.05), 0.05, "warm");
        l.finish(2.05);
        assert_eq!(l.start(1000.0, 1, 0.05), 1.05, "keep-alive expired");
        assert_eq!(l.cold_starts, 2);
        let expected = (1.05 + 0.05 + 1.05) * 0.001 + 3.0 * 0.01;
        assert!((l.cost - expected).abs() < 1e-12);
    }
}
