//! The header read timeout, kept beside hyper rather than by it.
//!
//! hyper keeps one itself (`http1::Builder::header_read_timeout`), but on a
//! keep-alive connection it asks its timer for a new sleep for every request's
//! head and reads the socket once more after every response to start it:
//! about 1,200 instructions per request with tokio's timer, 850 with a timer
//! of its own, where a bare axum server spends 12,100 on a whole request
//! (callgrind, docs/benchmarks.md). Here the connection's service notes each
//! request's head and answer ([`Activity`]), and a task beside the
//! connection's ([`Watchdog`]) wakes once per timeout period, or at the
//! deadline it computed, and ends the connection's task when no head came
//! within the timeout of the connection opening or of its last answer. A
//! request being handled is never cut short.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// What one connection has done, as its watchdog reads it. Written by the
/// connection's own task only, so the counters' cache line stays on one core.
#[derive(Debug)]
pub(super) struct Activity {
    opened: Instant,
    heads: AtomicU64,
    answers: AtomicU64,
    /// Nanoseconds from `opened` to the last answer.
    last_answer: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            heads: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
        })
    }

    /// A request's head arrived (hyper calls the service).
    pub(super) fn head_received(&self) {
        // A plain store: only this connection's task writes.
        let heads = self.heads.load(Ordering::Relaxed);
        self.heads.store(heads + 1, Ordering::Release);
    }

    pub(super) fn has_requested(&self) -> bool {
        self.heads.load(Ordering::Relaxed) > 0
    }

    fn answered(&self) {
        let since_opened = self.opened.elapsed().as_nanos();
        self.last_answer.store(
            u64::try_from(since_opened).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let answers = self.answers.load(Ordering::Relaxed);
        self.answers.store(answers + 1, Ordering::Release);
    }

    /// When the next head is due, or `None` while a request is handled.
    fn head_due(&self, timeout: Duration) -> Option<Instant> {
        let answers = self.answers.load(Ordering::Acquire);
        let heads = self.heads.load(Ordering::Acquire);
        if heads > answers {
            return None;
        }
        let idle_since =
            self.opened + Duration::from_nanos(self.last_answer.load(Ordering::Relaxed));
        Some(idle_since + timeout)
    }
}

pin_project_lite::pin_project! {
    /// A response future that notes its answer on the connection's activity.
    pub(super) struct Answered<F> {
        #[pin]
        inner: F,
        activity: Arc<Activity>,
    }
}

impl<F> Answered<F> {
    pub(super) fn new(inner: F, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<F: Future> Future for Answered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        this.activity.answered();
        Poll::Ready(output)
    }
}

/// The task that ends a connection whose next head is late, for as long as
/// this lives: keep it in the connection's task.
pub(super) struct Watchdog(AbortHandle);

impl Watchdog {
    /// Starts watching `activity`; the connection's task is named later, once
    /// spawned, through the returned sender.
    pub(super) fn spawn(
        activity: Arc<Activity>,
        timeout: Duration,
    ) -> (Self, oneshot::Sender<AbortHandle>) {
        let (connection, named) = oneshot::channel::<AbortHandle>();
        let task = tokio::spawn(async move {
            if let Ok(connection) = named.await {
                watch(&activity, timeout).await;
                connection.abort();
            }
        });
        (Self(task.abort_handle()), connection)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Returns once the connection's next head is late.
async fn watch(activity: &Activity, timeout: Duration) {
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    loop {
        sleep.as_mut().await;
        let now = Instant::now();
        match activity.head_due(timeout) {
            Some(due) if due <= now => return,
            Some(due) => sleep.as_mut().reset(due),
            // Handled requests are not timed; a head is due a whole timeout
            // after the answer at the earliest.
            None => sleep.as_mut().reset(now + timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a connection's task: runs until aborted.
    fn connection() -> tokio::task::JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    fn watched(activity: &Arc<Activity>) -> (tokio::task::JoinHandle<()>, Watchdog) {
        let task = connection();
        let (watchdog, name) = Watchdog::spawn(activity.clone(), Duration::from_secs(10));
        let _ = name.send(task.abort_handle());
        (task, watchdog)
    }

    async fn answer(activity: &Arc<Activity>, handled_for: Duration) {
        activity.head_received();
        Answered::new(tokio::time::sleep(handled_for), activity.clone()).await;
    }

    /// Checks that `task` ends within 0.1 s either side of the 10 s timeout,
    /// counted from now.
    async fn ends_at_the_timeout(task: &tokio::task::JoinHandle<()>) {
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert!(!task.is_finished());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(task.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_head_ends_at_the_timeout_and_not_before() {
        let activity = Activity::new();
        let (task, _watchdog) = watched(&activity);
        ends_at_the_timeout(&task).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_counts_from_the_last_answer() {
        let activity = Activity::new();
        let (task, _watchdog) = watched(&activity);
        tokio::time::sleep(Duration::from_secs(8)).await;
        answer(&activity, Duration::from_secs(1)).await;
        // Answered at 9 s: the next head is due at 19 s.
        ends_at_the_timeout(&task).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_handled_for_longer_than_the_timeout_is_not_cut_short() {
        let activity = Activity::new();
        let (task, _watchdog) = watched(&activity);
        answer(&activity, Duration::from_secs(25)).await;
        assert!(!task.is_finished());
        ends_at_the_timeout(&task).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_ends_with_its_connection() {
        let activity = Activity::new();
        let (task, watchdog) = watched(&activity);
        let watchdog_task = watchdog.0.clone();
        drop(watchdog);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(watchdog_task.is_finished());
        assert!(!task.is_finished());
        task.abort();
    }
}
