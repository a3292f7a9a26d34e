//! hyper's header read timeout at the cost of a flag per request.
//!
//! Given tokio's timer (`hyper_util::rt::TokioTimer`), hyper asks for a new
//! sleep for every request's head on a keep-alive connection, and tokio
//! registers it in the runtime's timer wheel and removes it again once the
//! head arrives: a lock, a runtime handle clone and an allocation for every
//! request (callgrind: docs/benchmarks.md). Here hyper's sleep only records
//! its deadline on the connection; a task beside the connection's, [`Enforced`],
//! keeps one tokio timer, which moves when it fires (at most once per timeout
//! period) and wakes hyper's sleep once its deadline has passed. hyper then
//! ends the connection exactly as with tokio's timer. A task of its own rather
//! than a branch of the connection's `select!`: that would poll the timer
//! every time the connection's task wakes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The timer of one connection: give each connection its own (see
/// [`HeaderTimer::new`]) and run [`enforce`] beside it.
#[derive(Clone, Default)]
pub(super) struct HeaderTimer {
    armed: Arc<Mutex<Armed>>,
}

/// The sleep hyper holds while it waits for a request's head, if any.
#[derive(Default)]
struct Armed {
    /// Tells the current sleep from one hyper already replaced.
    generation: u64,
    deadline: Option<Instant>,
    expired: bool,
    waker: Option<Waker>,
}

impl HeaderTimer {
    fn lock(&self) -> MutexGuard<'_, Armed> {
        // Nothing that holds the lock can panic; a poisoned state is whole.
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl hyper::rt::Timer for HeaderTimer {
    // tokio's clock, which tests can pause, as `enforce` reads it.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let mut armed = self.lock();
        armed.generation = armed.generation.wrapping_add(1);
        armed.deadline = Some(deadline);
        armed.expired = false;
        armed.waker = None;
        Box::pin(HeaderSleep {
            timer: self.clone(),
            generation: armed.generation,
        })
    }
}

/// hyper's side: ready once [`enforce`] found its deadline passed.
struct HeaderSleep {
    timer: HeaderTimer,
    generation: u64,
}

impl Future for HeaderSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut armed = self.timer.lock();
        if armed.generation != self.generation {
            // Replaced: hyper no longer waits on this one.
            return Poll::Pending;
        }
        if armed.expired {
            return Poll::Ready(());
        }
        match &mut armed.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for HeaderSleep {}

impl Drop for HeaderSleep {
    fn drop(&mut self) {
        let mut armed = self.timer.lock();
        if armed.generation == self.generation {
            armed.deadline = None;
            armed.expired = false;
            armed.waker = None;
        }
    }
}

/// The task that enforces a connection's header deadlines, for as long as
/// this lives: keep it in the connection's task.
pub(super) struct Enforced(tokio::task::AbortHandle);

impl Enforced {
    pub(super) fn spawn(timer: HeaderTimer, period: Duration) -> Self {
        Self(tokio::spawn(enforce(timer, period)).abort_handle())
    }
}

impl Drop for Enforced {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches `timer`'s deadlines for as long as it is polled (it never ends).
/// `period` is the header read timeout; with no request head awaited the
/// timer looks again a period later, which is the earliest a head awaited
/// from now on could be late.
async fn enforce(timer: HeaderTimer, period: Duration) -> Infallible {
    let sleep = tokio::time::sleep(period);
    tokio::pin!(sleep);
    loop {
        sleep.as_mut().await;
        let now = tokio::time::Instant::now().into_std();
        let next = {
            let mut armed = timer.lock();
            match armed.deadline {
                Some(deadline) if deadline > now => deadline,
                Some(_) => {
                    armed.expired = true;
                    if let Some(waker) = armed.waker.take() {
                        waker.wake();
                    }
                    now + period
                }
                None => now + period,
            }
        };
        sleep.as_mut().reset(next.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    fn poll(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> Poll<()> {
        sleep.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_is_ready_once_its_deadline_passed_and_not_before() {
        let timer = HeaderTimer::default();
        let _enforced = Enforced::spawn(timer.clone(), Duration::from_secs(10));
        let mut sleep = timer.sleep(Duration::from_secs(10));
        assert!(poll(&mut sleep).is_pending());
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert!(poll(&mut sleep).is_pending());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(poll(&mut sleep).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_awaited_later_gets_its_whole_period() {
        let timer = HeaderTimer::default();
        let _enforced = Enforced::spawn(timer.clone(), Duration::from_secs(10));
        // Requests keep the connection busy for 15 s; then one head is awaited.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let mut sleep = timer.sleep(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert!(poll(&mut sleep).is_pending());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(poll(&mut sleep).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_or_replaced_sleep_leaves_no_deadline_behind() {
        let timer = HeaderTimer::default();
        let _enforced = Enforced::spawn(timer.clone(), Duration::from_secs(10));
        let first = timer.sleep(Duration::from_secs(1));
        let mut second = timer.sleep(Duration::from_secs(10));
        // The replaced sleep's drop must not disarm its successor.
        drop(first);
        tokio::time::sleep(Duration::from_millis(10_100)).await;
        assert!(poll(&mut second).is_ready());
        drop(second);
        assert_eq!(timer.lock().deadline, None);
    }
}
