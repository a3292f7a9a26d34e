//! Request metrics whose hot path takes no lock.
//!
//! prometheus-client's `HistogramWithExemplars` and `CounterWithExemplar` take
//! a write lock on every observation, sampled or not; when several cores record
//! into the same series, the lock's cache line travels between them on every
//! request. Here every count and sum is an atomic in a per-thread shard (its
//! own cache lines), summed when `/metrics` is encoded, and only a sampled
//! observation takes a (per-bucket) lock, to store its exemplar whole.
//!
//! Both types encode through prometheus-client's own `MetricEncoder`
//! (`encode_histogram`, `encode_counter`), so the OpenMetrics and classic text
//! they produce is the library's, byte for byte, for the same values.

use std::collections::HashMap;
use std::iter::once;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::exemplar::{CounterWithExemplar, Exemplar};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::{LATENCY_BUCKETS, TraceExemplar};

/// The number of shards per series: enough that each core's thread usually
/// has one to itself (twice the cores, as threads are numbered in the order
/// they first record, not by core), bounded so that a series on a very large
/// machine stays a few KiB.
fn shard_count() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores * 2).next_power_of_two().min(64)
    })
}

/// This thread's shard among `shards` (a power of two). Threads are numbered
/// once, in the order they first record; numbering by thread keeps a
/// runtime worker on the same shard for its whole life.
fn shard_index(shards: usize) -> usize {
    static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    }
    THREAD.with(|thread| *thread) & (shards - 1)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these locks is written whole by a plain assignment, so
    // a panic elsewhere cannot leave it half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A sampled observation's exemplar, kept whole: labels, value and time are
/// written and read together under one lock.
#[derive(Clone, Copy, Debug)]
struct Sample<V> {
    exemplar: TraceExemplar,
    value: V,
    timestamp: Option<SystemTime>,
}

/// prometheus-client 0.26 makes an `Exemplar` only inside its own metric
/// types (no constructor, no `Clone`): one of its counters, holding nothing
/// else, stores a sample so that the encoder can be handed that `Exemplar`.
fn exemplar_holder<V, A>(sample: Sample<V>) -> CounterWithExemplar<TraceExemplar, V, A>
where
    V: Clone,
    A: prometheus_client::metrics::counter::Atomic<V> + Default,
{
    let holder = CounterWithExemplar::<TraceExemplar, V, A>::default();
    holder.inc_by(sample.value, Some(sample.exemplar), sample.timestamp);
    holder
}

// Copying an `Exemplar<TraceExemplar, f64>` bit for bit (below) is sound only
// while it owns nothing that a drop would free.
const _: () = assert!(!std::mem::needs_drop::<Exemplar<TraceExemplar, f64>>());

/// The number of buckets, `+Inf` included.
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// One thread's share of a histogram's observations, on cache lines of its own.
#[repr(align(128))]
#[derive(Debug, Default)]
struct HistogramShard {
    /// The sum of the observed values, as `f64` bits.
    sum_bits: AtomicU64,
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BUCKETS],
}

#[derive(Debug)]
struct HistogramInner {
    shards: Box<[HistogramShard]>,
    /// The last sampled observation per bucket, as prometheus-client keeps
    /// one exemplar per bucket (the last wins).
    exemplars: [Mutex<Option<Sample<f64>>>; BUCKETS],
}

/// A latency histogram (bucket bounds [`LATENCY_BUCKETS`]) with one trace
/// exemplar per bucket. Encodes exactly as prometheus-client's
/// `HistogramWithExemplars` with the same buckets and observations.
///
/// A scrape during observations sees each bucket's count as of some moment
/// (never decreasing from one scrape to the next); `_count` is the sum of the
/// bucket counts it encodes, so it always equals the `+Inf` bucket. `_sum` is
/// read beside them and may lag or lead them by the observations in flight.
/// Summed from per-thread shards, `_sum` can differ from a single running
/// total in its last digits (floating-point addition is not associative).
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: Arc<HistogramInner>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            inner: Arc::new(HistogramInner {
                shards: (0..shard_count())
                    .map(|_| HistogramShard::default())
                    .collect(),
                exemplars: Default::default(),
            }),
        }
    }
}

impl LatencyHistogram {
    /// Records `value`; with an exemplar (a sampled request), also makes it
    /// its bucket's exemplar.
    pub fn observe(
        &self,
        value: f64,
        exemplar: Option<TraceExemplar>,
        timestamp: Option<SystemTime>,
    ) {
        // As prometheus-client: the first bucket whose bound is at least the
        // value; NaN goes to `+Inf`.
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| *bound >= value)
            .unwrap_or(BUCKETS - 1);
        let shard = &self.inner.shards[shard_index(self.inner.shards.len())];
        shard.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // Another thread shares this shard only when there are more threads
        // than shards; the loop then retries rather than lose a value.
        let _ = shard
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        if let Some(exemplar) = exemplar {
            *lock(&self.inner.exemplars[bucket]) = Some(Sample {
                exemplar,
                value,
                timestamp,
            });
        }
    }

    /// The sum of the observations and the observations per bucket
    /// (`(upper bound, count)`, not cumulative), as the encoder takes them.
    fn snapshot(&self) -> (f64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(once(f64::INFINITY))
            .map(|bound| (bound, 0))
            .collect();
        let mut sum = 0.0;
        for shard in &self.inner.shards {
            sum += f64::from_bits(shard.sum_bits.load(Ordering::Relaxed));
            for ((_, total), count) in buckets.iter_mut().zip(&shard.counts) {
                *total += count.load(Ordering::Relaxed);
            }
        }
        (sum, buckets)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, buckets) = self.snapshot();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let holders: Vec<(usize, CounterWithExemplar<TraceExemplar, f64, AtomicU64>)> = self
            .inner
            .exemplars
            .iter()
            .enumerate()
            .filter_map(|(bucket, slot)| Some((bucket, exemplar_holder((*lock(slot))?))))
            .collect();
        let mut exemplars = HashMap::with_capacity(holders.len());
        for (bucket, holder) in &holders {
            let (_, exemplar) = holder.get();
            if let Some(exemplar) = exemplar.as_ref() {
                // SAFETY: `exemplar` is a valid, initialised value behind a
                // shared reference that outlives the read; its type has no
                // drop glue (asserted at compile time above) and no interior
                // mutability, so a bitwise copy is an independent value and
                // neither copy frees anything.
                exemplars.insert(*bucket, unsafe { std::ptr::read(exemplar) });
            }
        }
        encoder.encode_histogram(sum, count, &buckets, Some(&exemplars))
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One thread's share of a counter, on a cache line of its own.
#[repr(align(128))]
#[derive(Debug, Default)]
struct CounterShard(AtomicU64);

#[derive(Debug)]
struct CounterInner {
    shards: Box<[CounterShard]>,
    exemplar: Mutex<Option<Sample<u64>>>,
}

/// A counter with a trace exemplar. Encodes exactly as prometheus-client's
/// `CounterWithExemplar` with the same value and exemplar.
///
/// Unlike prometheus-client's `inc_by`, an increment without an exemplar
/// leaves the last one in place: with ratio sampling, most increments are
/// unsampled and would otherwise erase it.
#[derive(Clone, Debug)]
pub struct ExemplarCounter {
    inner: Arc<CounterInner>,
}

impl Default for ExemplarCounter {
    fn default() -> Self {
        Self {
            inner: Arc::new(CounterInner {
                shards: (0..shard_count())
                    .map(|_| CounterShard::default())
                    .collect(),
                exemplar: Mutex::new(None),
            }),
        }
    }
}

impl ExemplarCounter {
    /// Adds `by`; with an exemplar (a sampled request), also makes it the
    /// counter's exemplar, with the value `by`.
    pub fn inc_by(&self, by: u64, exemplar: Option<TraceExemplar>, timestamp: Option<SystemTime>) {
        let shard = &self.inner.shards[shard_index(self.inner.shards.len())];
        shard.0.fetch_add(by, Ordering::Relaxed);
        if let Some(exemplar) = exemplar {
            *lock(&self.inner.exemplar) = Some(Sample {
                exemplar,
                value: by,
                timestamp,
            });
        }
    }

    /// The counter's value (the sum of its shards).
    pub fn get(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for ExemplarCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ExemplarCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let value = self.get();
        let sample = *lock(&self.inner.exemplar);
        match sample {
            Some(sample) => {
                let holder = exemplar_holder::<u64, AtomicU64>(sample);
                let (_, exemplar) = holder.get();
                encoder.encode_counter(&value, exemplar.as_ref())
            }
            None => encoder.encode_counter::<TraceExemplar, u64, u64>(&value, None),
        }
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A gauge whose increments and decrements go to per-thread shards, summed
/// when encoded: the in-flight gauge is raised and lowered by every request
/// on every core. Encodes exactly as prometheus-client's `Gauge` (`i64`).
#[derive(Clone, Debug)]
pub struct ShardedGauge {
    shards: Arc<[GaugeShard]>,
}

#[repr(align(128))]
#[derive(Debug, Default)]
struct GaugeShard(AtomicI64);

impl Default for ShardedGauge {
    fn default() -> Self {
        Self {
            shards: (0..shard_count()).map(|_| GaugeShard::default()).collect(),
        }
    }
}

impl ShardedGauge {
    pub fn inc(&self) {
        self.shard().fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.shard().fetch_sub(1, Ordering::Relaxed);
    }

    /// The gauge's value: the sum of its shards (one shard alone goes
    /// negative when a request ends on another thread than it started on).
    ///
    /// The shards are read one after another, so a request that starts and
    /// ends between two of those reads can be seen ending without starting;
    /// the value is then held at zero rather than shown negative. It counts
    /// things in flight, which never go below zero, and is meant for gauges
    /// only ever raised before being lowered.
    pub fn get(&self) -> i64 {
        self.shards
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .sum::<i64>()
            .max(0)
    }

    fn shard(&self) -> &AtomicI64 {
        &self.shards[shard_index(self.shards.len())].0
    }
}

impl TypedMetric for ShardedGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for ShardedGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    use opentelemetry::trace::{SpanId, TraceId};
    use prometheus_client::metrics::exemplar::HistogramWithExemplars;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::{Registry, Unit};

    use super::*;
    use crate::exposition::{Format, encode};
    use crate::metrics::ServerLabels;

    /// An exemplar whose trace and span IDs both encode `number`: a scrape
    /// that mixed two exemplars would show two different numbers.
    fn numbered_exemplar(number: u64) -> TraceExemplar {
        TraceExemplar {
            trace_id: TraceId::from(u128::from(number) | 1 << 100),
            span_id: SpanId::from(number | 1 << 60),
        }
    }

    fn labels(code: &'static str) -> ServerLabels {
        ServerLabels {
            handler: Cow::Borrowed("/ping"),
            method: Cow::Borrowed("GET"),
            code: Cow::Borrowed(code),
        }
    }

    /// Both formats of a registry's page.
    fn pages(registry: &Registry) -> [String; 2] {
        [Format::OpenMetrics, Format::Classic]
            .map(|format| encode(registry, format).expect("encodes"))
    }

    type Observation = (&'static str, f64, Option<(u64, Option<SystemTime>)>);

    /// The same observations (`code` label, value, exemplar number and
    /// time) go to ours and to prometheus-client's own types, registered
    /// under the same names; the pages must be identical. A family lists its
    /// series in hash order, which differs between two families, so each
    /// `code` is compared on pages of its own.
    fn assert_same_pages(observations: &[Observation]) {
        let mut codes: Vec<_> = observations.iter().map(|(code, _, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        for code in codes {
            let of_code: Vec<_> = observations
                .iter()
                .filter(|(of, _, _)| *of == code)
                .copied()
                .collect();
            assert_same_pages_for_one_series(&of_code);
        }
        assert_same_pages_for_one_series(&[]);
    }

    fn assert_same_pages_for_one_series(observations: &[Observation]) {
        let mut ours = Registry::default();
        let mut theirs = Registry::default();
        let our_histograms = Family::<ServerLabels, LatencyHistogram>::default();
        let their_histograms =
            Family::<ServerLabels, HistogramWithExemplars<TraceExemplar>, _>::new_with_constructor(
                || HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter()),
            );
        let our_counters = Family::<ServerLabels, ExemplarCounter>::default();
        let their_counters = Family::<ServerLabels, CounterWithExemplar<TraceExemplar>>::default();
        let our_gauges = Family::<ServerLabels, ShardedGauge>::default();
        let their_gauges = Family::<ServerLabels, Gauge>::default();
        ours.register_with_unit(
            "http_request_duration",
            "Latency",
            Unit::Seconds,
            our_histograms.clone(),
        );
        theirs.register_with_unit(
            "http_request_duration",
            "Latency",
            Unit::Seconds,
            their_histograms.clone(),
        );
        ours.register("http_requests", "Requests", our_counters.clone());
        theirs.register("http_requests", "Requests", their_counters.clone());
        ours.register("http_requests_in_flight", "In flight", our_gauges.clone());
        theirs.register("http_requests_in_flight", "In flight", their_gauges.clone());

        for &(code, value, sample) in observations {
            let labels = labels(code);
            let exemplar = sample.map(|(number, _)| numbered_exemplar(number));
            let timestamp = sample.and_then(|(_, timestamp)| timestamp);
            our_histograms
                .get_or_create(&labels)
                .observe(value, exemplar, timestamp);
            their_histograms
                .get_or_create(&labels)
                .observe(value, exemplar, timestamp);
            our_counters
                .get_or_create(&labels)
                .inc_by(1, exemplar, timestamp);
            // How prometheus-client's counter keeps its last exemplar: an
            // increment without one goes to its value alone.
            let their_counter = their_counters.get_or_create(&labels);
            match exemplar {
                Some(_) => {
                    their_counter.inc_by(1, exemplar, timestamp);
                }
                None => {
                    their_counter.inner().fetch_add(1, Ordering::Relaxed);
                }
            }
            let (our_gauge, their_gauge) = (
                our_gauges.get_or_create(&labels),
                their_gauges.get_or_create(&labels),
            );
            our_gauge.inc();
            their_gauge.inc();
            if value > 1.0 {
                our_gauge.dec();
                their_gauge.dec();
            }
        }
        let [our_openmetrics, our_classic] = pages(&ours);
        let [their_openmetrics, their_classic] = pages(&theirs);
        assert_eq!(our_openmetrics, their_openmetrics);
        assert_eq!(our_classic, their_classic);
    }

    #[test]
    fn encodes_as_prometheus_client_without_observations() {
        assert_same_pages(&[]);
    }

    #[test]
    fn encodes_as_prometheus_client_without_exemplars() {
        let values = [
            0.0, 0.003, 0.005, 0.0051, 0.2, 0.2000001, 1.0, 2.0, 9.99, 10.0, 10.5, 1e6,
        ];
        let observations: Vec<_> = values
            .iter()
            .flat_map(|&value| [("200", value, None), ("500", value * 3.0, None)])
            .collect();
        assert_same_pages(&observations);
    }

    #[test]
    fn encodes_as_prometheus_client_with_exemplars() {
        let at = |millis| Some(UNIX_EPOCH + Duration::from_millis(millis));
        assert_same_pages(&[
            ("200", 0.003, Some((1, at(1_764_500_000_123)))),
            ("200", 0.004, None),
            ("200", 0.2, Some((2, None))),
            ("200", 0.21, Some((3, at(1_764_500_000_456)))),
            // A later exemplar in the same bucket replaces the earlier one.
            ("200", 0.22, Some((4, at(1_764_500_001_000)))),
            ("200", 12.5, Some((5, at(1_764_500_002_000)))),
            ("500", 0.6, Some((6, at(1_764_500_003_000)))),
            // An unsampled observation keeps its bucket's exemplar.
            ("500", 0.6, None),
            ("404", 0.01, None),
        ]);
    }

    /// What a test reads from one scrape of a page with one histogram
    /// (`latency_seconds`) and one counter (`requests_total`).
    #[derive(Debug, Default)]
    struct Scrape {
        /// `(le, cumulative count)` in page order.
        buckets: Vec<(f64, u64)>,
        count: u64,
        sum: f64,
        requests: u64,
    }

    /// The number a `numbered_exemplar` was made from, after checking that
    /// its two IDs agree.
    fn exemplar_number(labels: &str) -> u64 {
        let (trace_id, span_id) = labels
            .strip_prefix("trace_id=\"")
            .and_then(|rest| rest.split_once("\",span_id=\""))
            .and_then(|(trace_id, rest)| Some((trace_id, rest.strip_suffix('"')?)))
            .unwrap_or_else(|| panic!("exemplar labels {labels:?}"));
        let trace_number = u128::from_str_radix(trace_id, 16).expect("hex") & !(1 << 100);
        let span_number = u64::from_str_radix(span_id, 16).expect("hex") & !(1 << 60);
        assert_eq!(
            trace_number,
            u128::from(span_number),
            "torn exemplar {labels}"
        );
        span_number
    }

    /// Splits `sample # {labels} value [timestamp]` into the sample and,
    /// when there is one, the exemplar's labels and value.
    fn split_exemplar(line: &str) -> (&str, Option<(&str, f64)>) {
        let Some((sample, exemplar)) = line.split_once(" # {") else {
            return (line, None);
        };
        let (labels, rest) = exemplar.split_once("} ").expect("exemplar value");
        let value = rest.split(' ').next().and_then(|v| v.parse().ok());
        (
            sample,
            Some((labels, value.expect("exemplar value parses"))),
        )
    }

    impl Scrape {
        /// Parses a page, checking each exemplar on the way: whole (its two
        /// IDs from one number), its own value, in its own bucket.
        fn parse(page: &str, value_of: impl Fn(u64) -> f64) -> Self {
            let mut scrape = Scrape::default();
            let number = |text: &str| text.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok());
            for line in page.lines() {
                let (sample, exemplar) = split_exemplar(line);
                if let Some(rest) = sample.strip_prefix("latency_seconds_bucket{le=\"") {
                    let (le, count) = rest.split_once("\"} ").expect("bucket line");
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("le")
                    };
                    let below = scrape
                        .buckets
                        .last()
                        .map_or(f64::NEG_INFINITY, |(le, _)| *le);
                    scrape
                        .buckets
                        .push((le, count.parse().expect("bucket count")));
                    if let Some((labels, value)) = exemplar {
                        assert_eq!(value, value_of(exemplar_number(labels)), "{line}");
                        assert!(
                            below < value && value <= le,
                            "exemplar outside its bucket: {line}"
                        );
                    }
                } else if sample.starts_with("latency_seconds_count") {
                    scrape.count = number(sample).expect("count") as u64;
                } else if sample.starts_with("latency_seconds_sum") {
                    scrape.sum = number(sample).expect("sum");
                } else if sample.starts_with("requests_total") {
                    scrape.requests = number(sample).expect("counter") as u64;
                    if let Some((labels, value)) = exemplar {
                        exemplar_number(labels);
                        assert_eq!(value, 1.0, "{line}");
                    }
                }
            }
            assert_eq!(scrape.buckets.len(), BUCKETS, "{page}");
            for pair in scrape.buckets.windows(2) {
                assert!(pair[0].1 <= pair[1].1, "buckets not cumulative: {page}");
            }
            assert_eq!(
                Some(scrape.count),
                scrape.buckets.last().map(|(_, count)| *count),
                "_count is not +Inf: {page}"
            );
            scrape
        }

        /// Nothing counted goes back between two scrapes.
        fn assert_follows(&self, earlier: &Scrape) {
            for ((le, count), (_, before)) in self.buckets.iter().zip(&earlier.buckets) {
                assert!(
                    count >= before,
                    "bucket le={le} went from {before} to {count}"
                );
            }
            assert!(self.requests >= earlier.requests);
        }
    }

    #[test]
    fn scrapes_during_concurrent_observations_are_consistent_and_counts_exact() {
        const OBSERVERS: u64 = 4;
        const MIN_OBSERVATIONS: u64 = 20_000;
        const MAX_OBSERVATIONS: u64 = 2_000_000;
        const MIN_SCRAPES: usize = 20;
        // Multiples of 1/1024 up to 12 s: every bucket, `+Inf` included, and
        // sums that are exact in any order of addition.
        let value_of = |number: u64| (number % 12_288) as f64 / 1024.0;
        let histogram = LatencyHistogram::default();
        let counter = ExemplarCounter::default();
        let mut registry = Registry::default();
        registry.register_with_unit("latency", "Latency", Unit::Seconds, histogram.clone());
        registry.register("requests", "Requests", counter.clone());
        let scrapes = AtomicUsize::new(0);
        let observing = AtomicUsize::new(OBSERVERS as usize);

        let (tallies, last) = std::thread::scope(|scope| {
            let observers: Vec<_> = (0..OBSERVERS)
                .map(|thread| {
                    let (histogram, counter, scrapes, observing) =
                        (&histogram, &counter, &scrapes, &observing);
                    scope.spawn(move || {
                        let mut observed = 0;
                        let mut sum = 0.0;
                        let mut per_bucket = [0_u64; BUCKETS];
                        while observed < MAX_OBSERVATIONS
                            && (observed < MIN_OBSERVATIONS
                                || scrapes.load(Ordering::Relaxed) < MIN_SCRAPES)
                        {
                            let number = thread * MAX_OBSERVATIONS + observed;
                            let value = value_of(number);
                            // One in seven sampled, as with ratio sampling.
                            let exemplar = (number % 7 == 0).then(|| numbered_exemplar(number));
                            let timestamp = exemplar.map(|_| SystemTime::now());
                            histogram.observe(value, exemplar, timestamp);
                            counter.inc_by(1, exemplar, timestamp);
                            sum += value;
                            let bucket = LATENCY_BUCKETS
                                .iter()
                                .position(|bound| value <= *bound)
                                .unwrap_or(BUCKETS - 1);
                            per_bucket[bucket] += 1;
                            observed += 1;
                        }
                        observing.fetch_sub(1, Ordering::Relaxed);
                        (observed, sum, per_bucket)
                    })
                })
                .collect();
            let scraper = scope.spawn(|| {
                let mut previous: Option<Scrape> = None;
                loop {
                    // Read before encoding, so the last scrape sees every observation.
                    let finished = observing.load(Ordering::Relaxed) == 0;
                    let page = encode(&registry, Format::OpenMetrics).expect("encodes");
                    let scrape = Scrape::parse(&page, value_of);
                    if let Some(previous) = &previous {
                        scrape.assert_follows(previous);
                    }
                    previous = Some(scrape);
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    if finished {
                        break previous;
                    }
                }
            });
            let tallies: Vec<_> = observers
                .into_iter()
                .map(|observer| observer.join().expect("observer"))
                .collect();
            (tallies, scraper.join().expect("scraper"))
        });

        assert!(scrapes.load(Ordering::Relaxed) > MIN_SCRAPES);
        let last = last.expect("scraped");
        let observed: u64 = tallies.iter().map(|(observed, _, _)| observed).sum();
        let sum: f64 = tallies.iter().map(|(_, sum, _)| sum).sum();
        assert_eq!(last.count, observed);
        assert_eq!(last.requests, observed);
        assert_eq!(counter.get(), observed);
        assert_eq!(last.sum, sum);
        let mut cumulative = 0;
        for (bucket, (le, count)) in last.buckets.iter().enumerate() {
            cumulative += tallies
                .iter()
                .map(|(_, _, per_bucket)| per_bucket[bucket])
                .sum::<u64>();
            assert_eq!(*count, cumulative, "bucket le={le}");
        }
    }

    #[test]
    fn in_flight_gauge_returns_to_zero_across_threads() {
        let gauge = ShardedGauge::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        gauge.inc();
                    }
                });
            }
        });
        assert_eq!(gauge.get(), 40_000);
        // Lowered on other threads than it was raised on.
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..5_000 {
                        gauge.dec();
                    }
                });
            }
        });
        assert_eq!(gauge.get(), 0);
    }
}
