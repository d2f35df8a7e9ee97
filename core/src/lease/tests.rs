//! The lease driven on a clock and a table the tests control: skewed wall clocks, monotonic
//! clocks that run at slightly different rates, lost answers, throttling, a paused holder.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The call fails without applying (throttled, unreachable).
    Throttled,
    /// The call applies, its answer is lost.
    LostAnswer,
}

struct Rep {
    lease: Lease,
    next_at: f64,
    /// This machine's wall clock minus true time (s).
    wall_skew_s: f64,
    /// This machine's monotonic clock rate.
    rate: f64,
    dead: bool,
    paused: Option<(f64, f64)>,
}

type FaultFn = Box<dyn FnMut(f64, usize, Option<Write>) -> Fault>;

struct World {
    table: Table,
    reps: Vec<Rep>,
    fault: FaultFn,
}

impl World {
    fn new(lease_s: f64, skews: &[f64], rates: &[f64]) -> World {
        let reps = skews
            .iter()
            .zip(rates)
            .enumerate()
            .map(|(i, (&wall_skew_s, &rate))| Rep {
                lease: Lease::new(Writer {
                    id: format!("r{i}"),
                    incarnation: format!("r{i}-1"),
                    lease_ms: (lease_s * 1000.0) as u64,
                }),
                // replicas start their rounds out of phase
                next_at: 0.037 * i as f64,
                wall_skew_s,
                rate,
                dead: false,
                paused: None,
            })
            .collect();
        World {
            table: Table::default(),
            reps,
            fault: Box::new(|_, _, _| Fault::None),
        }
    }

    fn local(&self, i: usize, t: f64) -> f64 {
        t * self.reps[i].rate
    }

    fn call(&mut self, i: usize, t: f64, w: Write) -> Result<Record, CallError> {
        match (self.fault)(t, i, Some(w)) {
            Fault::Throttled => Err(CallError::Failed("throttled".into())),
            f => {
                let wall = ((t + self.reps[i].wall_skew_s).max(0.0) * 1000.0) as u64;
                let me = self.reps[i].lease.me.clone();
                let r = self.table.apply(&me, w, wall);
                if f == Fault::LostAnswer && r.is_ok() {
                    return Err(CallError::Failed("answer lost".into()));
                }
                r
            }
        }
    }

    fn round(&mut self, i: usize, t: f64) {
        let now = self.local(i, t);
        let wait = match self.reps[i].lease.next() {
            Next::Renew(g) => {
                let r = self.call(i, t, Write::Renew(g));
                self.reps[i].lease.renewed(now, r)
            }
            Next::Read => {
                let read = match (self.fault)(t, i, None) {
                    Fault::Throttled => Err(CallError::Failed("throttled".into())),
                    _ => Ok(self.table.record.clone()),
                };
                match self.reps[i].lease.read(now, read) {
                    Some(w) => {
                        let r = self.call(i, t, w);
                        self.reps[i].lease.acquire_answered(now, r)
                    }
                    None => self.reps[i].lease.lease_s() / 10.0,
                }
            }
        };
        self.reps[i].next_at = t + wait.max(0.05) / self.reps[i].rate;
    }

    /// The replicas that may act at `t` (alive, not paused, trusting a lease).
    fn acting(&self, t: f64) -> Vec<usize> {
        (0..self.reps.len())
            .filter(|&i| {
                let r = &self.reps[i];
                !r.dead
                    && !r.paused.is_some_and(|(a, b)| (a..b).contains(&t))
                    && r.lease.is_leader(self.local(i, t))
            })
            .collect()
    }

    /// Runs from `from` to `until` in 10 ms steps, asserting that at most one replica may act at
    /// every step; returns each change of the acting leader (time, replica or none).
    fn run(&mut self, from: f64, until: f64) -> Vec<(f64, Option<usize>)> {
        let mut changes = Vec::new();
        let mut last: Option<Option<usize>> = None;
        let steps = ((until - from) / 0.01).round() as usize;
        for k in 0..=steps {
            let t = from + k as f64 * 0.01;
            for i in 0..self.reps.len() {
                let r = &self.reps[i];
                let paused = r.paused.is_some_and(|(a, b)| (a..b).contains(&t));
                if !r.dead && !paused && r.next_at <= t {
                    self.round(i, t);
                }
            }
            let acting = self.acting(t);
            assert!(
                acting.len() <= 1,
                "two acting leaders at {t:.2} s: {acting:?}"
            );
            let now = acting.first().copied();
            if last != Some(now) {
                changes.push((t, now));
                last = Some(now);
            }
        }
        changes
    }
}

/// The first time after `t` at which someone acts, and who.
fn first_leader_after(changes: &[(f64, Option<usize>)], t: f64) -> (f64, usize) {
    changes
        .iter()
        .find_map(|&(at, who)| (at >= t).then_some(()).and(who.map(|w| (at, w))))
        .expect("a leader")
}

#[test]
fn one_replica_leads_at_a_time_under_clock_skew_and_takes_over_within_two_leases() {
    // wall clocks 5 s apart either way, monotonic clocks 1% apart: a 3 s lease
    let mut w = World::new(3.0, &[-5.0, 0.0, 5.0], &[0.99, 1.0, 1.01]);
    let changes = w.run(0.0, 30.0);
    let (_, first) = first_leader_after(&changes, 0.0);
    w.reps[first].dead = true;
    let changes = w.run(30.0, 60.0);
    let (at, next) = first_leader_after(&changes, 30.0);
    assert_ne!(next, first);
    // the holder renewed at most a third of a lease before it died
    assert!(at - 30.0 <= 2.0 * 3.0, "takeover after {:.2} s", at - 30.0);
    assert_eq!(
        w.table.record.as_ref().unwrap().version.generation,
        2,
        "one takeover, one generation more"
    );
}

#[test]
fn a_contender_ahead_in_wall_time_waits_a_full_lease_on_its_own_clock() {
    // r1 is 9 s ahead: on wall clocks the lease of r0 looks expired at once
    let mut w = World::new(10.0, &[0.0, 9.0], &[1.0, 1.0]);
    w.reps[1].next_at = 1000.0;
    w.run(0.0, 1.0);
    assert!(w.reps[0].lease.is_leader(1.0));
    // r0 stops renewing (alive, paused from the table's view) at 1 s
    w.reps[0].paused = Some((1.0, 100.0));
    w.reps[1].next_at = 1.0;
    let changes = w.run(1.0, 20.0);
    let (at, who) = first_leader_after(&changes, 1.5);
    assert_eq!(who, 1);
    assert!(
        at >= 1.0 + 10.0,
        "took over after {:.2} s: before a full lease",
        at - 1.0
    );
}

#[test]
fn a_leader_is_elected_at_once_after_a_lost_acquire_answer() {
    let mut w = World::new(10.0, &[0.0, 0.0], &[1.0, 1.0]);
    let mut lost = false;
    w.fault = Box::new(move |_, i, write| {
        if i == 0 && matches!(write, Some(Write::Acquire(_))) && !lost {
            lost = true;
            return Fault::LostAnswer;
        }
        Fault::None
    });
    let changes = w.run(0.0, 5.0);
    let (at, who) = first_leader_after(&changes, 0.0);
    // the record names r0 though r0 never heard it: r0 takes it again at its next round
    assert_eq!(who, 0);
    assert!(at < 2.0, "no leader for {at:.2} s after a lost answer");
    assert_eq!(w.table.record.as_ref().unwrap().version.generation, 2);
}

#[test]
fn a_renewal_that_lands_after_the_release_is_refused() {
    let me = Writer {
        id: "r0".into(),
        incarnation: "r0-1".into(),
        lease_ms: 10_000,
    };
    let mut t = Table::default();
    let g = t
        .apply(&me, Write::Acquire(None), 0)
        .unwrap()
        .version
        .generation;
    let mut lease = Lease::new(me.clone());
    lease.acquire_answered(0.0, t.apply(&me, Write::Acquire(None), 0));
    assert!(lease.is_leader(1.0));
    // a renewal in flight, then the release: the renewal lands last
    let release = lease.give_up().expect("held");
    assert_eq!(release, Write::Release(g + 1));
    t.apply(&me, release, 1000).unwrap();
    assert_eq!(
        t.apply(&me, Write::Renew(g + 1), 1001),
        Err(CallError::Refused)
    );
    assert!(t.record.as_ref().unwrap().released());
    assert!(!lease.is_leader(1.0));
    // so another replica takes it at once, not a lease later
    let other = Writer {
        id: "r1".into(),
        incarnation: "r1-1".into(),
        lease_ms: 10_000,
    };
    let mut l1 = Lease::new(other.clone());
    let w = l1
        .read(2.0, Ok(t.record.clone()))
        .expect("released: take it now");
    let r = t.apply(&other, w, 2000);
    l1.acquire_answered(2.0, r);
    assert!(l1.is_leader(2.1));
}

#[test]
fn throttling_stops_the_holder_before_anyone_takes_over() {
    let mut w = World::new(3.0, &[-5.0, 5.0, 0.0], &[1.0, 1.005, 0.995]);
    // every call of every replica fails from 10 s to 20 s
    w.fault = Box::new(|t, _, _| {
        if (10.0..20.0).contains(&t) {
            Fault::Throttled
        } else {
            Fault::None
        }
    });
    let changes = w.run(0.0, 40.0);
    // nobody acts through most of the throttling (the holder's trust ran out), one leader after
    let during: Vec<_> = changes
        .iter()
        .filter(|(at, who)| (13.0..20.0).contains(at) && who.is_some())
        .collect();
    assert!(
        during.is_empty(),
        "acted while the table was unreachable: {during:?}"
    );
    let (at, _) = first_leader_after(&changes, 20.0);
    assert!(
        at <= 20.0 + 2.0 * 3.0,
        "no leader {:.2} s after the throttling",
        at - 20.0
    );
}

#[test]
fn a_paused_holder_does_not_act_beside_its_successor() {
    let mut w = World::new(3.0, &[0.0, 0.0], &[1.0, 1.0]);
    let changes = w.run(0.0, 5.0);
    let (_, first) = first_leader_after(&changes, 0.0);
    // a 10 s pause (a stop-the-world, a frozen VM): when it wakes, its lease is over
    w.reps[first].paused = Some((5.0, 15.0));
    let changes = w.run(5.0, 30.0);
    let (_, next) = first_leader_after(&changes, 5.1);
    assert_ne!(next, first);
    assert!(!w.reps[first].lease.is_leader(w.local(first, 30.0)));
    assert!(w.reps[next].lease.is_leader(w.local(next, 30.0)));
}

#[test]
fn each_act_is_fenced_by_the_generation_it_was_planned_under() {
    let me = Writer {
        id: "r0".into(),
        incarnation: "r0-1".into(),
        lease_ms: 10_000,
    };
    let mut t = Table::default();
    let mut l = Lease::new(me.clone());
    let r = t.apply(&me, Write::Acquire(None), 0);
    l.acquire_answered(0.0, r);
    let g = l.generation(1.0);
    assert!(l.holds(g, 1.0));
    assert!(!l.holds(g + 1, 1.0) && !l.holds(0, 1.0));
    // past the trust of its last renewal, no act passes
    assert!(!l.holds(g, 9.5));
}
