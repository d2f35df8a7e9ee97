//! Forming batches on the simulated fleet: each model's queue (the one whose oldest request is
//! due first) is offered to the idle instances, one of each type in turn, and each
//! batch is sized by the batch policy from that type's curve for the model (the live batch
//! loop's rule, per backend).

use super::*;

impl Sim<'_> {
    /// The batch an idle instance `idx` would take now: `Ok(n)` to send `n` items, `Err(t)` to
    /// wait until `t` (the batch policy's answer, with the host's liveness rule).
    fn offer(&mut self, m: usize, idx: usize, len: usize, wait: f64) -> Result<usize, f64> {
        let slo = self.slo_s(m);
        let ty = self.instances[idx].ty;
        let max_b = self.type_max_batch(m, ty);
        if max_b == 1 {
            return Ok(1);
        }
        let t = &self.lanes[m].types[ty];
        let st = QueueState {
            queued_items: len as u32,
            queued_requests: len as u32,
            oldest_wait_us: (wait * 1e6) as u64,
            slo_us: (slo * 1e6) as u64,
            arrival_rate: self.lanes[m].arrival_rate,
            max_batch: max_b,
            executors: self.instances.iter().filter(|i| i.ready).count() as u32,
            profile: &t.profile,
        };
        match self.policies.batch.decide(&st) {
            BatchDecision::Send(n) => Ok(n.clamp(1, max_b) as usize),
            BatchDecision::Wait(_) if wait >= slo => {
                self.forced += 1;
                Ok(len.min(max_b as usize))
            }
            // at least 1 ms, as tokio's timer wheel rounds the live loop's waits: a policy
            // answering "wait 0" forever cannot stall the clock
            BatchDecision::Wait(us) => {
                Err(self.now + (us as f64 / 1e6).max(1e-3).min(slo - wait).max(1e-6))
            }
        }
    }

    pub(super) fn dispatch(&mut self) {
        if self.lanes.len() == 1 {
            return self.dispatch_lane(0);
        }
        // earliest deadline first: the model whose oldest request's SLO ends soonest (with one
        // SLO for all, the one that has waited longest) — a 50 ms model is not queued behind a
        // 300 ms one's backlog
        let mut order: Vec<(f64, usize)> = self
            .lanes
            .iter()
            .enumerate()
            .map(|(m, l)| {
                let due = l
                    .queue
                    .front()
                    .map_or(f64::INFINITY, |&a| a + self.slo_s(m));
                (due, m)
            })
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, m) in order {
            self.dispatch_lane(m);
        }
    }

    fn dispatch_lane(&mut self, m: usize) {
        let slo = self.slo_s(m);
        loop {
            let Some(&oldest) = self.lanes[m].queue.front() else {
                self.lanes[m].waiting = None;
                return;
            };
            if self.idle.is_empty() {
                self.maybe_spill(m);
                return;
            }
            let len = self.lanes[m].queue.len();
            let wait = self.now - oldest;
            if let Some((until, seen)) = self.lanes[m].waiting {
                let max_b = self
                    .idle
                    .iter()
                    .map(|&i| self.type_max_batch(m, self.instances[i].ty))
                    .max()
                    .unwrap_or(1);
                let step = (max_b / 8).max(1) as usize;
                let grown = len >= seen + step || len >= max_b as usize;
                if self.now < until && !grown && wait < slo {
                    self.maybe_spill(m);
                    return;
                }
                self.lanes[m].waiting = None;
            }
            // the queue is offered to one idle instance of each type in turn: a GPU whose
            // policy waits to fill a batch of 32 does not hold back an idle CPU instance that
            // would send now
            let mut tried = std::mem::take(&mut self.offer_scratch);
            tried.clear();
            let mut until = f64::INFINITY;
            let mut chosen = None;
            let mut from = 0;
            // a reservation still idle takes the batch; one that is gone lapses
            let reserved = self.lanes[m]
                .reserved
                .take()
                .filter(|i| self.idle.contains(i));
            while let Some(idx) = match reserved {
                Some(r) => (from <= r).then_some(r),
                None => self.idle.range(from..).next().copied(),
            } {
                from = idx + 1;
                let ty = self.instances[idx].ty;
                if tried.contains(&ty) {
                    continue;
                }
                tried.push(ty);
                match self.offer(m, idx, len, wait) {
                    Ok(n) => {
                        chosen = Some((idx, n));
                        break;
                    }
                    Err(t) => until = until.min(t),
                }
            }
            self.offer_scratch = tried;
            match chosen {
                Some((idx, n)) => {
                    self.start_batch(m, idx, n.min(len));
                    self.reserve_after(m);
                }
                None => {
                    self.lanes[m].reserved = reserved;
                    self.lanes[m].waiting = Some((until, len));
                    self.at(until, Ev::Wake);
                    self.maybe_spill(m);
                    return;
                }
            }
        }
    }

    /// The live batch loop's reservation after it sent a batch (`batching::batcher`): with
    /// nothing left queued it reserves the first free backend for the next batch, the gateway's
    /// executors first; when they are all busy, an idle worker, which then takes the next batch
    /// even if an executor has freed since. Only with executors (`--gateway-executors`, a
    /// replay's, for mark-rs and MArk as released): without them the first idle worker is the
    /// one reserved and the one offered.
    fn reserve_after(&mut self, m: usize) {
        // (the strategies that run behind no gateway have no executors, whatever the trace had)
        if !self.lanes[m].queue.is_empty() || !self.instances.iter().any(|i| i.pinned) {
            return;
        }
        if self.idle.iter().any(|&i| self.instances[i].pinned) {
            return;
        }
        self.lanes[m].reserved = self
            .idle
            .iter()
            .copied()
            .find(|&i| !self.instances[i].pinned);
    }
}
