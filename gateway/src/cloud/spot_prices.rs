//! Live spot prices (`--spot-price-interval`): EC2's DescribeSpotPriceHistory read in the
//! background, off the control loop's timer, the price in effect now per type and zone, in the
//! zones of `--ec2-subnets` only (a zone the fleet never launches into offers no price it can
//! get; no subnets: every zone). The driver spreads launches over the subnets regardless of
//! price, so the loop plans with each type's mean price over the subnets' zones (a zone with two
//! subnets counts twice), bills each spot instance at its own zone's price, and reports both
//! (the catalog's prices stay the fallback while none was read).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::error::DisplayErrorContext;

use super::ec2::Ec2Options;

/// Most price records read per refresh (10 pages of 1000).
const MAX_RECORDS: usize = 10_000;

/// Type → zone → USD per hour.
pub type ByZone = BTreeMap<String, BTreeMap<String, f64>>;

/// What the loop reads: per type and zone the price, the price it plans with; and when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpotPrices {
    /// Type → (USD per hour the plan uses, the zones it is the mean over, `+`-joined).
    pub by_type: BTreeMap<String, (f64, String)>,
    /// Type → zone → USD per hour, in the zones the fleet launches into.
    pub by_zone: ByZone,
    /// The zone of each of `--ec2-subnets` (empty: every zone); `None` until looked up.
    pub zones: Option<Vec<String>>,
    /// Wall-clock seconds of the read (0: never read).
    pub read_at: f64,
    /// Reads that failed so far.
    pub failures: u64,
    /// Why the last read failed (empty after a success).
    pub error: String,
}

impl SpotPrices {
    /// Type → USD per hour the plan uses.
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

/// Each type's price to plan with: the mean over `weights` (the zone of each subnet launches
/// are spread over; a zone without a price for the type is left out), or over every zone read
/// when `weights` is empty; and the zones it is the mean over.
pub fn planned(by_zone: &ByZone, weights: &[String]) -> BTreeMap<String, (f64, String)> {
    by_zone
        .iter()
        .filter_map(|(ty, zones)| {
            let picked: Vec<(&String, f64)> = if weights.is_empty() {
                zones.iter().map(|(z, p)| (z, *p)).collect()
            } else {
                weights
                    .iter()
                    .filter_map(|z| Some((z, *zones.get(z)?)))
                    .collect()
            };
            if picked.is_empty() {
                return None;
            }
            let mean = picked.iter().map(|(_, p)| p).sum::<f64>() / picked.len() as f64;
            let mut names: Vec<&str> = picked.iter().map(|(z, _)| z.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            Some((ty.clone(), (mean, names.join("+"))))
        })
        .collect()
}

/// The availability zone of each of `subnets` (DescribeSubnets), repeats dropped, in the
/// subnets' order: a zone with two subnets appears twice (it gets two shares of the launches).
/// An error when any subnet is unknown (a typo would otherwise price nothing).
pub async fn subnet_zones(
    client: &aws_sdk_ec2::Client,
    subnets: &[String],
) -> Result<Vec<String>, String> {
    let mut distinct: Vec<String> = Vec::new();
    for s in subnets {
        if !distinct.contains(s) {
            distinct.push(s.clone());
        }
    }
    let out = client
        .describe_subnets()
        .set_subnet_ids(Some(distinct.clone()))
        .send()
        .await
        .map_err(|e| format!("DescribeSubnets: {}", DisplayErrorContext(e)))?;
    distinct
        .iter()
        .map(|want| {
            out.subnets()
                .iter()
                .find(|s| s.subnet_id() == Some(want.as_str()))
                .and_then(|s| s.availability_zone())
                .map(str::to_string)
                .ok_or_else(|| format!("DescribeSubnets did not list {want}"))
        })
        .collect()
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
    let mut distinct: Vec<String> = zones.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    // a start time of now: the price in effect now, one record per type and zone (the same
    // for every page, as the next token expects)
    let now = aws_sdk_ec2::primitives::DateTime::from(std::time::SystemTime::now());
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
            .start_time(now)
            .max_results(1000);
        if !distinct.is_empty() {
            r = r.filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("availability-zone")
                    .set_values(Some(distinct.clone()))
                    .build(),
            );
        }
        if let Some(t) = token.take() {
            r = r.next_token(t);
        }
        let out = r
            .send()
            .await
            .map_err(|e| format!("DescribeSpotPriceHistory: {}", DisplayErrorContext(e)))?;
        for h in out.spot_price_history() {
            seen += 1;
            let (Some(ty), Some(price), Some(az)) = (
                h.instance_type().map(|t| t.as_str().to_string()),
                h.spot_price().and_then(|p| p.parse::<f64>().ok()),
                h.availability_zone(),
            ) else {
                continue;
            };
            // the filter again here: a zone the fleet never launches into prices nothing; a
            // price that is not positive is no price (it would hide the type's other zones)
            if !(price.is_finite() && price > 0.0)
                || !distinct.is_empty() && !distinct.iter().any(|z| z == az)
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
        .await
        .unwrap_or_else(|_| Err("the read took over 60 s".into()));
        {
            let mut s = shared.lock().expect("spot prices");
            s.zones = zones.clone();
            match got {
                Ok(by_zone) => {
                    s.by_type = planned(&by_zone, zones.as_deref().unwrap_or_default());
                    s.by_zone = by_zone;
                    s.read_at = crate::clock::wall_s();
                    s.error.clear();
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "reading spot prices failed; planning with the last ones read (or the catalog's)");
                    s.failures += 1;
                    s.error = e;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// What a spot instance of `spec` in `zone` is billed per hour: its zone's price now when one
/// was read there (capped as the plan's is), else the plan's price for its type.
pub fn billed_price(
    prices: &SpotPrices,
    spec: &crate::control::catalog::InstanceSpec,
    zone: &str,
) -> f64 {
    prices
        .price_in(&spec.name, zone)
        .and_then(|p| spec.capped_spot(p))
        .unwrap_or(spec.price_spot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read() -> ByZone {
        let mut by_zone = ByZone::new();
        by_zone.entry("c5.large".into()).or_default().extend([
            ("us-east-1a".to_string(), 0.040),
            ("us-east-1b".to_string(), 0.030),
            ("us-east-1c".to_string(), 0.035),
        ]);
        by_zone.entry("m5.large".into()).or_default();
        by_zone
    }

    #[test]
    fn the_plan_takes_the_mean_over_the_subnets_zones() {
        let by_zone = read();
        // no subnets: EC2 picks the zone, every zone read counts once
        let all = planned(&by_zone, &[]);
        assert!((all["c5.large"].0 - 0.035).abs() < 1e-12);
        assert_eq!(all["c5.large"].1, "us-east-1a+us-east-1b+us-east-1c");
        assert!(
            !all.contains_key("m5.large"),
            "a type with no zone read has no price"
        );
        // two subnets in 1b, one in 1a, one in a zone with no price for the type
        let z = |s: &str| s.to_string();
        let w = [
            z("us-east-1b"),
            z("us-east-1a"),
            z("us-east-1b"),
            z("us-east-1f"),
        ];
        let ours = planned(&by_zone, &w);
        assert!((ours["c5.large"].0 - (0.030 * 2.0 + 0.040) / 3.0).abs() < 1e-12);
        assert_eq!(ours["c5.large"].1, "us-east-1a+us-east-1b");
        assert!(planned(&by_zone, &[z("us-east-1f")]).is_empty());
    }

    #[test]
    fn a_spot_instance_is_billed_its_own_zones_price_capped_as_the_plans() {
        let mut catalog = crate::control::catalog::Catalog::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/catalog-us-east-1.toml"),
        )
        .unwrap();
        let mut by_zone = read();
        by_zone
            .get_mut("c5.large")
            .unwrap()
            .insert("us-east-1d".into(), 9.0);
        let s = SpotPrices {
            by_type: planned(&by_zone, &[]),
            by_zone,
            ..Default::default()
        };
        catalog.with_spot_prices(&s.prices());
        let spec = catalog.get("c5.large").unwrap();
        assert_eq!(billed_price(&s, spec, "us-east-1c"), 0.035);
        assert_eq!(billed_price(&s, spec, "us-east-1b"), 0.030);
        // a spike above on-demand counts as just under it, in the ledger as in the plan
        assert_eq!(
            billed_price(&s, spec, "us-east-1d"),
            spec.price_on_demand * 0.999
        );
        // a zone with no price read, or none known: the plan's price
        assert_eq!(billed_price(&s, spec, "us-east-1f"), spec.price_spot);
        assert_eq!(billed_price(&s, spec, ""), spec.price_spot);
    }
}
