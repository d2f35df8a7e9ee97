//! Live spot prices (`--spot-price-interval`): EC2's DescribeSpotPriceHistory read in the
//! background, off the control loop's timer, the price in effect now per type and zone. The
//! loop plans, bills and reports with the cheapest zone's price of each type (the catalog's
//! prices stay the fallback while none was read).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::error::DisplayErrorContext;

use super::ec2::Ec2Options;

/// Most price records read per refresh (10 pages of 1000).
const MAX_RECORDS: usize = 10_000;

/// What the loop reads: per type, the cheapest zone's price and that zone; and when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpotPrices {
    /// Type → (USD per hour, availability zone).
    pub by_type: BTreeMap<String, (f64, String)>,
    /// Wall-clock seconds of the read (0: never read).
    pub read_at: f64,
    /// Reads that failed so far.
    pub failures: u64,
}

impl SpotPrices {
    /// Type → USD per hour.
    pub fn prices(&self) -> BTreeMap<String, f64> {
        self.by_type
            .iter()
            .map(|(t, (p, _))| (t.clone(), *p))
            .collect()
    }
}

/// The price in effect now of each of `types` in each zone, cheapest zone per type.
pub async fn read(
    client: &aws_sdk_ec2::Client,
    types: &[String],
) -> Result<BTreeMap<String, (f64, String)>, String> {
    let mut best: BTreeMap<String, (f64, String)> = BTreeMap::new();
    let mut token: Option<String> = None;
    let mut seen = 0usize;
    loop {
        let mut r = client
            .describe_spot_price_history()
            .set_instance_types(Some(
                types
                    .iter()
                    .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
                    .collect(),
            ))
            .product_descriptions("Linux/UNIX")
            .product_descriptions("Linux/UNIX (Amazon VPC)")
            // a start time of now: the price in effect now, one record per type and zone
            .start_time(aws_sdk_ec2::primitives::DateTime::from(
                std::time::SystemTime::now(),
            ))
            .max_results(1000);
        if let Some(t) = token.take() {
            r = r.next_token(t);
        }
        let out = r
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        for h in out.spot_price_history() {
            seen += 1;
            let (Some(ty), Some(price), Some(az)) = (
                h.instance_type().map(|t| t.as_str().to_string()),
                h.spot_price().and_then(|p| p.parse::<f64>().ok()),
                h.availability_zone(),
            ) else {
                continue;
            };
            if !(price.is_finite() && price >= 0.0) {
                continue;
            }
            let e = best.entry(ty).or_insert((price, az.to_string()));
            if price < e.0 {
                *e = (price, az.to_string());
            }
        }
        match out.next_token() {
            Some(t) if !t.is_empty() && seen < MAX_RECORDS => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(best)
}

/// Refreshes `shared` every `every` with the prices of `types` (its own client, off the
/// control loop's timer; each call under the SDK's deadlines).
pub async fn watch(
    opts: Ec2Options,
    types: Vec<String>,
    every: Duration,
    shared: Arc<Mutex<SpotPrices>>,
) {
    let conf = opts.sdk_config().await;
    let client = aws_sdk_ec2::Client::new(&conf);
    loop {
        let got = tokio::time::timeout(Duration::from_secs(60), read(&client, &types)).await;
        match got {
            Ok(Ok(by_type)) => {
                let mut s = shared.lock().expect("spot prices");
                s.by_type = by_type;
                s.read_at = crate::clock::wall_s();
            }
            Ok(Err(e)) => {
                tracing::warn!(cause = %e, "reading spot prices failed; planning with the last ones read (or the catalog's)");
                shared.lock().expect("spot prices").failures += 1;
            }
            Err(_) => {
                tracing::warn!("reading spot prices took over 60 s; planning with the last ones read (or the catalog's)");
                shared.lock().expect("spot prices").failures += 1;
            }
        }
        tokio::time::sleep(every).await;
    }
}
