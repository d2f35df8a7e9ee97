//! The Prometheus / OpenMetrics exposition through the official `prometheus-client` crate: the
//! gateway keeps its counters on plain atomics (the request path pays one relaxed add per event,
//! nothing more) and each scrape encodes a snapshot of them through the crate's `Collector`s, so
//! the format (OpenMetrics text with `# EOF`, label escaping, `_total` suffixes, cumulative
//! buckets) is the crate's, not hand-written.

use std::fmt;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

/// A label set: `(name, value)` pairs (empty: an unlabelled sample).
pub type Labels = Vec<(&'static str, String)>;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn each<T>(
    m: &mut MetricEncoder<'_>,
    samples: impl IntoIterator<Item = (Labels, T)>,
    mut one: impl FnMut(&mut MetricEncoder<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    for (labels, v) in samples {
        if labels.is_empty() {
            one(m, &v)?;
        } else {
            one(&mut m.encode_family(&labels)?, &v)?;
        }
    }
    Ok(())
}

/// A counter family `name` (named with its `_total`, as the samples are).
pub fn counter<T: EncodeCounterValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, T)>,
) -> fmt::Result {
    let family = name.strip_suffix("_total").unwrap_or(name);
    let mut m = enc.encode_descriptor(family, help, None, MetricType::Counter)?;
    each(&mut m, samples, |m, v| {
        m.encode_counter::<NoLabelSet, T, f64>(v, None)
    })
}

/// A gauge family.
pub fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    each(&mut m, samples, |m, v| m.encode_gauge(v))
}

/// A histogram family: per sample, sum, count and per-bucket (not cumulative) counts with the
/// last bound `+Inf`.
pub fn histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, (f64, u64, Vec<(f64, u64)>))>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    each(&mut m, samples, |m, (sum, count, buckets)| {
        m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)
    })
}

/// A source of series encoded at each scrape.
pub trait Encode: Send + Sync + 'static {
    /// Writes its families.
    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result;
}

impl Encode for super::Metrics {
    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        super::Metrics::encode(self, enc)
    }
}

/// Adapts an [`Encode`] to the crate's `Collector`.
pub struct Collected<T: Encode>(pub std::sync::Arc<T>);

impl<T: Encode> fmt::Debug for Collected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collected")
    }
}

impl<T: Encode> prometheus_client::collector::Collector for Collected<T> {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.0.encode(&mut enc)
    }
}

/// The OpenMetrics text of `collectors`, ending with `# EOF`.
pub fn render(collectors: Vec<Box<dyn prometheus_client::collector::Collector>>) -> String {
    let mut reg = prometheus_client::registry::Registry::default();
    for c in collectors {
        reg.register_collector(c);
    }
    let mut out = String::with_capacity(8192);
    // writing into a String cannot fail
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}
