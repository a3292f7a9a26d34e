//! The order of the throughput runs, and the shares read from them: sans-IO,
//! so that the order and the arithmetic are tested without servers.
//!
//! The machine's speed drifts (by a fifth within minutes on a shared 2-core
//! machine) and jumps between one-second runs, so a server's run is compared
//! only with the baseline's runs just before and just after it: every other
//! run is the baseline's.

/// The runs of `rounds` rounds, in order: the baseline before each of
/// `others`, whose order rotates from round to round so that none always
/// follows the same neighbour, and the baseline once more at the end, so
/// that every run of the others sits between two runs of the baseline.
pub fn interleaved<S: Copy>(baseline: S, others: &[S], rounds: usize) -> Vec<S> {
    let mut order = Vec::with_capacity(rounds * others.len() * 2 + 1);
    for round in 0..rounds {
        for index in 0..others.len() {
            order.push(baseline);
            order.push(others[(index + round) % others.len()]);
        }
    }
    order.push(baseline);
    order
}

/// Each run of `server`'s rate over the mean of the baseline's runs just
/// before and just after it, in run order. A run without a baseline run on
/// both sides is left out: a drift that is linear across the three runs
/// cancels only between two.
pub fn bracketed_shares<S: PartialEq>(runs: &[(S, f64)], baseline: &S, server: &S) -> Vec<f64> {
    runs.windows(3)
        .filter_map(|window| match window {
            [(before, before_rate), (this, rate), (after, after_rate)]
                if this == server && before == baseline && after == baseline =>
            {
                Some(rate / ((before_rate + after_rate) / 2.0))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_run_is_the_baseline_and_the_others_rotate() {
        let order = interleaved('B', &['x', 'y', 'z'], 3);
        let text: String = order.into_iter().collect();
        assert_eq!(text, "BxByBzByBzBxBzBxByB");
    }

    #[test]
    fn no_rounds_is_the_baseline_alone() {
        assert_eq!(interleaved('B', &['x'], 0), vec!['B']);
    }

    #[test]
    fn a_run_is_divided_by_the_mean_of_the_baseline_runs_around_it() {
        // The machine slows down steadily: the baseline falls from 100 to 80
        // while x is always 90% of it.
        let runs = [
            ('B', 100.0),
            ('x', 0.9 * 95.0),
            ('B', 90.0),
            ('y', 50.0),
            ('B', 80.0),
        ];
        let shares = bracketed_shares(&runs, &'B', &'x');
        assert_eq!(shares.len(), 1);
        assert!((shares[0] - 0.9).abs() < 1e-12, "{shares:?}");
        let shares = bracketed_shares(&runs, &'B', &'y');
        assert!((shares[0] - 50.0 / 85.0).abs() < 1e-12, "{shares:?}");
    }

    #[test]
    fn a_run_without_a_baseline_on_both_sides_is_left_out() {
        let runs = [('x', 1.0), ('B', 2.0), ('x', 1.0), ('y', 1.0), ('B', 2.0)];
        assert!(bracketed_shares(&runs, &'B', &'x').is_empty());
        assert!(bracketed_shares(&runs, &'B', &'y').is_empty());
    }

    #[test]
    fn an_interleaved_order_gives_each_other_server_one_share_a_round() {
        let order = interleaved('B', &['x', 'y'], 4);
        let runs: Vec<(char, f64)> = order.into_iter().map(|server| (server, 1.0)).collect();
        assert_eq!(bracketed_shares(&runs, &'B', &'x'), vec![1.0; 4]);
        assert_eq!(bracketed_shares(&runs, &'B', &'y'), vec![1.0; 4]);
    }
}
