//! Bounded polling, blocking or from async code: every wait of the launcher
//! is one check repeated until it gives an answer or the time is up.

use std::time::{Duration, Instant};

/// How often a wait looks again.
pub(crate) const STEP: Duration = Duration::from_millis(20);

/// Calls `check` every [`STEP`] until it gives `Some`; `None` once `timeout`
/// has passed without an answer. `check` runs at least once.
pub(crate) fn until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        if let Some(answer) = check() {
            return Some(answer);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        std::thread::sleep(STEP);
    }
}

/// [`until`] for async code: sleeps on the runtime's timer, never blocks it.
/// Each round awaits `probe()` (which owns what it needs: the future stays
/// `Send`) and hands its output to `check`.
pub(crate) async fn until_async<F: Future, T>(
    timeout: Duration,
    mut probe: impl FnMut() -> F,
    mut check: impl FnMut(F::Output) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        if let Some(answer) = check(probe().await) {
            return Some(answer);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        tokio::time::sleep(STEP).await;
    }
}

/// The probe of an [`until_async`] whose check needs nothing awaited.
pub(crate) fn nothing() -> std::future::Ready<()> {
    std::future::ready(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_first_answer_or_none_after_the_timeout() {
        let mut calls = 0;
        assert_eq!(
            until(Duration::from_secs(5), || {
                calls += 1;
                (calls == 3).then_some(calls)
            }),
            Some(3)
        );
        let started = Instant::now();
        assert_eq!(until(Duration::from_millis(60), || None::<()>), None);
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert_eq!(until(Duration::ZERO, || Some(1)), Some(1));
    }
}
