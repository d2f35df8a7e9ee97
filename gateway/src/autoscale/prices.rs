//! Live spot prices in the control loop: read in the background (`cloud::spot_prices`), folded
//! into the catalog the plan uses, and onto the spot instances the ledger bills and the status
//! shows, at each observation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mark_policies::types::Market;

use super::ControlLoop;
use crate::cloud::spot_prices::{self, SpotPrices};
use crate::control::fleet::Instance;

/// The background reader's shared result, and what of it the loop has applied.
#[derive(Debug, Default)]
pub(super) struct LivePrices {
    shared: Option<Arc<Mutex<SpotPrices>>>,
    applied_at: f64,
    /// Each spot instance's price, fixed when first seen (the ledger bills price × lifetime:
    /// a later price must not re-price hours already run).
    priced: std::collections::HashMap<String, f64>,
}

impl LivePrices {
    /// Starts the reader for the catalog's spot types (EC2 only; `every_s` 0: off).
    pub fn start(opts: &super::AutoscaleOptions) -> Self {
        let (Some(ec2), true) = (&opts.ec2, opts.spot_price_interval_s > 0.0) else {
            return LivePrices::default();
        };
        let types: Vec<String> = opts
            .catalog
            .instances
            .iter()
            .filter(|t| t.price_spot > 0.0)
            .map(|t| t.name.clone())
            .collect();
        if types.is_empty() {
            return LivePrices::default();
        }
        let shared = Arc::new(Mutex::new(SpotPrices::default()));
        tokio::spawn(spot_prices::watch(
            ec2.clone(),
            types,
            Duration::from_secs_f64(opts.spot_price_interval_s),
            shared.clone(),
        ));
        LivePrices {
            shared: Some(shared),
            applied_at: 0.0,
            priced: Default::default(),
        }
    }
}

impl ControlLoop {
    /// Folds prices read since the last tick into the catalog, then prices `fleet`'s spot
    /// instances at their type's price now (EC2 bills a running spot instance the current price).
    pub(super) fn live_prices(&mut self, fleet: &mut [Instance]) {
        let Some(shared) = &self.prices.shared else {
            return;
        };
        let s = shared.lock().expect("spot prices").clone();
        if s.read_at > self.prices.applied_at {
            self.prices.applied_at = s.read_at;
            let changed = self.opts.catalog.with_spot_prices(&s.prices());
            if changed > 0 {
                tracing::info!(
                    changed,
                    "spot prices read live: the plan and the ledger use them"
                );
            }
        }
        let priced = &mut self.prices.priced;
        priced.retain(|id, _| fleet.iter().any(|i| i.id == *id));
        for i in fleet.iter_mut().filter(|i| i.market == Market::Spot) {
            if let Some(t) = self.opts.catalog.get(&i.instance_type) {
                // its own zone's price when one was read there, else the plan's
                i.price_per_hour = *priced
                    .entry(i.id.clone())
                    .or_insert_with(|| spot_prices::billed_price(&s, t, &i.zone));
            }
        }
        let mut st = self.status.lock().expect("status lock");
        st.spot_price_zones = s.zones;
        st.spot_price_error = s.error;
        st.spot_prices_by_zone = s.by_zone;
        st.spot_prices = s.by_type;
        st.spot_prices_read_at = s.read_at;
        st.spot_price_failures = s.failures;
    }
}
