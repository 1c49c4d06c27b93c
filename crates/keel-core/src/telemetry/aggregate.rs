//! Metric aggregation for `GET /v1/metrics/{name}` (SPEC §6): every matching point
//! in `[from, to)` falls into the step that holds it, and each step with points
//! gets one value. Steps without points are left out (there is nothing to say about
//! them; a chart draws a gap). Percentiles are exact, by nearest rank: the smallest
//! stored value with at least p% of the step's values at or below it.

/// Most steps one query may ask for (as Prometheus caps a range query).
pub const MAX_STEPS: i64 = 11_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    P50,
    P95,
    P99,
}

impl Agg {
    pub const ALL: [Agg; 8] = [
        Agg::Sum,
        Agg::Avg,
        Agg::Min,
        Agg::Max,
        Agg::Count,
        Agg::P50,
        Agg::P95,
        Agg::P99,
    ];

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == text)
            .ok_or_else(|| "agg is one of sum, avg, min, max, count, p50, p95, p99".into())
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::Sum => "sum",
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Count => "count",
            Agg::P50 => "p50",
            Agg::P95 => "p95",
            Agg::P99 => "p99",
        }
    }

    fn of(self, values: &mut [f64]) -> f64 {
        let n = values.len() as f64;
        match self {
            Agg::Sum => values.iter().sum(),
            Agg::Avg => values.iter().sum::<f64>() / n,
            Agg::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Agg::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Agg::Count => n,
            Agg::P50 => nearest_rank(values, 0.50),
            Agg::P95 => nearest_rank(values, 0.95),
            Agg::P99 => nearest_rank(values, 0.99),
        }
    }
}

fn nearest_rank(values: &mut [f64], p: f64) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let rank = (p * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// A query's window in microseconds: `[from, to)` cut into steps of `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
    pub step: i64,
}

impl Window {
    /// Checks the window: `from < to`, a positive step, at most [`MAX_STEPS`] steps.
    /// Without a step the whole range is one step.
    pub fn new(from: i64, to: i64, step: Option<i64>) -> Result<Self, String> {
        if from >= to {
            return Err("`from` must be before `to`".into());
        }
        let step = step.unwrap_or(to - from);
        if step <= 0 {
            return Err("`step` must be positive".into());
        }
        let span = to - from;
        let steps = span / step + i64::from(span % step != 0);
        if steps > MAX_STEPS {
            return Err(format!(
                "the range holds more than {MAX_STEPS} steps; widen `step`"
            ));
        }
        Ok(Self { from, to, step })
    }
}

/// `(step start, value)` for each step holding points, in time order. Points
/// outside the window are ignored.
pub fn aggregate(points: &[(i64, f64)], window: Window, agg: Agg) -> Vec<(i64, f64)> {
    let mut steps: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for &(ts, value) in points {
        if ts < window.from || ts >= window.to {
            continue;
        }
        let start = window.from + (ts - window.from) / window.step * window.step;
        steps.entry(start).or_default().push(value);
    }
    steps
        .into_iter()
        .map(|(start, mut values)| (start, agg.of(&mut values)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_gets_one_value_per_aggregation() {
        let window = Window::new(0, 100, Some(50)).unwrap();
        let points = [
            (0, 1.0),
            (10, 3.0),
            (49, 2.0),
            (50, 10.0),
            (99, 20.0),
            (100, 99.0),
            (-1, 99.0),
        ];
        let expect = [
            (Agg::Sum, [6.0, 30.0]),
            (Agg::Avg, [2.0, 15.0]),
            (Agg::Min, [1.0, 10.0]),
            (Agg::Max, [3.0, 20.0]),
            (Agg::Count, [3.0, 2.0]),
            (Agg::P50, [2.0, 10.0]),
            (Agg::P99, [3.0, 20.0]),
        ];
        for (agg, values) in expect {
            assert_eq!(
                aggregate(&points, window, agg),
                vec![(0, values[0]), (50, values[1])],
                "{agg:?}"
            );
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let window = Window::new(0, 1000, None).unwrap();
        let points: Vec<(i64, f64)> = (1..=100).rev().map(|v| (v, v as f64)).collect();
        assert_eq!(aggregate(&points, window, Agg::P50), vec![(0, 50.0)]);
        assert_eq!(aggregate(&points, window, Agg::P95), vec![(0, 95.0)]);
        assert_eq!(aggregate(&points, window, Agg::P99), vec![(0, 99.0)]);
        assert_eq!(aggregate(&[(5, 7.0)], window, Agg::P99), vec![(0, 7.0)]);
    }

    #[test]
    fn empty_steps_are_left_out_and_windows_are_checked() {
        let window = Window::new(0, 30, Some(10)).unwrap();
        assert_eq!(aggregate(&[(25, 1.0)], window, Agg::Count), vec![(20, 1.0)]);
        assert!(Window::new(10, 10, None).is_err());
        assert!(Window::new(0, 10, Some(0)).is_err());
        assert!(Window::new(0, MAX_STEPS + 1, Some(1)).is_err());
        assert!(Window::new(0, MAX_STEPS, Some(1)).is_ok());
        assert!(Window::new(-1, 1, Some(i64::MAX)).is_ok(), "no overflow");
        assert_eq!(Agg::parse("p95"), Ok(Agg::P95));
        assert!(Agg::parse("median").is_err());
    }
}
