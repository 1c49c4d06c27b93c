//! A small fixed-size latency histogram: exact below 16 µs, then eight buckets per
//! power of two (at most 12.5% relative error, about 6% once the bucket midpoint is
//! reported). Histograms add, so per-minute histograms merge into any window.

pub const SUB_BUCKETS: u32 = 8;
const LINEAR_LIMIT: u64 = 16;
/// Values above 2^27 µs (about 134 s) all land in the last bucket.
const MAX_EXPONENT: u32 = 27;
pub const BUCKETS: usize = LINEAR_LIMIT as usize + ((MAX_EXPONENT - 4 + 1) * SUB_BUCKETS) as usize;

#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LatencyHistogram(n={})", self.total)
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR_LIMIT {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros(); // ≥ 4
    if exponent > MAX_EXPONENT {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exponent - 3)) & u64::from(SUB_BUCKETS - 1);
    LINEAR_LIMIT as usize + ((exponent - 4) * SUB_BUCKETS) as usize + sub as usize
}

/// The middle of a bucket's range, in microseconds.
fn bucket_midpoint(index: usize) -> f64 {
    if index < LINEAR_LIMIT as usize {
        return index as f64;
    }
    let i = (index - LINEAR_LIMIT as usize) as u32;
    let exponent = i / SUB_BUCKETS + 4;
    let sub = u64::from(i % SUB_BUCKETS);
    let width = 1u64 << (exponent - 3);
    let low = (1u64 << exponent) + sub * width;
    low as f64 + width as f64 / 2.0
}

impl LatencyHistogram {
    pub fn record(&mut self, micros: u64) {
        let slot = &mut self.counts[bucket_of(micros)];
        *slot = slot.saturating_add(1);
        self.total += 1;
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.total += other.total;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The non-empty buckets as `index:count` pairs separated by commas: a
    /// compact text form for storage (a monitor's rollups keep one per bucket).
    pub fn to_sparse(&self) -> String {
        let mut out = String::new();
        for (index, &count) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&format!("{index}:{count}"));
        }
        out
    }

    /// Reads [`LatencyHistogram::to_sparse`]'s form back; pairs that do not fit
    /// are skipped.
    pub fn from_sparse(text: &str) -> Self {
        let mut h = Self::default();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let Some((index, count)) = pair.split_once(':') else {
                continue;
            };
            if let (Ok(index), Ok(count)) = (index.parse::<usize>(), count.parse::<u32>()) {
                if index < BUCKETS {
                    h.counts[index] = h.counts[index].saturating_add(count);
                    h.total += u64::from(count);
                }
            }
        }
        h
    }

    /// The `q`-quantile (0 < q ≤ 1) in microseconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return Some(bucket_midpoint(index));
            }
        }
        Some(bucket_midpoint(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = LatencyHistogram::default();
        for v in 1..=1000u64 {
            h.record(v * 10);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.07, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.07, "{p99}");
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    proptest! {
        #[test]
        fn a_value_is_reported_within_the_bucket_error(v in 0u64..(1 << MAX_EXPONENT)) {
            let mut h = LatencyHistogram::default();
            h.record(v);
            let got = h.quantile(0.99).unwrap();
            prop_assert!((got - v as f64).abs() <= (v as f64) * 0.0625 + 0.5, "{} vs {}", got, v);
        }

        #[test]
        fn merging_equals_recording_both(a in proptest::collection::vec(0u64..1_000_000, 0..50),
                                         b in proptest::collection::vec(0u64..1_000_000, 0..50)) {
            let (mut ha, mut hb, mut both) = Default::default();
            for v in &a { LatencyHistogram::record(&mut ha, *v); LatencyHistogram::record(&mut both, *v); }
            for v in &b { LatencyHistogram::record(&mut hb, *v); LatencyHistogram::record(&mut both, *v); }
            LatencyHistogram::merge(&mut ha, &hb);
            prop_assert_eq!(&LatencyHistogram::from_sparse(&ha.to_sparse()), &ha);
            prop_assert_eq!(ha, both);
        }
    }
}
