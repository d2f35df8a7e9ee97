//! Measuring a model's latency per batch size on this machine (`mark profile`, and `mark serve`
//! for a model without a profile).

use std::time::Instant;

use ort::session::Session;

use super::executor::run_tensors;
use super::session::IoMeta;
use crate::profile::{percentiles, LatencyProfile, MeasuredPoint};
use crate::tensor::{numel, DType, Tensor, TensorData};

/// Powers of two up to `max`, plus `max` itself.
pub fn default_batch_sizes(max: u32) -> Vec<u32> {
    let mut v: Vec<u32> = std::iter::successors(Some(1u32), |b| b.checked_mul(2))
        .take_while(|&b| b <= max)
        .collect();
    if v.last() != Some(&max) {
        v.push(max);
    }
    v
}

/// Inputs of `batch` rows filled with a deterministic pattern; other dynamic dims become 1.
pub fn synthetic_inputs(inputs: &[IoMeta], batch: u32) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|m| {
            let shape: Vec<i64> = m
                .shape
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if i == 0 && d < 0 {
                        i64::from(batch)
                    } else if d < 0 {
                        1
                    } else {
                        d
                    }
                })
                .collect();
            let n = numel(&shape);
            let data = match m.dtype {
                DType::Bytes => TensorData::Strings(vec![b"x".to_vec(); n]),
                DType::Fp32 => TensorData::Raw(
                    (0..n)
                        .flat_map(|i| ((i % 17) as f32 * 0.05).to_le_bytes())
                        .collect(),
                ),
                d => TensorData::Raw(vec![0u8; n * d.size().unwrap_or(1)]),
            };
            Tensor {
                name: m.name.clone(),
                dtype: m.dtype,
                shape,
                data,
            }
        })
        .collect()
}

/// Measures each batch size: `warmup` unmeasured runs, then `reps` timed runs.
pub fn measure(
    session: &mut Session,
    inputs: &[IoMeta],
    outputs: &[String],
    batch_sizes: &[u32],
    warmup: usize,
    reps: usize,
) -> Result<LatencyProfile, String> {
    let mut points = Vec::with_capacity(batch_sizes.len());
    for &b in batch_sizes {
        let x = synthetic_inputs(inputs, b);
        for _ in 0..warmup {
            run_tensors(session, &x, outputs)?;
        }
        let mut samples = Vec::with_capacity(reps);
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            run_tensors(session, &x, outputs)?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let (p50, p99) = percentiles(&mut samples);
        // progress: one line per batch size (the large ones take a while on a big model)
        tracing::info!(
            batch = b,
            done = points.len() + 1,
            of = batch_sizes.len(),
            p50_ms = p50 / 1e3,
            p99_ms = p99 / 1e3,
            "profiled a batch size"
        );
        points.push(MeasuredPoint {
            batch: b,
            p50_us: p50,
            p99_us: p99,
        });
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "local".into());
    Ok(LatencyProfile::new(host, points))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes() {
        assert_eq!(default_batch_sizes(1), vec![1]);
        assert_eq!(default_batch_sizes(8), vec![1, 2, 4, 8]);
        assert_eq!(default_batch_sizes(12), vec![1, 2, 4, 8, 12]);
    }

    #[test]
    fn synthetic_shapes() {
        let m = IoMeta {
            name: "x".into(),
            dtype: DType::Int32,
            shape: vec![-1, 3, -1],
        };
        let t = &synthetic_inputs(&[m], 4)[0];
        assert_eq!(t.shape, vec![4, 3, 1]);
        assert_eq!(t.byte_len(), 48);
    }
}
