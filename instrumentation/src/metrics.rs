//! The metric contract. Dashboards, alert rules and Argo Rollouts analysis
//! templates depend on these names and labels: change them only together.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use std::fmt::Write as _;

use opentelemetry::trace::{SpanContext, SpanId, TraceId};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelKey, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets in seconds. They resolve every delay the ponger profiles
/// inject (0, 200 ms, 500 ms, 2 s) on both sides of the bucket edge, and the
/// 1 s latency objective used by the SLO alerts and the canary analysis.
pub const LATENCY_BUCKETS: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 2.5,
    3.0, 5.0, 10.0,
];

/// The exemplar attached to observations made inside a sampled trace:
/// `{trace_id="<32 hex>",span_id="<16 hex>"}`. `trace_id` + `span_id` is about
/// 63 characters, well inside OpenMetrics' 128-character limit on an
/// exemplar's label set.
///
/// It holds the binary IDs and writes them as hex only when `/metrics` is
/// encoded: a request then builds and copies its exemplar without allocating.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct TraceExemplar {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

impl TraceExemplar {
    /// The exemplar for a span, or `None` when the span is not sampled: an
    /// unsampled trace is never exported, so linking to it would lead nowhere.
    pub fn for_span(span_context: &SpanContext) -> Option<Self> {
        (span_context.is_valid() && span_context.is_sampled()).then(|| Self {
            trace_id: span_context.trace_id(),
            span_id: span_context.span_id(),
        })
    }
}

impl EncodeLabelSet for TraceExemplar {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        // `TraceId` and `SpanId` display as lowercase hex, zero-padded to 32 and 16 digits.
        encode_label(encoder, "trace_id", &self.trace_id)?;
        encode_label(encoder, "span_id", &self.span_id)
    }
}

fn encode_label(
    encoder: &mut LabelSetEncoder,
    key: &str,
    value: &dyn std::fmt::Display,
) -> Result<(), std::fmt::Error> {
    let mut label = encoder.encode_label();
    let mut key_encoder = label.encode_label_key()?;
    EncodeLabelKey::encode(&key, &mut key_encoder)?;
    let mut value_encoder = key_encoder.encode_label_value()?;
    write!(value_encoder, "{value}")?;
    value_encoder.finish()
}

mod lockfree;

use lockfree::{ExemplarCounter, LatencyHistogram, ShardedGauge};

/// The label value for a request's outcome: the status code, or why no
/// response came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Status(u16),
    /// The request did not finish within its timeout.
    Timeout,
    /// No connection could be made (refused, unreachable, DNS).
    ConnectError,
    /// Anything else: a broken connection, a response that is not HTTP, a body cut short.
    Error,
}

impl Outcome {
    pub fn label(self) -> Cow<'static, str> {
        match self {
            Outcome::Status(code) => status_label(code),
            Outcome::Timeout => Cow::Borrowed("timeout"),
            Outcome::ConnectError => Cow::Borrowed("connect_error"),
            Outcome::Error => Cow::Borrowed("error"),
        }
    }

    /// True for a response users would call a success (1xx-3xx).
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(code) if code < 400)
    }
}

/// The `code` label for a status code: a static string for the usual codes,
/// so that recording a request allocates nothing.
pub fn status_label(status: u16) -> Cow<'static, str> {
    const COMMON: [(u16, &str); 20] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match COMMON.iter().find(|(code, _)| *code == status) {
        Some((_, label)) => Cow::Borrowed(label),
        None => Cow::Owned(status.to_string()),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// The route template (`/ping`), never the raw path, so that the number of
    /// series stays bounded whatever clients send.
    pub handler: Cow<'static, str>,
    pub method: Cow<'static, str>,
    pub code: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabel {
    pub handler: Cow<'static, str>,
}

/// The names and help texts of one side's three request metrics.
struct RequestMetricNames {
    requests: &'static str,
    requests_help: &'static str,
    /// Registered with the unit seconds, which the encoders append.
    duration: &'static str,
    duration_help: &'static str,
    in_flight: &'static str,
    in_flight_help: &'static str,
    /// Registered as a counter, which the encoders suffix with `_total`.
    series_overflow: &'static str,
}

/// The most series one request metric family holds. Labels are bounded at
/// their source (route templates, `_OTHER` methods, status codes); this cap
/// is the defence in depth should one of them not be: beyond it, new label
/// sets fold into one overflow series instead of growing the page without
/// bound, and the fold is counted.
///
/// A latency histogram series is 24 samples, so 128 label sets keep a page
/// near 3,300 samples, inside the scrape `sample_limit` (5,000) of
/// `prometheus/prometheus.yml`; the ponger's routes allow about 47.
pub const MAX_SERIES_PER_FAMILY: usize = 128;

/// The label value of every label of the overflow series.
pub const OVERFLOW_LABEL: &str = "_overflow";

/// Label sets that have an overflow series.
trait Overflow {
    fn overflow() -> Self;
}

/// What a request family's label set must be: encodable, a map key shared
/// across threads, and able to name the family's overflow series.
trait SeriesLabels:
    Overflow + EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static
{
}

impl<T> SeriesLabels for T where
    T: Overflow
        + EncodeLabelSet
        + Clone
        + std::hash::Hash
        + Eq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

impl Overflow for ServerLabels {
    fn overflow() -> Self {
        Self {
            handler: Cow::Borrowed(OVERFLOW_LABEL),
            method: Cow::Borrowed(OVERFLOW_LABEL),
            code: Cow::Borrowed(OVERFLOW_LABEL),
        }
    }
}

impl Overflow for ClientLabels {
    fn overflow() -> Self {
        Self {
            target: Cow::Borrowed(OVERFLOW_LABEL),
            method: Cow::Borrowed(OVERFLOW_LABEL),
            code: Cow::Borrowed(OVERFLOW_LABEL),
        }
    }
}

impl Overflow for HandlerLabel {
    fn overflow() -> Self {
        Self {
            handler: Cow::Borrowed(OVERFLOW_LABEL),
        }
    }
}

impl Overflow for TargetLabel {
    fn overflow() -> Self {
        Self {
            target: Cow::Borrowed(OVERFLOW_LABEL),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabel {
    family: &'static str,
}

/// The series count of one family and the names its overflow is counted by.
#[derive(Clone, Debug)]
struct SeriesBudget {
    series: Arc<std::sync::atomic::AtomicUsize>,
    family: &'static str,
    overflow: Family<FamilyLabel, prometheus_client::metrics::counter::Counter>,
}

impl SeriesBudget {
    /// The labels to record under: `labels` if the family has the series or
    /// room for it, else the overflow series' (and the fold is counted, so
    /// a folded series must not be cached: see [`Series::admitted`]).
    fn admit<'l, K: Overflow + Clone>(&self, labels: &'l K, exists: bool) -> Cow<'l, K> {
        use std::sync::atomic::Ordering::Relaxed;
        let admitted = exists
            || self
                .series
                .fetch_update(Relaxed, Relaxed, |n| {
                    (n < MAX_SERIES_PER_FAMILY).then_some(n + 1)
                })
                .is_ok();
        if admitted {
            Cow::Borrowed(labels)
        } else {
            self.overflow
                .get_or_create(&FamilyLabel {
                    family: self.family,
                })
                .inc();
            Cow::Owned(K::overflow())
        }
    }
}

/// A request counter and latency histogram (both with exemplars) by `L`,
/// and an in-flight gauge by `G`: the shape both sides share.
#[derive(Clone, Debug)]
struct RequestMetrics<L, G> {
    requests: Family<L, ExemplarCounter>,
    duration: Family<L, LatencyHistogram>,
    in_flight: Family<G, ShardedGauge>,
    outcomes: SeriesCache<L, Outcomes>,
    in_flight_series: SeriesCache<G, ShardedGauge>,
    request_budget: SeriesBudget,
    in_flight_budget: SeriesBudget,
}

/// The handles of the series recorded so far, found by comparing label sets
/// rather than by a family's lookup, which hashes the labels with SipHash each
/// time: for the handful of series a service has, three such lookups cost more
/// per request than the recording itself (callgrind).
///
/// Reading takes no lock and writes nothing shared: a lock's counter, or an
/// `Arc`'s, written by every request on every core, bounces between the
/// cores' caches (the `record/unsampled_while_another_core_records` benchmark).
/// Slots are filled once and never emptied; beyond the last one, and for a
/// label set folded into the overflow series (each of whose observations is
/// counted as folded), the families are asked directly.
#[derive(Clone, Debug)]
struct SeriesCache<K, V> {
    slots: Arc<[OnceLock<(K, V)>]>,
    filling: Arc<Mutex<()>>,
}

const MAX_CACHED_SERIES: usize = 64;

/// A key's value in a [`SeriesCache`]: in its slot, or made but not cached
/// (every slot is taken, or the value is an overflow series).
enum CacheEntry<'a, K, V> {
    Cached(usize, &'a V),
    Uncached(K, V),
}

/// What a [`SeriesCache`]'s `create` made for a key.
struct Series<K, V> {
    key: K,
    value: V,
    /// False for the overflow series: it must be asked for again each time,
    /// so that each fold is counted.
    admitted: bool,
}

impl<K: Eq, V> SeriesCache<K, V> {
    fn new() -> Self {
        Self {
            slots: (0..MAX_CACHED_SERIES).map(|_| OnceLock::new()).collect(),
            filling: Arc::default(),
        }
    }

    /// The slot holding the first key that `matches`.
    fn position(&self, matches: impl Fn(&K) -> bool) -> Option<usize> {
        self.slots
            .iter()
            .map_while(OnceLock::get)
            .position(|(known, _)| matches(known))
    }

    fn entry(&self, index: usize) -> Option<&(K, V)> {
        self.slots.get(index).and_then(OnceLock::get)
    }

    /// The slot of the key that `matches`, caching what `create` made if it
    /// is not there yet, was admitted and a slot is free; otherwise what
    /// `create` made, owned.
    fn slot_or_create(
        &self,
        matches: impl Fn(&K) -> bool,
        create: impl FnOnce() -> Series<K, V>,
    ) -> CacheEntry<'_, K, V> {
        let cached = |slot| {
            self.entry(slot)
                .map(|(_, value)| CacheEntry::Cached(slot, value))
        };
        if let Some(found) = self.position(&matches).and_then(cached) {
            return found;
        }
        // One writer at a time, so that a key is cached once.
        let _filling = self.filling.lock();
        if let Some(found) = self.position(&matches).and_then(cached) {
            return found;
        }
        let Series {
            key,
            value,
            admitted,
        } = create();
        match self.slots.iter().position(|slot| slot.get().is_none()) {
            Some(slot) if admitted => {
                CacheEntry::Cached(slot, &self.slots[slot].get_or_init(|| (key, value)).1)
            }
            _ => CacheEntry::Uncached(key, value),
        }
    }

    /// The cached value for the key that `matches`, or `create`'s, which is
    /// cached if admitted and a slot is free (and returned owned otherwise).
    fn get_by(
        &self,
        matches: impl Fn(&K) -> bool,
        create: impl FnOnce() -> Series<K, V>,
    ) -> Cow<'_, V>
    where
        V: Clone,
    {
        match self.slot_or_create(matches, create) {
            CacheEntry::Cached(_, value) => Cow::Borrowed(value),
            CacheEntry::Uncached(_, value) => Cow::Owned(value),
        }
    }
}

impl<L, G> RequestMetrics<L, G>
where
    L: SeriesLabels,
    G: SeriesLabels,
{
    fn register(registry: &mut Registry, names: &RequestMetricNames) -> Self {
        // One overflow counter for the side, by family.
        let overflow = Family::default();
        let metrics = Self {
            requests: Family::default(),
            duration: Family::default(),
            in_flight: Family::default(),
            outcomes: SeriesCache::new(),
            in_flight_series: SeriesCache::new(),
            request_budget: SeriesBudget {
                series: Arc::default(),
                family: names.requests,
                overflow: overflow.clone(),
            },
            in_flight_budget: SeriesBudget {
                series: Arc::default(),
                family: names.in_flight,
                overflow: overflow.clone(),
            },
        };
        registry.register(
            names.series_overflow,
            "Observations folded into the overflow series (every label _overflow) because their family already held its most series, by family",
            overflow,
        );
        registry.register(
            names.requests,
            names.requests_help,
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            names.duration,
            names.duration_help,
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            names.in_flight,
            names.in_flight_help,
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// The counter and histogram of a label set (or of the overflow series),
    /// under `key`.
    fn outcome_series<K>(&self, key: K, labels: &L) -> Series<K, Outcomes> {
        let series = self
            .request_budget
            .admit(labels, self.requests.get(labels).is_some());
        Series {
            key,
            value: (
                self.requests.get_or_create_owned(&series),
                self.duration.get_or_create_owned(&series),
            ),
            admitted: matches!(series, Cow::Borrowed(_)),
        }
    }

    /// The in-flight gauge of the label set that `matches` (made by `label`
    /// if it is new), with its cache slot, or, with the cache full, with its
    /// label set.
    ///
    /// Borrowed, not cloned: an `Arc` count written by every request on every
    /// core would bounce between their caches as a lock would.
    fn in_flight_gauge(
        &self,
        matches: impl Fn(&G) -> bool,
        label: impl FnOnce() -> G,
    ) -> CacheEntry<'_, G, ShardedGauge> {
        self.in_flight_series.slot_or_create(matches, || {
            let label = label();
            let series = self
                .in_flight_budget
                .admit(&label, self.in_flight.get(&label).is_some());
            let gauge = self.in_flight.get_or_create_owned(&series);
            let admitted = matches!(series, Cow::Borrowed(_));
            Series {
                key: label,
                value: gauge,
                admitted,
            }
        })
    }

    /// Marks a request as in flight until the returned guard is dropped, so a
    /// request abandoned half-way is not counted forever.
    fn start(&self, matches: impl Fn(&G) -> bool, label: impl FnOnce() -> G) -> InFlight<'_> {
        let gauge = match self.in_flight_gauge(matches, label) {
            CacheEntry::Cached(_, gauge) => Cow::Borrowed(gauge),
            CacheEntry::Uncached(_, gauge) => Cow::Owned(gauge),
        };
        gauge.inc();
        InFlight(gauge)
    }

    /// [`Self::start`] for a caller that keeps the metrics behind an `Arc` and
    /// cannot hold a guard that borrows them: the series it marks, to pass to
    /// [`Self::in_flight_entry`] when the request ends.
    fn enter(&self, matches: impl Fn(&G) -> bool, label: impl FnOnce() -> G) -> InFlightSeries<G> {
        match self.in_flight_gauge(matches, label) {
            CacheEntry::Cached(slot, gauge) => {
                gauge.inc();
                InFlightSeries::Cached(slot)
            }
            CacheEntry::Uncached(label, gauge) => {
                gauge.inc();
                InFlightSeries::Uncached(label, gauge)
            }
        }
    }

    /// The label set and gauge that [`Self::enter`] marked.
    fn in_flight_entry<'a>(
        &'a self,
        series: &'a InFlightSeries<G>,
    ) -> Option<(&'a G, &'a ShardedGauge)> {
        match series {
            InFlightSeries::Cached(slot) => self
                .in_flight_series
                .entry(*slot)
                .map(|(label, gauge)| (label, gauge)),
            InFlightSeries::Uncached(label, gauge) => Some((label, gauge)),
        }
    }

    /// Counts and times a request under the label set that `matches` (made by
    /// `labels` the first time).
    fn record(
        &self,
        matches: impl Fn(&L) -> bool,
        labels: impl FnOnce() -> L,
        elapsed: Duration,
        exemplar: Option<TraceExemplar>,
    ) {
        let series = self.outcomes.get_by(matches, || {
            let labels = labels();
            self.outcome_series(labels.clone(), &labels)
        });
        observe(&series, elapsed, exemplar);
    }
}

/// A request counter and latency histogram of one label set.
type Outcomes = (ExemplarCounter, LatencyHistogram);

/// Counts and times one request.
fn observe((requests, duration): &Outcomes, elapsed: Duration, exemplar: Option<TraceExemplar>) {
    // Only exemplars get a timestamp: Prometheus shows it as the time of the
    // sample that links to the trace.
    let now = exemplar.as_ref().map(|_| SystemTime::now());
    duration.observe(elapsed.as_secs_f64(), exemplar, now);
    requests.inc_by(1, exemplar, now);
}

/// A request marked in flight by the server layer: its cache slot, or its
/// label and gauge when the cache is full.
#[derive(Debug)]
enum InFlightSeries<G> {
    Cached(usize),
    Uncached(G, ShardedGauge),
}

/// A request to a route, in flight: see [`HttpServerMetrics::enter`].
#[derive(Debug)]
#[must_use = "a request in flight stays counted until it is finished"]
pub(crate) struct InFlightRequest(InFlightSeries<HandlerLabel>);

/// A request that the server layer finished, as it knows it: its route's
/// slot in the in-flight cache, its method label and its status code.
/// Compared as integers (and the method by address first), where its label
/// set compared three strings and looked the status label up first: about 90
/// instructions of a zero-delay ping's recording (callgrind).
#[derive(Clone, Copy, Debug)]
struct RouteOutcome {
    route: usize,
    method: &'static str,
    status: u16,
}

impl PartialEq for RouteOutcome {
    fn eq(&self, other: &Self) -> bool {
        // Method labels are `'static` strings from one table: the same label
        // is usually the same address, and the text decides otherwise.
        self.route == other.route
            && self.status == other.status
            && (std::ptr::eq(self.method, other.method) || self.method == other.method)
    }
}

impl Eq for RouteOutcome {}

/// `http_requests_total`, `http_request_duration_seconds`, `http_requests_in_flight`.
#[derive(Clone, Debug)]
pub struct HttpServerMetrics {
    metrics: RequestMetrics<ServerLabels, HandlerLabel>,
    /// The series the server layer has recorded into, by [`RouteOutcome`]
    /// (those of routes the in-flight cache holds).
    route_outcomes: SeriesCache<RouteOutcome, Outcomes>,
}

impl HttpServerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RequestMetrics::register(
            registry,
            &RequestMetricNames {
                requests: "http_requests",
                requests_help: "HTTP requests served, by route template, method and status code",
                duration: "http_request_duration",
                duration_help: "Time from receiving an HTTP request to sending its response headers",
                in_flight: "http_requests_in_flight",
                in_flight_help: "HTTP requests being served right now, by route template",
                series_overflow: "http_series_overflow",
            },
        );
        Self {
            metrics,
            route_outcomes: SeriesCache::new(),
        }
    }

    /// Marks a request to `handler` (a route template) as in flight until the
    /// guard is dropped.
    pub fn start(&self, handler: &str) -> InFlight<'_> {
        self.metrics.start(
            |known| known.handler == handler,
            || HandlerLabel {
                handler: Cow::Owned(handler.to_owned()),
            },
        )
    }

    /// Counts and times a request under `labels`.
    pub fn record(
        &self,
        labels: &ServerLabels,
        elapsed: Duration,
        exemplar: Option<TraceExemplar>,
    ) {
        self.metrics.record(
            |known| known == labels,
            || labels.clone(),
            elapsed,
            exemplar,
        );
    }

    /// [`Self::start`] for the server layer, which holds these metrics behind
    /// an `Arc` and so cannot keep a guard borrowing them across the request.
    pub(crate) fn enter(&self, handler: &str) -> InFlightRequest {
        InFlightRequest(self.metrics.enter(
            |known| known.handler == handler,
            || HandlerLabel {
                handler: Cow::Owned(handler.to_owned()),
            },
        ))
    }

    /// Counts and times a request that [`Self::enter`] marked, with its
    /// `method` and `status`, and marks it no longer in flight. The route's
    /// name is the one cached when it was marked: a request copies none.
    pub(crate) fn finish(
        &self,
        request: InFlightRequest,
        method: &'static str,
        status: u16,
        elapsed: Duration,
        exemplar: Option<TraceExemplar>,
    ) {
        let Some((route, gauge)) = self.metrics.in_flight_entry(&request.0) else {
            return;
        };
        let labels = || ServerLabels {
            handler: route.handler.clone(),
            method: Cow::Borrowed(method),
            code: status_label(status),
        };
        match request.0 {
            InFlightSeries::Cached(slot) => {
                let outcome = RouteOutcome {
                    route: slot,
                    method,
                    status,
                };
                let series = self.route_outcomes.get_by(
                    |known| *known == outcome,
                    || self.metrics.outcome_series(outcome, &labels()),
                );
                observe(&series, elapsed, exemplar);
            }
            // More routes than the cache holds: found by their labels.
            InFlightSeries::Uncached(..) => {
                let handler = route.handler.as_ref();
                let code = status_label(status);
                self.metrics.record(
                    |known| {
                        known.handler == handler && known.method == method && known.code == code
                    },
                    labels,
                    elapsed,
                    exemplar,
                );
            }
        }
        gauge.dec();
    }

    /// Creates, at zero, the series of the outcomes a route is expected to
    /// have, before any request arrives.
    ///
    /// A series that first appears with a value of 1 hides that first
    /// increment from `rate()` and `increase()`. For a canary that has just
    /// started, the rarer outcome (its failures) appears last and loses the
    /// most, so its success ratio would look better than it is exactly when a
    /// rollout analysis judges it.
    pub fn initialize(&self, handler: &'static str, method: &'static str, codes: &[u16]) {
        for &code in codes {
            let labels = ServerLabels {
                handler: Cow::Borrowed(handler),
                method: Cow::Borrowed(method),
                code: status_label(code),
            };
            self.metrics.outcome_series((), &labels);
        }
        let handler = HandlerLabel {
            handler: Cow::Borrowed(handler),
        };
        let series = self
            .metrics
            .in_flight_budget
            .admit(&handler, self.metrics.in_flight.get(&handler).is_some());
        self.metrics.in_flight.get_or_create_owned(&series);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// The pinged service's name, never a URL or a replica.
    pub target: Cow<'static, str>,
    pub method: Cow<'static, str>,
    pub code: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: Cow<'static, str>,
}

/// `http_client_requests_total`, `http_client_request_duration_seconds`,
/// `http_client_requests_in_flight`.
#[derive(Clone, Debug)]
pub struct HttpClientMetrics(RequestMetrics<ClientLabels, TargetLabel>);

impl HttpClientMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        Self(RequestMetrics::register(
            registry,
            &RequestMetricNames {
                requests: "http_client_requests",
                requests_help: "HTTP requests sent, by target service, method and status code (or timeout, connect_error, error)",
                duration: "http_client_request_duration",
                duration_help: "Time from sending an HTTP request to receiving its whole response, or to giving up",
                in_flight: "http_client_requests_in_flight",
                in_flight_help: "HTTP requests awaiting their response, by target service",
                series_overflow: "http_client_series_overflow",
            },
        ))
    }

    /// Marks a request to `target` as in flight until the guard is dropped.
    pub fn start(&self, target: &str) -> InFlight<'_> {
        self.0.start(
            |known| known.target == target,
            || TargetLabel {
                target: Cow::Owned(target.to_owned()),
            },
        )
    }

    /// Counts and times a request to `target` with its `method` and `outcome`;
    /// the label set is built (and `target` copied) only for a new series.
    pub fn record(
        &self,
        target: &str,
        method: &'static str,
        outcome: Outcome,
        elapsed: Duration,
        exemplar: Option<TraceExemplar>,
    ) {
        let code = outcome.label();
        self.0.record(
            |known| known.target == target && known.method == method && known.code == code,
            || ClientLabels {
                target: Cow::Owned(target.to_owned()),
                method: Cow::Borrowed(method),
                code: code.clone(),
            },
            elapsed,
            exemplar,
        );
    }
}

/// Decrements its in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight<'a>(Cow<'a, ShardedGauge>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Registers `<name>_build_info{...} 1`.
pub fn register_build_info(registry: &mut Registry, name: &str, labels: Vec<(String, String)>) {
    registry.register(
        format!("{name}_build"),
        format!("Always 1; its labels describe the running {name} build"),
        Info::new(labels),
    );
}

/// The `process_*` metrics that the official Prometheus clients expose,
/// read from `/proc/self` at each scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    ticks_per_second: f64,
    page_size: f64,
    boot_time_seconds: f64,
}

impl ProcessCollector {
    /// Registers the collector. Where `/proc` cannot be read (not Linux), no
    /// process metrics are exposed rather than wrong ones.
    pub fn register(registry: &mut Registry) {
        let boot_time_seconds = procfs::boot_time_secs().unwrap_or(0) as f64;
        registry.register_collector(Box::new(Self {
            ticks_per_second: procfs::ticks_per_second() as f64,
            page_size: procfs::page_size() as f64,
            boot_time_seconds,
        }));
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(process) = procfs::process::Process::myself() else {
            return Ok(());
        };
        let Ok(stat) = process.stat() else {
            return Ok(());
        };
        let cpu_seconds = (stat.utime + stat.stime) as f64 / self.ticks_per_second;
        let counter = ConstCounter::new(cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            counter.metric_type(),
        )?)?;
        let start_time = self.boot_time_seconds + stat.starttime as f64 / self.ticks_per_second;
        let mut gauges = vec![
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                start_time,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat.rss as f64 * self.page_size,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.vsize as f64,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                stat.num_threads as f64,
            ),
        ];
        if let Ok(open_fds) = process.fd_count() {
            gauges.push((
                "process_open_fds",
                "Number of open file descriptors",
                open_fds as f64,
            ));
        }
        if let Ok(limits) = process.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                gauges.push((
                    "process_max_fds",
                    "Maximum number of open file descriptors",
                    max as f64,
                ));
            }
        }
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceFlags, TraceState};

    #[test]
    fn exemplars_encode_as_hex_ids_and_only_for_sampled_spans() {
        let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex");
        let span_id = SpanId::from_hex("00f067aa0ba902b7").expect("hex");
        let context =
            |flags| SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        assert_eq!(
            TraceExemplar::for_span(&context(TraceFlags::default())),
            None
        );
        let exemplar = TraceExemplar::for_span(&context(TraceFlags::SAMPLED));

        let mut registry = Registry::default();
        let metrics = HttpServerMetrics::register(&mut registry);
        let labels = ServerLabels {
            handler: Cow::Borrowed("/ping"),
            method: Cow::Borrowed("GET"),
            code: status_label(200),
        };
        metrics.record(&labels, Duration::from_millis(3), exemplar);
        let text = crate::exposition::encode(&registry, crate::exposition::Format::OpenMetrics)
            .expect("encodes");
        let expected =
            r#"# {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="00f067aa0ba902b7"} 0.003"#;
        assert!(
            text.lines().any(|line| line.starts_with(
                r#"http_request_duration_seconds_bucket{le="0.005",handler="/ping",method="GET",code="200"} 1 "#
            ) && line.contains(expected)),
            "{text}"
        );
        assert!(
            text.lines().any(|line| line.starts_with(
                r#"http_requests_total{handler="/ping",method="GET",code="200"} 1 "#
            ) && line.contains(r#"# {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="00f067aa0ba902b7"} 1"#)),
            "{text}"
        );
    }

    #[test]
    fn series_beyond_the_cap_fold_into_one_overflow_series_and_are_counted() {
        let mut registry = Registry::default();
        let metrics = HttpServerMetrics::register(&mut registry);
        let folded = 150;
        let codes = (100..).take(MAX_SERIES_PER_FAMILY + folded);
        for code in codes {
            let labels = ServerLabels {
                handler: Cow::Borrowed("/ping"),
                method: Cow::Borrowed("GET"),
                code: status_label(code),
            };
            metrics.record(&labels, Duration::from_millis(3), None);
        }
        let text = crate::exposition::encode(&registry, crate::exposition::Format::OpenMetrics)
            .expect("encodes");
        let requests: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("http_requests_total{"))
            .collect();
        assert_eq!(requests.len(), MAX_SERIES_PER_FAMILY + 1, "{text}");
        assert!(
            requests.contains(&format!(
                r#"http_requests_total{{handler="_overflow",method="_overflow",code="_overflow"}} {folded}"#
            )
            .as_str()),
            "{text}"
        );
        let counted: u64 = requests
            .iter()
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(counted, (MAX_SERIES_PER_FAMILY + folded) as u64);
        assert_eq!(
            text.lines()
                .filter(|line| line.starts_with("http_request_duration_seconds_count{"))
                .count(),
            MAX_SERIES_PER_FAMILY + 1
        );
        assert!(
            text.lines().any(|line| line
                == format!(r#"http_series_overflow_total{{family="http_requests"}} {folded}"#)),
            "{text}"
        );
        // A series that already exists is still recorded under its own labels.
        let first = ServerLabels {
            handler: Cow::Borrowed("/ping"),
            method: Cow::Borrowed("GET"),
            code: status_label(100),
        };
        metrics.record(&first, Duration::from_millis(3), None);
        let text = crate::exposition::encode(&registry, crate::exposition::Format::OpenMetrics)
            .expect("encodes");
        assert!(
            text.lines()
                .any(|line| line
                    == r#"http_requests_total{handler="/ping",method="GET",code="100"} 2"#),
            "{text}"
        );
    }

    /// The `http_requests_total` lines of `registry`'s page.
    fn request_lines(registry: &Registry) -> Vec<String> {
        crate::exposition::encode(registry, crate::exposition::Format::OpenMetrics)
            .expect("encodes")
            .lines()
            .filter(|line| line.starts_with("http_requests_total{"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_server_layer_counts_each_route_method_and_status_under_its_own_labels() {
        let mut registry = Registry::default();
        let metrics = HttpServerMetrics::register(&mut registry);
        // Interleaved, so that every outcome is found among others already
        // cached; a method label equal in text but at another address is
        // the same outcome.
        let get_elsewhere: &'static str = String::from("GET").leak();
        let requests = [
            ("/ping", "GET", 200),
            ("/metrics", "GET", 200),
            ("/ping", "GET", 500),
            ("/ping", "HEAD", 200),
            ("/metrics", "GET", 200),
            ("/ping", get_elsewhere, 200),
            ("/ping", "GET", 500),
            ("/ping", "GET", 200),
        ];
        for (route, method, status) in requests {
            let request = metrics.enter(route);
            metrics.finish(request, method, status, Duration::from_millis(1), None);
        }
        let mut lines = request_lines(&registry);
        lines.sort();
        assert_eq!(
            lines,
            [
                r#"http_requests_total{handler="/metrics",method="GET",code="200"} 2"#,
                r#"http_requests_total{handler="/ping",method="GET",code="200"} 3"#,
                r#"http_requests_total{handler="/ping",method="GET",code="500"} 2"#,
                r#"http_requests_total{handler="/ping",method="HEAD",code="200"} 1"#,
            ]
        );
    }

    #[test]
    fn every_observation_folded_into_the_overflow_series_is_counted_however_the_family_filled() {
        // The family filled by `initialize`, with the caches still empty: a
        // folded label set must not be cached, or only its first fold would
        // be counted.
        let mut registry = Registry::default();
        let metrics = HttpServerMetrics::register(&mut registry);
        let codes: Vec<u16> = (100..).take(MAX_SERIES_PER_FAMILY).collect();
        metrics.initialize("/ping", "GET", &codes);
        let folded = 5;
        for _ in 0..folded {
            let request = metrics.enter("/other");
            metrics.finish(request, "GET", 200, Duration::from_millis(1), None);
            let labels = ServerLabels {
                handler: Cow::Borrowed("/third"),
                method: Cow::Borrowed("GET"),
                code: status_label(200),
            };
            metrics.record(&labels, Duration::from_millis(1), None);
        }
        let text = crate::exposition::encode(&registry, crate::exposition::Format::OpenMetrics)
            .expect("encodes");
        assert!(
            text.lines().any(|line| line
                == format!(
                    r#"http_series_overflow_total{{family="http_requests"}} {}"#,
                    2 * folded
                )),
            "{text}"
        );
        assert!(
            request_lines(&registry).contains(&format!(
                r#"http_requests_total{{handler="_overflow",method="_overflow",code="_overflow"}} {}"#,
                2 * folded
            )),
            "{text}"
        );
    }

    #[test]
    fn labels_for_any_status() {
        assert_eq!(status_label(200), "200");
        assert!(matches!(status_label(503), Cow::Borrowed("503")));
        assert_eq!(status_label(418), "418");
        assert_eq!(status_label(599), "599");
    }
}
