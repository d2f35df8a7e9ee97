//! Live spot prices (`--spot-price-interval`): EC2's DescribeSpotPriceHistory read in the
//! background, off the control loop's timer, the price in effect now per type and zone, in the
//! zones of `--ec2-subnets` only (a zone the fleet never launches into offers no price it can
//! get; no subnets: every zone, EC2 picks). The loop plans with the cheapest of those zones'
//! prices per type, bills each spot instance at its own zone's price, and reports both (the
//! catalog's prices stay the fallback while none was read).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::error::DisplayErrorContext;

use super::ec2::Ec2Options;

/// Most price records read per refresh (10 pages of 1000).
const MAX_RECORDS: usize = 10_000;

/// Type → zone → USD per hour.
pub type ByZone = BTreeMap<String, BTreeMap<String, f64>>;

/// What the loop reads: per type and zone the price, the cheapest zone's; and when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpotPrices {
    /// Type → (USD per hour, availability zone): the cheapest zone the fleet launches into.
    pub by_type: BTreeMap<String, (f64, String)>,
    /// Type → zone → USD per hour, in the zones the fleet launches into.
    pub by_zone: ByZone,
    /// The zones read (those of `--ec2-subnets`; empty: every zone).
    pub zones: Vec<String>,
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

    /// The price of `ty` in `zone` now, when one was read there.
    pub fn price_in(&self, ty: &str, zone: &str) -> Option<f64> {
        self.by_zone.get(ty)?.get(zone).copied()
    }
}

/// The cheapest zone's price of each type.
pub fn cheapest(by_zone: &ByZone) -> BTreeMap<String, (f64, String)> {
    by_zone
        .iter()
        .filter_map(|(ty, zones)| {
            let (z, p) = zones.iter().min_by(|a, b| a.1.total_cmp(b.1))?;
            Some((ty.clone(), (*p, z.clone())))
        })
        .collect()
}

/// The availability zones of `subnets` (DescribeSubnets), each once, in the subnets' order;
/// an error when any subnet is unknown (a typo would otherwise widen nothing and price nothing).
pub async fn subnet_zones(
    client: &aws_sdk_ec2::Client,
    subnets: &[String],
) -> Result<Vec<String>, String> {
    let out = client
        .describe_subnets()
        .set_subnet_ids(Some(subnets.to_vec()))
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())?;
    let mut zones: Vec<String> = Vec::new();
    for want in subnets {
        let zone = out
            .subnets()
            .iter()
            .find(|s| s.subnet_id() == Some(want.as_str()))
            .and_then(|s| s.availability_zone())
            .ok_or_else(|| format!("DescribeSubnets did not list {want}"))?;
        if !zones.iter().any(|z| z == zone) {
            zones.push(zone.to_string());
        }
    }
    Ok(zones)
}

/// The price in effect now of each of `types` in each of `zones` (empty: every zone).
pub async fn read(
    client: &aws_sdk_ec2::Client,
    types: &[String],
    zones: &[String],
) -> Result<ByZone, String> {
    let mut all = ByZone::new();
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
        if !zones.is_empty() {
            r = r.filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("availability-zone")
                    .set_values(Some(zones.to_vec()))
                    .build(),
            );
        }
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
            // the filter again here: a zone the fleet never launches into prices nothing
            if !(price.is_finite() && price >= 0.0)
                || !zones.is_empty() && !zones.iter().any(|z| z == az)
            {
                continue;
            }
            // two records of a type and zone (the two product descriptions): the lower
            let e = all
                .entry(ty)
                .or_default()
                .entry(az.to_string())
                .or_insert(price);
            *e = e.min(price);
        }
        match out.next_token() {
            Some(t) if !t.is_empty() && seen < MAX_RECORDS => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(all)
}

/// The zones of `subnets` (none: every zone), then the prices of `types` in them.
async fn zones_and_prices(
    client: &aws_sdk_ec2::Client,
    types: &[String],
    subnets: &[String],
    zones: &mut Option<Vec<String>>,
) -> Result<ByZone, String> {
    if zones.is_none() {
        *zones = Some(if subnets.is_empty() {
            Vec::new()
        } else {
            subnet_zones(client, subnets).await?
        });
    }
    read(client, types, zones.as_deref().unwrap_or_default()).await
}

/// Refreshes `shared` every `every` with the prices of `types` in the zones of the options'
/// subnets (its own client, off the control loop's timer; each read under a 60 s deadline).
pub async fn watch(
    opts: Ec2Options,
    types: Vec<String>,
    every: Duration,
    shared: Arc<Mutex<SpotPrices>>,
) {
    let conf = opts.sdk_config().await;
    let client = aws_sdk_ec2::Client::new(&conf);
    // the subnets' zones, looked up until that succeeds (subnets do not move)
    let mut zones: Option<Vec<String>> = None;
    loop {
        let got = tokio::time::timeout(
            Duration::from_secs(60),
            zones_and_prices(&client, &types, &opts.subnets, &mut zones),
        )
        .await;
        match got {
            Ok(Ok(by_zone)) => {
                let mut s = shared.lock().expect("spot prices");
                s.by_type = cheapest(&by_zone);
                s.by_zone = by_zone;
                s.zones = zones.clone().unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheapest_zone_of_each_type_is_planned_with() {
        let mut by_zone = ByZone::new();
        by_zone.entry("c5.large".into()).or_default().extend([
            ("us-east-1a".to_string(), 0.040),
            ("us-east-1b".to_string(), 0.031),
            ("us-east-1c".to_string(), 0.035),
        ]);
        by_zone.entry("m5.large".into()).or_default();
        let s = SpotPrices {
            by_type: cheapest(&by_zone),
            by_zone,
            ..Default::default()
        };
        assert_eq!(s.by_type["c5.large"], (0.031, "us-east-1b".to_string()));
        assert!(
            !s.by_type.contains_key("m5.large"),
            "a type with no zone read has no price"
        );
        assert_eq!(s.price_in("c5.large", "us-east-1c"), Some(0.035));
        assert_eq!(s.price_in("c5.large", "us-east-1f"), None);
        assert_eq!(s.prices()["c5.large"], 0.031);
    }
}
