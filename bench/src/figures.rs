//! One measured figure, its bar and whether it clears it.

use std::fmt::Write as _;

#[derive(Clone, Debug)]
pub struct Figure {
    /// Its group, the first column of the table: 1 throughput, 2 the
    /// instrumentation's cost (criterion, not here), 3 schedule, 4 fidelity,
    /// 5 memory, 6 startup.
    pub item: u8,
    pub what: String,
    pub value: String,
    /// The bar it must clear, or empty for a figure reported for context.
    pub bar: String,
    pub pass: Option<bool>,
}

impl Figure {
    pub fn checked(item: u8, what: &str, value: String, bar: &str, pass: bool) -> Self {
        Self {
            item,
            what: what.to_owned(),
            value,
            bar: bar.to_owned(),
            pass: Some(pass),
        }
    }

    pub fn info(item: u8, what: &str, value: String) -> Self {
        Self {
            item,
            what: what.to_owned(),
            value,
            bar: String::new(),
            pass: None,
        }
    }
}

/// The Markdown table of `docs/benchmarks.md`.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| # | figure | measured | bar | result |\n|---|---|---|---|---|\n");
    for figure in figures {
        let result = match figure.pass {
            Some(true) => "pass",
            Some(false) => "**FAIL**",
            None => "(context)",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            figure.item, figure.what, figure.value, figure.bar, result
        );
    }
    out
}

/// The value at quantile `q` of a sorted slice (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5)
}

/// The quantile `q` of a cumulative histogram given as `(upper bound, count)`
/// pairs in increasing order (the last bound may be infinite), interpolated
/// linearly inside the bucket as Prometheus' `histogram_quantile` does.
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return lower_bound;
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return bound;
            }
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket;
        }
        lower_bound = bound;
        lower_count = count;
    }
    lower_bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), 50.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        let buckets = [(0.001, 50.0), (0.002, 100.0), (f64::INFINITY, 100.0)];
        assert!((histogram_quantile(&buckets, 0.5) - 0.001).abs() < 1e-12);
        assert!((histogram_quantile(&buckets, 0.75) - 0.0015).abs() < 1e-12);
    }
}
