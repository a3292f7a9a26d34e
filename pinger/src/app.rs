//! The ping loop and the pinger's own metrics.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use instrumentation::client::{ClientResponse, InstrumentedClient};
use instrumentation::metrics::{HttpClientMetrics, ProcessCollector, register_build_info};
use instrumentation::redact::redact_url;
use instrumentation::telemetry::Instrumentation;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use reqwest::Url;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::schedule::{PingSchedule, Slot};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkipReason {
    reason: Cow<'static, str>,
}

/// Metrics about the load itself, so that a dashboard can tell a quiet
/// target from a pinger that is not pinging.
#[derive(Clone, Debug)]
struct ScheduleMetrics {
    skipped: Family<SkipReason, Counter>,
    send_lag: Histogram,
}

impl ScheduleMetrics {
    fn register(registry: &mut Registry, rate: f64) -> Self {
        let metrics = Self {
            skipped: Family::default(),
            // From 50 µs to 1 s: the schedule's precision, then stalls.
            send_lag: Histogram::new([
                0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.1, 1.0,
            ]),
        };
        registry.register(
            "pinger_pings_skipped",
            "Pings not sent: reason=max_in_flight (too many awaiting a response) or schedule_lag (due during a stall)",
            metrics.skipped.clone(),
        );
        registry.register_with_unit(
            "pinger_send_lag",
            "How late each ping was sent compared with its evenly spaced schedule",
            Unit::Seconds,
            metrics.send_lag.clone(),
        );
        let configured_rate = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        configured_rate.set(rate);
        registry.register(
            "pinger_configured_pings_per_second",
            "The rate the pinger is configured to send at",
            configured_rate,
        );
        metrics
    }

    fn skip(&self, reason: &'static str, count: u64) {
        self.skipped
            .get_or_create(&SkipReason {
                reason: Cow::Borrowed(reason),
            })
            .inc_by(count);
    }
}

/// Sleeps on the current thread until `deadline`, waking at least every
/// [`STOP_CHECK`] to see whether `stopping` was set. Returns false when it was.
///
/// `thread::sleep` uses the OS's high-resolution timer: it overshoots by the
/// thread's timer slack (50 µs by default on Linux) plus the wake-up latency,
/// far below the 1 ms a tokio timer can overshoot by, and costs no CPU while
/// waiting (10 pings/s is 10 wake-ups a second, plus the stop checks).
fn sleep_until(deadline: Instant, stopping: &AtomicBool) -> bool {
    loop {
        if stopping.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(STOP_CHECK));
    }
}

/// How soon the schedule thread notices a shutdown.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// How much longer than the ping timeout shutdown waits for the pings in
/// flight, so that each can report its own timeout.
const IN_FLIGHT_MARGIN: Duration = Duration::from_millis(500);

/// The longest a pinger configured with `config` takes from SIGTERM to exit:
/// the schedule thread noticing, the pings in flight (each bounded by its
/// timeout), then the last spans' export (bounded by its budget even when the
/// collector never answers). It must fit the pod's
/// `terminationGracePeriodSeconds` and compose's stop grace period.
pub fn shutdown_bound(config: &Config) -> Duration {
    STOP_CHECK + config.timeout + IN_FLIGHT_MARGIN + instrumentation::telemetry::SPAN_FLUSH_BUDGET
}

/// Logs failed pings at most once a second, with how many it left out, so
/// that a target that is down does not flood the logs.
#[derive(Debug)]
struct FailureLog {
    state: Mutex<FailureLogState>,
}

#[derive(Debug)]
struct FailureLogState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            state: Mutex::new(FailureLogState {
                last_logged: None,
                suppressed: 0,
            }),
        }
    }

    fn failed(&self, url: &Url, response: &ClientResponse) {
        let suppressed = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let now = Instant::now();
            if state
                .last_logged
                .is_some_and(|last| now.duration_since(last) < Self::EVERY)
            {
                state.suppressed += 1;
                return;
            }
            state.last_logged = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        tracing::warn!(
            target_url = %redact_url(url),
            code = %response.outcome.label(),
            error = response.error.as_ref().map(|error| tracing::field::display(error_chain(error))),
            trace_id = response.trace_id.map(tracing::field::display),
            elapsed_ms = response.elapsed.as_secs_f64() * 1000.0,
            similar_failures_not_logged = suppressed,
            "ping failed"
        );
    }
}

/// reqwest's top-level message hides the cause ("error sending request");
/// the chain names it ("Connection refused").
fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The pinger: its registry (for `/metrics`) and what it needs to ping.
pub struct Pinger {
    client: InstrumentedClient,
    targets: Arc<[Url]>,
    next_target: AtomicUsize,
    rate: f64,
    timeout: Duration,
    max_in_flight: u32,
    shutdown_bound: Duration,
    metrics: ScheduleMetrics,
    failures: Arc<FailureLog>,
}

impl Pinger {
    /// Builds the pinger and the registry holding all its metrics; its pings
    /// are traced with `instrumentation`.
    pub fn new(
        config: &Config,
        instrumentation: &Instrumentation,
    ) -> Result<(Self, Registry), reqwest::Error> {
        let mut registry = Registry::default();
        let client_metrics = HttpClientMetrics::register(&mut registry);
        let metrics = ScheduleMetrics::register(&mut registry, config.rate);
        register_build_info(
            &mut registry,
            "pinger",
            vec![
                ("version".into(), env!("CARGO_PKG_VERSION").into()),
                ("revision".into(), instrumentation::REVISION.into()),
            ],
        );
        ProcessCollector::register(&mut registry);

        let mut http = reqwest::Client::builder()
            .timeout(config.timeout)
            .no_proxy()
            .user_agent(concat!("pinger/", env!("CARGO_PKG_VERSION")));
        if !config.keep_alive {
            // No idle connection is kept, so every ping connects afresh.
            http = http.pool_max_idle_per_host(0);
        }
        let client = InstrumentedClient::new(
            http.build()?,
            instrumentation,
            client_metrics,
            config.target_name.clone(),
        );
        let pinger = Self {
            client,
            targets: config.targets.clone().into(),
            next_target: AtomicUsize::new(0),
            rate: config.rate,
            timeout: config.timeout,
            max_in_flight: config.max_in_flight,
            shutdown_bound: shutdown_bound(config),
            metrics,
            failures: Arc::new(FailureLog::new()),
        };
        Ok((pinger, registry))
    }

    fn next_target(&self) -> Url {
        let index = self.next_target.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        self.targets[index].clone()
    }

    /// Pings until `stop` resolves, then waits up to the ping timeout for the
    /// pings still in flight.
    ///
    /// The schedule runs on a thread of its own rather than as a task: tokio's
    /// timer has a 1 ms resolution and a task's wake-up waits behind every ping
    /// task queued on its worker, which at 5,000 pings/s (one per 200 µs) made
    /// pings milliseconds late. The thread sleeps with the OS's high-resolution
    /// timer (tens of µs late) and only hands each due ping to the runtime.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let in_flight = Arc::new(Semaphore::new(self.max_in_flight as usize));
        let schedule = PingSchedule::new(Instant::now(), self.rate);
        tracing::info!(
            rate = self.rate,
            targets = ?self.targets.iter().map(|url| redact_url(url).to_string()).collect::<Vec<_>>(),
            interval_us = schedule.interval().as_micros() as u64,
            shutdown_bound_ms = self.shutdown_bound.as_millis() as u64,
            "pinging"
        );
        let (timeout, max_in_flight) = (self.timeout, self.max_in_flight);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut scheduler = {
            let runtime = tokio::runtime::Handle::current();
            let in_flight = in_flight.clone();
            let stopping = stopping.clone();
            tokio::task::spawn_blocking(move || {
                self.schedule(schedule, &runtime, &in_flight, &stopping)
            })
        };
        tokio::pin!(stop);
        let ended_by_itself = tokio::select! {
            _ = &mut stop => false,
            result = &mut scheduler => {
                if let Err(error) = result {
                    tracing::error!(%error, "the ping schedule stopped unexpectedly");
                }
                true
            }
        };
        stopping.store(true, Ordering::Relaxed);
        if !ended_by_itself {
            if let Err(error) = scheduler.await {
                tracing::error!(%error, "the ping schedule stopped unexpectedly");
            }
        }

        let pending = max_in_flight as usize - in_flight.available_permits();
        tracing::info!(pending, "stopped scheduling; waiting for pings in flight");
        let all = in_flight.acquire_many(max_in_flight);
        // A little beyond the timeout, so that every ping can report its own timeout.
        match tokio::time::timeout(timeout + IN_FLIGHT_MARGIN, all).await {
            Ok(_) => tracing::info!("all pings answered"),
            Err(_) => tracing::warn!("pings still in flight at shutdown were abandoned"),
        }
    }

    /// The schedule loop, on its own thread, until `stopping` is set.
    fn schedule(
        &self,
        mut schedule: PingSchedule,
        runtime: &tokio::runtime::Handle,
        in_flight: &Arc<Semaphore>,
        stopping: &AtomicBool,
    ) {
        loop {
            match schedule.poll(Instant::now()) {
                Slot::Send { scheduled } => {
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        self.metrics.skip("max_in_flight", 1);
                        continue;
                    };
                    let client = self.client.clone();
                    let failures = self.failures.clone();
                    let send_lag = self.metrics.send_lag.clone();
                    let url = self.next_target();
                    runtime.spawn(async move {
                        // Measured when the ping task starts, just before the
                        // request is built and sent.
                        send_lag.observe(scheduled.elapsed().as_secs_f64());
                        let response = client.get(&url).await;
                        if !response.outcome.is_success() {
                            failures.failed(&url, &response);
                        }
                        drop(permit);
                    });
                }
                Slot::Skip { count } => {
                    tracing::warn!(count, "pinger stalled: skipping pings that are too late");
                    self.metrics.skip("schedule_lag", count);
                }
                Slot::WaitUntil(deadline) => {
                    if !sleep_until(deadline, stopping) {
                        return;
                    }
                }
            }
        }
    }
}
