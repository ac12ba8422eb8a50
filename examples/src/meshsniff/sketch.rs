//! A latency sketch: a log-linear histogram of microseconds whose quantiles have a bounded
//! relative error, in memory bounded by the largest latency seen (never by the record count).
//!
//! Each power of two is split into [`SUB_BUCKETS`] equal sub-buckets, so a sub-bucket spans at
//! most 1/8 of its lower bound. A quantile is read as the midpoint of the sub-bucket holding its
//! rank, clamped to the smallest and largest value seen: at most 6.25 % from the true value
//! (plus the 1 µs resolution), and exact when one value was observed. Octave bounds (2^k µs) are
//! sub-bucket bounds, so the Prometheus buckets `meshsniff` exports are exact sums of these.

/// Sub-buckets per power of two (2^3).
pub const SUB_BUCKETS: u64 = 8;
const SUB_BITS: u32 = 3;

/// Values above this many microseconds (2^36 µs, about 19 hours) share the last sub-bucket.
const MAX_MICROS: u64 = (1 << 36) - 1;

/// The documented worst-case relative error of [`LatencySketch::quantile`] (1/16).
pub const RELATIVE_ERROR: f64 = 0.0625;

/// Counts of latencies by sub-bucket (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct LatencySketch {
    /// Grows to the highest sub-bucket used: at most 272 counters (2.2 KB).
    counts: Vec<u64>,
    total: u64,
    min_us: u64,
    max_us: u64,
}

/// Sub-bucket of a value `u` (microseconds minus one, so a bucket is `(lower, upper]`).
fn index(u: u64) -> usize {
    let u = u.min(MAX_MICROS);
    if u < SUB_BUCKETS {
        return u as usize;
    }
    let exponent = u64::from(63 - u.leading_zeros());
    let mantissa = (u >> (exponent - u64::from(SUB_BITS))) & (SUB_BUCKETS - 1);
    ((exponent - u64::from(SUB_BITS) + 1) * SUB_BUCKETS + mantissa) as usize
}

/// The smallest `u` of sub-bucket `i` (the inverse of [`index`]).
fn lower(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return i;
    }
    let exponent = i / SUB_BUCKETS + u64::from(SUB_BITS) - 1;
    (SUB_BUCKETS + i % SUB_BUCKETS) << (exponent - u64::from(SUB_BITS))
}

impl LatencySketch {
    /// Counts one latency.
    pub fn record(&mut self, nanos: u64) {
        let micros = nanos.div_ceil(1000);
        let i = index(micros.saturating_sub(1));
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        if let Some(count) = self.counts.get_mut(i) {
            *count += 1;
        }
        self.min_us = if self.total == 0 {
            micros
        } else {
            self.min_us.min(micros)
        };
        self.max_us = self.max_us.max(micros);
        self.total += 1;
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency (µs) at quantile `q` (0 to 1), by nearest rank; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.total - 1) as f64).round() as u64;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen > rank {
                // Values in sub-bucket i are lower(i)+1 ..= lower(i+1).
                let mid = (lower(i) + 1 + lower(i + 1)) as f64 / 2.0;
                return Some(mid.clamp(self.min_us as f64, self.max_us as f64));
            }
        }
        Some(self.max_us as f64)
    }

    /// Latencies of at most `2^octave` µs.
    pub fn at_most_octave(&self, octave: u32) -> u64 {
        let end = index((1u64 << octave.min(36)) - 1) + 1;
        self.counts.iter().take(end).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_line() {
        for u in 0..100_000u64 {
            let i = index(u);
            assert!(lower(i) <= u && u < lower(i + 1), "{u} in {i}");
        }
        for i in 8..270 {
            let width = (lower(i + 1) - lower(i)) as f64;
            assert!(width / lower(i) as f64 <= 1.0 / 8.0 + 1e-12);
        }
    }

    #[test]
    fn quantiles_stay_within_the_documented_error() {
        let mut sketch = LatencySketch::default();
        let mut values: Vec<u64> = (0..10_000u64).map(|i| 50 + i * i % 977_003).collect();
        for v in &values {
            sketch.record(v * 1000);
        }
        values.sort_unstable();
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = values[(q * (values.len() - 1) as f64).round() as usize] as f64;
            let got = sketch.quantile(q).unwrap();
            assert!(
                (got - exact).abs() / exact <= RELATIVE_ERROR,
                "q{q}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn one_value_is_exact_and_octaves_are_cumulative() {
        let mut sketch = LatencySketch::default();
        sketch.record(1_234_567);
        assert_eq!(sketch.quantile(0.5), Some(1235.0));
        assert_eq!(sketch.quantile(0.99), Some(1235.0));
        // 1235 µs: above 2^10, at most 2^11.
        assert_eq!(sketch.at_most_octave(10), 0);
        assert_eq!(sketch.at_most_octave(11), 1);
        sketch.record(1_024_000); // exactly 2^10 µs belongs to le=2^10
        assert_eq!(sketch.at_most_octave(10), 1);
        assert!(LatencySketch::default().quantile(0.5).is_none());
    }
}
