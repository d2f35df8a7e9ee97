//! Cloud faults as an input of `mark simulate --cloud-faults FILE.toml`, so policies are priced
//! under the failures a real account sees in its first week (issue 31): listings that lag,
//! launches that never boot, launch calls refused (capacity, throttling), the whole API stalled,
//! and spot reclaims with EC2's two-minute notice. Times are seconds from the workload's start.
//!
//! ```toml
//! list_lag_s = 30            # a new instance stays invisible to listing this long
//! boot_failure_rate = 0.05   # share of launches that never become ready
//! launch_error_rate = 0.02   # share of launch calls refused (capacity, throttling)
//! boot_failures = 0          # the first N launches never become ready (deterministic)
//! [[stall]]                  # every cloud call hangs from at_s for for_s
//! at_s = 36000
//! for_s = 180
//! [[throttle]]               # every launch call refused (RequestLimitExceeded) from at_s for for_s
//! at_s = 50000
//! for_s = 300
//! [[reclaim]]                # spot reclaim with the notice: a share of the spot fleet
//! at_s = 43200               # (instance_type = "..." to reclaim one type only)
//! share = 0.6
//! notice_s = 120             # the default; 0: reclaimed without notice
//! [[rebalance]]              # rebalance recommendations: notices with no reclaim after them
//! at_s = 20000               # (the worker drains; the controller terminates what is still
//! share = 0.5                # listed NOTICE_GRACE_S later; instance_type = "..." optional)
//! [[capacity]]               # InsufficientInstanceCapacity for one type (and market) in a span
//! instance_type = "c5.xlarge"
//! market = "spot"            # optional: both markets when absent
//! at_s = 30000
//! for_s = 3600
//! ```
//! Unknown keys and values out of range are refused (exit 64), naming the key. `mark simulate`
//! applies them all; `mark serve --cloud local --cloud-faults` (the end-to-end tests) applies the
//! list lag, boot failures, refused launches, stalls, throttling and capacity shortages to the
//! local cloud (notices live come from the instance metadata the workers poll).
//! Times are seconds from the workload's (or the control loop's) start.

use mark_policies::types::Market;
use serde::Deserialize;

use super::launch_health::NOTICE_GRACE_S;

/// A span of time: from `at_s` for `for_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// Start, seconds from the workload's start.
    pub at_s: f64,
    /// Length, seconds.
    pub for_s: f64,
}

impl Span {
    fn holds(&self, t: f64) -> bool {
        t >= self.at_s && t < self.at_s + self.for_s
    }
}

/// A spot reclaim wave.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reclaim {
    /// When the notices arrive.
    pub at_s: f64,
    /// Share of the running spot instances (of `instance_type`, if given) reclaimed.
    pub share: f64,
    /// Only this type.
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Seconds from the notice to the reclaim (EC2: 120).
    #[serde(default = "two_minutes")]
    pub notice_s: f64,
}

fn two_minutes() -> f64 {
    120.0
}

/// A wave of rebalance recommendations: notices to a share of the spot fleet that no reclaim
/// follows (EC2 sends them when a reclaim grows likely).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebalance {
    /// When the notices arrive.
    pub at_s: f64,
    /// Share of the running spot instances (of `instance_type`, if given) noticed.
    pub share: f64,
    /// Only this type.
    #[serde(default)]
    pub instance_type: Option<String>,
}

/// A capacity shortage: launches of one type (in one market, or both) refused with
/// `InsufficientInstanceCapacity` for a span.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shortage {
    /// The type.
    pub instance_type: String,
    /// `on-demand` or `spot`; both when absent.
    #[serde(default)]
    pub market: Option<String>,
    /// Start, seconds.
    pub at_s: f64,
    /// Length, seconds.
    pub for_s: f64,
}

/// A wave of notices the simulator delivers: a reclaim (gone `notice_s` after the notice) or a
/// rebalance recommendation (the controller terminates what is still listed after
/// [`NOTICE_GRACE_S`]: the same end, later, and by our hand).
#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    /// When the notices arrive.
    pub at_s: f64,
    /// Share of the spot fleet noticed.
    pub share: f64,
    /// Only this type.
    pub instance_type: Option<String>,
    /// Seconds from the notice to the instance's end.
    pub end_after_s: f64,
    /// A rebalance recommendation (no reclaim).
    pub rebalance: bool,
}

/// The faults of one run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFaults {
    /// A new instance stays invisible to the controller's listing this long, seconds.
    #[serde(default)]
    pub list_lag_s: f64,
    /// Share of launches that never become ready (billed until terminated).
    #[serde(default)]
    pub boot_failure_rate: f64,
    /// Share of launch calls refused.
    #[serde(default)]
    pub launch_error_rate: f64,
    /// The first this many launches never become ready (deterministic, for tests).
    #[serde(default)]
    pub boot_failures: u32,
    /// Spans in which every cloud call hangs: the controller neither lists nor acts.
    #[serde(default)]
    pub stall: Vec<Span>,
    /// Spans in which every launch call is refused (throttling).
    #[serde(default)]
    pub throttle: Vec<Span>,
    /// Spot reclaim waves.
    #[serde(default)]
    pub reclaim: Vec<Reclaim>,
    /// Rebalance recommendations (notices without a reclaim).
    #[serde(default)]
    pub rebalance: Vec<Rebalance>,
    /// Capacity shortages of one type.
    #[serde(default)]
    pub capacity: Vec<Shortage>,
}

impl CloudFaults {
    /// Parses and checks a fault file (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let f: CloudFaults = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let time = |k: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{origin}: {k} = {v}: must be a time >= 0"))
            }
        };
        let share = |k: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{origin}: {k} = {v}: must be in [0, 1]"))
            }
        };
        time("list_lag_s", f.list_lag_s)?;
        share("boot_failure_rate", f.boot_failure_rate)?;
        share("launch_error_rate", f.launch_error_rate)?;
        for s in f.stall.iter().chain(&f.throttle) {
            time("at_s", s.at_s)?;
            time("for_s", s.for_s)?;
        }
        for r in &f.reclaim {
            time("reclaim.at_s", r.at_s)?;
            time("reclaim.notice_s", r.notice_s)?;
            share("reclaim.share", r.share)?;
        }
        for r in &f.rebalance {
            time("rebalance.at_s", r.at_s)?;
            share("rebalance.share", r.share)?;
        }
        for c in &f.capacity {
            time("capacity.at_s", c.at_s)?;
            time("capacity.for_s", c.for_s)?;
            if let Some(m) = &c.market {
                if m != "on-demand" && m != "spot" {
                    return Err(format!(
                        "{origin}: capacity.market = {m:?}: on-demand or spot"
                    ));
                }
            }
        }
        Ok(f)
    }

    /// Every cloud call hangs at `t`.
    pub fn stalled(&self, t: f64) -> bool {
        self.stall.iter().any(|s| s.holds(t))
    }

    /// When the stall holding `t` ends, if one does.
    pub fn stall_end(&self, t: f64) -> Option<f64> {
        self.stall
            .iter()
            .filter(|s| s.holds(t))
            .map(|s| s.at_s + s.for_s)
            .reduce(f64::max)
    }

    /// Every launch call is refused at `t`.
    pub fn throttled(&self, t: f64) -> bool {
        self.throttle.iter().any(|s| s.holds(t))
    }

    /// Every type the file names is one of `known` (a typo would silently fault nothing).
    pub fn check_types<'a>(
        &self,
        known: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<(), String> {
        let named = self
            .reclaim
            .iter()
            .filter_map(|r| r.instance_type.as_deref())
            .chain(
                self.rebalance
                    .iter()
                    .filter_map(|r| r.instance_type.as_deref()),
            )
            .chain(self.capacity.iter().map(|c| c.instance_type.as_str()));
        for t in named {
            if !known.clone().any(|k| k == t) {
                return Err(format!("instance_type = {t:?}: not a type of the catalog"));
            }
        }
        Ok(())
    }

    /// Launches of `instance_type` in `market` are refused for want of capacity at `t`.
    pub fn short_of(&self, instance_type: &str, market: Market, t: f64) -> bool {
        self.capacity.iter().any(|c| {
            c.instance_type == instance_type
                && c.market.as_deref().is_none_or(|m| m == market.as_str())
                && t >= c.at_s
                && t < c.at_s + c.for_s
        })
    }

    /// Every wave of notices, reclaims then rebalances, in the file's order within each.
    pub fn waves(&self) -> Vec<Wave> {
        let reclaims = self.reclaim.iter().map(|r| Wave {
            at_s: r.at_s,
            share: r.share,
            instance_type: r.instance_type.clone(),
            end_after_s: r.notice_s,
            rebalance: false,
        });
        let rebalances = self.rebalance.iter().map(|r| Wave {
            at_s: r.at_s,
            share: r.share,
            instance_type: r.instance_type.clone(),
            end_after_s: NOTICE_GRACE_S,
            rebalance: true,
        });
        reclaims.chain(rebalances).collect()
    }

    /// No fault at all.
    pub fn is_empty(&self) -> bool {
        *self == CloudFaults::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_file_parses_and_bad_ones_name_the_key() {
        let f = CloudFaults::parse(
            "list_lag_s = 30\nboot_failure_rate = 0.05\nlaunch_error_rate = 0.02\n\
             [[stall]]\nat_s = 36000\nfor_s = 180\n\
             [[reclaim]]\nat_s = 43200\nshare = 0.6\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(f.list_lag_s, 30.0);
        assert!(f.stalled(36000.0) && f.stalled(36179.0) && !f.stalled(36180.0));
        assert_eq!(f.reclaim[0].notice_s, 120.0);
        assert!(!f.is_empty() && CloudFaults::default().is_empty());
        let g = CloudFaults::parse(
            "[[rebalance]]\nat_s = 10\nshare = 0.5\n\
             [[capacity]]\ninstance_type = \"c\"\nmarket = \"spot\"\nat_s = 100\nfor_s = 50\n",
            "g.toml",
        )
        .unwrap();
        assert!(g.short_of("c", Market::Spot, 100.0) && g.short_of("c", Market::Spot, 149.0));
        assert!(!g.short_of("c", Market::OnDemand, 120.0) && !g.short_of("c", Market::Spot, 150.0));
        assert!(!g.short_of("d", Market::Spot, 120.0));
        let w = g.waves();
        assert_eq!(
            (w.len(), w[0].rebalance, w[0].end_after_s),
            (1, true, NOTICE_GRACE_S)
        );
        for (bad, key) in [
            ("boot_failure_rate = 1.5", "boot_failure_rate"),
            ("list_lag_s = -1", "list_lag_s"),
            ("lag = 3", "lag"),
            ("[[reclaim]]\nat_s = 1\nshare = 2", "reclaim.share"),
            ("[[rebalance]]\nat_s = 1\nshare = -1", "rebalance.share"),
            (
                "[[capacity]]\ninstance_type = \"c\"\nmarket = \"ondemand\"\nat_s = 1\nfor_s = 2",
                "capacity.market",
            ),
        ] {
            let e = CloudFaults::parse(bad, "f.toml").unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
