//! Per-decision latency distributions: our own timed loop, because criterion
//! reports means and medians of *batch* averages, not tails.
//!
//! Method: every sample is one decision, timed with two `Instant::now()`
//! reads around it (`black_box` on the input and the result). The cost of
//! the two reads themselves (the median of back-to-back pairs, measured in
//! the same run) is subtracted from every sample, floored at zero. The
//! requests of the mix are visited in a fixed shuffled order, many passes, so
//! the distribution is over the whole mix, cache effects included.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median, p99 and mean of a set of samples, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Samples taken.
    pub samples: usize,
    /// 50th percentile.
    pub median_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// Mean.
    pub mean_ns: f64,
}

/// The `q` quantile (0..=1) of sorted samples (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Summarizes samples (sorts them).
pub fn summarize(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    Summary {
        samples: samples.len(),
        median_ns: quantile(&samples, 0.5),
        p99_ns: quantile(&samples, 0.99),
        mean_ns: mean,
    }
}

/// The cost of one `Instant::now()` pair, in ns (median of 100k).
pub fn timer_overhead_ns() -> f64 {
    let mut samples = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let t0 = Instant::now();
        let t1 = black_box(Instant::now());
        samples.push(t1.duration_since(t0).as_nanos() as f64);
    }
    summarize(samples).median_ns
}

/// Times single decisions: `decide(i)` for request indexes in `order`,
/// repeated until `max_samples` samples or `budget` elapsed (at least one
/// pass). Subtracts `overhead_ns` from each sample.
pub fn time_decisions(
    order: &[usize],
    max_samples: usize,
    budget: Duration,
    overhead_ns: f64,
    mut decide: impl FnMut(usize) -> bool,
) -> Summary {
    // Warm up: one pass.
    for &i in order {
        black_box(decide(black_box(i)));
    }
    let start = Instant::now();
    let mut samples = Vec::with_capacity(max_samples.min(4_000_000));
    'outer: loop {
        for &i in order {
            let t0 = Instant::now();
            let out = decide(black_box(i));
            let t1 = Instant::now();
            black_box(out);
            samples.push((t1.duration_since(t0).as_nanos() as f64 - overhead_ns).max(0.0));
            if samples.len() >= max_samples {
                break 'outer;
            }
        }
        if start.elapsed() >= budget {
            break;
        }
    }
    summarize(samples)
}

/// A fixed shuffled visiting order of `n` requests.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = crate::mix::Rng::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// Formats nanoseconds for tables: `85 ns`, `4.2 µs`, `12.3 ms`.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}
