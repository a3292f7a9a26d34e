//! The load measurements (the per-request cost is the criterion benchmark
//! `benches/instrumentation.rs`). Each starts the release binaries
//! it needs on loopback and returns its figures.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::Exposition;

use crate::figures::{Figure, histogram_quantile, median, quantile};
use crate::otlp_sink::OtlpSink;
use crate::process::{Process, free_address, get};
use crate::rounds;

/// How long each measurement runs; `quick` is a smoke test of the harness.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub throughput_rounds: usize,
    pub throughput_run: Duration,
    pub schedule_run: Duration,
    pub fidelity_run: Duration,
    pub down_target_run: Duration,
    pub startup_runs: usize,
}

impl Settings {
    pub const FULL: Settings = Settings {
        throughput_rounds: 40,
        throughput_run: Duration::from_secs(1),
        schedule_run: Duration::from_secs(20),
        fidelity_run: Duration::from_secs(60),
        down_target_run: Duration::from_secs(60),
        startup_runs: 20,
    };
    pub const QUICK: Settings = Settings {
        throughput_rounds: 1,
        throughput_run: Duration::from_secs(2),
        schedule_run: Duration::from_secs(3),
        fidelity_run: Duration::from_secs(5),
        down_target_run: Duration::from_secs(12),
        startup_runs: 3,
    };
}

const WAIT: Duration = Duration::from_secs(20);
const MIB: f64 = 1024.0 * 1024.0;

fn scrape(address: SocketAddr) -> Exposition {
    testkit::scrape(&format!("http://{address}/metrics"), false)
}

fn ponger(dir: &Path, address: SocketAddr, args: &[&str], envs: &[(&str, &str)]) -> Process {
    let listen = address.to_string();
    let mut all = vec!["--listen", &listen];
    all.extend_from_slice(args);
    Process::start(dir, "ponger", &all, envs).wait_ok(address, "/readyz", WAIT)
}

fn bare_pong(dir: &Path, address: SocketAddr, args: &[&str]) -> Process {
    let listen = address.to_string();
    let mut all = vec![listen.as_str()];
    all.extend_from_slice(args);
    Process::start(dir, "bare-pong", &all, &[]).wait_ok(address, "/ping", WAIT)
}

const ZERO_DELAY: [&str; 4] = ["--latency", "100%0ms", "--success-percent", "100"];

// -------------------------------------------------- group 1: throughput

/// What one `wrk` run measured (keep-alive HTTP/1.1, 2 threads).
struct WrkRun {
    requests_per_second: f64,
    requests: f64,
}

fn wrk(address: SocketAddr, connections: u32, duration: Duration) -> WrkRun {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            &format!("http://{address}/ping"),
        ])
        .output()
        .expect("wrk runs (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw non-2xx answers from {address}:\n{text}"
    );
    let requests_per_second = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    // "  1234567 requests in 4.00s, 150.00MB read"
    let requests = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    WrkRun {
        requests_per_second,
        requests,
    }
}

/// The name of the OpenTelemetry SDK's batch span processor thread.
const EXPORTER_THREAD: &str = "OpenTelemetry.Traces.BatchProcessor";

/// The servers of the throughput comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Server {
    Bare,
    /// Bare axum answering what the ponger answers: its `x-ponger-version`
    /// header too, so that the comparison is of the instrumentation alone.
    BareSameAnswer,
    Unsampled,
    Sampled,
}

/// Waits until the OTLP receiver has had nothing new for 300 ms (at most 5 s),
/// so that one run's export does not spill into the next run.
fn wait_for_export_drain(sink: &OtlpSink) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = sink.span_count();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = sink.span_count();
        if now == last {
            return;
        }
        last = now;
    }
}

pub fn throughput(dir: &Path, settings: Settings) -> Vec<Figure> {
    let sink = OtlpSink::start(false);
    let endpoint = sink.endpoint();
    let bare_address = free_address();
    let bare = bare_pong(dir, bare_address, &[]);
    let same_answer_address = free_address();
    // The version a ponger without `--version` reports: its profile's name.
    let same_answer = bare_pong(dir, same_answer_address, &["0", "initial"]);
    let unsampled_address = free_address();
    let unsampled = ponger(
        dir,
        unsampled_address,
        &ZERO_DELAY,
        &[("OTEL_TRACES_SAMPLER", "always_off")],
    );
    let sampled_address = free_address();
    // A queue and batches big enough for the exporter to keep up if it can;
    // the spans it could not export are counted below.
    let sampled = ponger(
        dir,
        sampled_address,
        &ZERO_DELAY,
        &[
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let target = |server: Server| match server {
        Server::Bare => (bare_address, bare.pid()),
        Server::BareSameAnswer => (same_answer_address, same_answer.pid()),
        Server::Unsampled => (unsampled_address, unsampled.pid()),
        Server::Sampled => (sampled_address, sampled.pid()),
    };
    let others = [Server::BareSameAnswer, Server::Unsampled, Server::Sampled];
    let connections = 64;
    for server in std::iter::once(Server::Bare).chain(others) {
        wrk(target(server).0, connections, Duration::from_secs(2)); // warm-up
    }
    wait_for_export_drain(&sink);
    let pings_before = scrape(sampled_address).sum("http_requests_total", &[("handler", "/ping")]);
    let spans_before = sink.span_count();
    // The OTLP receiver runs in this process, on the same two cores.
    let receiver_cpu_before = crate::process::cpu_seconds(std::process::id());
    let exporter_cpu_before = crate::process::thread_cpu_seconds(sampled.pid(), EXPORTER_THREAD);

    // Every other run is bare axum's, and each other server's run is
    // compared with the bare runs just before and after it (`rounds`):
    // the machine's speed drifts by a fifth within minutes, and a share of
    // runs further apart measures the drift as much as the instrumentation.
    let order = rounds::interleaved(Server::Bare, &others, settings.throughput_rounds);
    // Each run's server and rate, in run order.
    let mut runs: Vec<(Server, f64)> = Vec::with_capacity(order.len());
    let mut cpu_per_request: HashMap<Server, Vec<f64>> = HashMap::new();
    for (index, server) in order.into_iter().enumerate() {
        let (address, pid) = target(server);
        let cpu_before = crate::process::cpu_seconds(pid);
        let run = wrk(address, connections, settings.throughput_run);
        let cpu = crate::process::cpu_seconds(pid) - cpu_before;
        eprintln!(
            "  run {index}: {server:?} {:.0} req/s",
            run.requests_per_second
        );
        runs.push((server, run.requests_per_second));
        cpu_per_request
            .entry(server)
            .or_default()
            .push(cpu / run.requests * 1e6);
        if server == Server::Sampled {
            wait_for_export_drain(&sink);
        }
    }
    // A server's rate over bare axum's around it, run by run.
    let share =
        |server: Server| -> Vec<f64> { rounds::bracketed_shares(&runs, &Server::Bare, &server) };
    let unsampled_ratios = &share(Server::Unsampled);
    let sampled_ratios = &share(Server::Sampled);
    let same_answer_ratios = &share(Server::BareSameAnswer);
    // The instrumentation alone: each round's share of the ponger over the
    // same round's share of the same-answer server.
    let over_same_answer = |ratios: &[f64]| -> Vec<f64> {
        ratios
            .iter()
            .zip(same_answer_ratios)
            .map(|(ratio, same_answer)| ratio / same_answer)
            .collect()
    };
    wait_for_export_drain(&sink);
    let receiver_cpu = crate::process::cpu_seconds(std::process::id()) - receiver_cpu_before;
    let exporter_cpu =
        crate::process::thread_cpu_seconds(sampled.pid(), EXPORTER_THREAD) - exporter_cpu_before;
    let pings =
        scrape(sampled_address).sum("http_requests_total", &[("handler", "/ping")]) - pings_before;
    let spans = (sink.span_count() - spans_before) as f64;

    let unsampled_share = median(unsampled_ratios);
    let sampled_share = median(sampled_ratios);
    // The median, the middle half of the rounds, and every round in order.
    let describe = |ratios: &[f64]| {
        let mut sorted = ratios.to_vec();
        sorted.sort_by(f64::total_cmp);
        format!(
            "{:.3} (quartiles {:.3} to {:.3}; rounds: {})",
            median(ratios),
            quantile(&sorted, 0.25),
            quantile(&sorted, 0.75),
            ratios
                .iter()
                .map(|ratio| format!("{ratio:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let cpu = |server: Server| median(&cpu_per_request[&server]);
    vec![
        Figure::info(
            1,
            "bare axum `/ping`, req/s (median of rounds)",
            format!(
                "{:.0}",
                median(
                    &runs
                        .iter()
                        .filter(|(server, _)| *server == Server::Bare)
                        .map(|(_, rate)| *rate)
                        .collect::<Vec<_>>()
                )
            ),
        ),
        Figure::checked(
            1,
            "ponger, metrics + exemplars on, tracing unsampled (`always_off`): share of bare",
            describe(unsampled_ratios),
            ">= 0.95",
            unsampled_share >= 0.95,
        ),
        Figure::checked(
            1,
            "ponger, every trace sampled and exported over OTLP/HTTP: share of bare",
            describe(sampled_ratios),
            ">= 0.65",
            sampled_share >= 0.65,
        ),
        Figure::info(
            1,
            "bare axum answering what the ponger answers (its `x-ponger-version` header too): share of bare",
            describe(same_answer_ratios),
        ),
        Figure::info(
            1,
            "ponger unsampled; sampled: share of that same-answer bare axum (the instrumentation alone)",
            format!(
                "{}; {}",
                describe(&over_same_answer(unsampled_ratios)),
                describe(&over_same_answer(sampled_ratios))
            ),
        ),
        Figure::info(
            1,
            "server CPU per request (`/proc/<pid>/stat`, median of rounds): bare; same-answer bare; unsampled; sampled (ratio to bare)",
            format!(
                "{:.1} us; {:.1} us ({:.2}); {:.1} us ({:.2}); {:.1} us ({:.2})",
                cpu(Server::Bare),
                cpu(Server::BareSameAnswer),
                cpu(Server::BareSameAnswer) / cpu(Server::Bare),
                cpu(Server::Unsampled),
                cpu(Server::Unsampled) / cpu(Server::Bare),
                cpu(Server::Sampled),
                cpu(Server::Sampled) / cpu(Server::Bare),
            ),
        ),
        Figure::info(
            1,
            "sampled run: spans received per ping (a zero-delay ping has 2: `GET /ping`, `status decision`); CPU per ping of the ponger's export thread (converting, encoding, sending); of the receiver (same cores)",
            format!(
                "{:.3} ({spans:.0} spans, {pings:.0} pings); {:.1} us; {:.1} us",
                spans / pings,
                exporter_cpu / pings * 1e6,
                receiver_cpu / pings * 1e6
            ),
        ),
    ]
}

// -------------------------------------------------- group 3: schedule: the pinger at a steady rate

/// Cumulative `(le, count)` pairs of a histogram, summed over its series.
fn buckets(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let mut by_bound: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for sample in exposition.find(&format!("{name}_bucket"), labels) {
        let Some(bound) = sample
            .labels
            .get("le")
            .and_then(|le| le.parse::<f64>().ok())
        else {
            continue;
        };
        // Ordered by the bound (positive floats order like their bit patterns).
        let entry = by_bound.entry(bound.to_bits()).or_insert((bound, 0.0));
        entry.1 += sample.value;
    }
    by_bound.into_values().collect()
}

fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c);
            (bound, count - earlier)
        })
        .collect()
}

struct PingerRun {
    sent_per_second: f64,
    completed: f64,
    not_200: f64,
    skipped: f64,
    lag_p50: f64,
    lag_p99: f64,
    lag_within_1ms: f64,
    cpu_seconds: f64,
}

fn run_pinger(
    dir: &Path,
    target: SocketAddr,
    rate: &str,
    duration: Duration,
    extra: &[&str],
) -> PingerRun {
    let address = free_address();
    let listen = address.to_string();
    let target_url = format!("http://{target}/ping");
    let mut args = vec!["--listen", &listen, "--target", &target_url, "--rate", rate];
    args.extend_from_slice(extra);
    let mut pinger = Process::start(dir, "pinger", &args, &[]).wait_ok(address, "/healthz", WAIT);
    std::thread::sleep(Duration::from_secs(2)); // warm-up: connections, allocator
    let before = scrape(address);
    let started = Instant::now();
    std::thread::sleep(duration);
    let after = scrape(address);
    let elapsed = started.elapsed().as_secs_f64();
    pinger.terminate(Duration::from_secs(10));

    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let completed = delta("http_client_requests_total", &[]);
    let ok = delta("http_client_requests_total", &[("code", "200")]);
    let lag = bucket_delta(
        &buckets(&before, "pinger_send_lag_seconds", &[]),
        &buckets(&after, "pinger_send_lag_seconds", &[]),
    );
    let lag_total = lag.last().map_or(0.0, |(_, count)| *count);
    let within_1ms = lag
        .iter()
        .find(|(bound, _)| (*bound - 0.001).abs() < 1e-12)
        .map_or(0.0, |(_, count)| *count);
    PingerRun {
        // Every ping sent is observed once in the send-lag histogram.
        sent_per_second: delta("pinger_send_lag_seconds_count", &[]) / elapsed,
        completed,
        not_200: completed - ok,
        skipped: delta("pinger_pings_skipped_total", &[]),
        lag_p50: histogram_quantile(&lag, 0.5),
        lag_p99: histogram_quantile(&lag, 0.99),
        lag_within_1ms: within_1ms / lag_total,
        cpu_seconds: delta("process_cpu_seconds_total", &[]),
    }
}

pub fn schedule(dir: &Path, settings: Settings) -> Vec<Figure> {
    let target = free_address();
    let _ponger = ponger(dir, target, &ZERO_DELAY, &[]);
    let fast = run_pinger(dir, target, "5000", settings.schedule_run, &[]);
    let slow = run_pinger(dir, target, "10", Duration::from_secs(10), &[]);
    let seconds = settings.schedule_run.as_secs_f64();
    vec![
        Figure::checked(
            3,
            &format!(
                "pinger at 5,000/s for {seconds:.0} s (fresh connection per ping): achieved rate / target"
            ),
            format!(
                "{:.4} ({:.0}/s; {:.0} answered, {:.0} not 200, {:.0} skipped)",
                fast.sent_per_second / 5000.0,
                fast.sent_per_second,
                fast.completed,
                fast.not_200,
                fast.skipped
            ),
            ">= 0.99",
            fast.sent_per_second / 5000.0 >= 0.99,
        ),
        Figure::checked(
            3,
            "pinger at 5,000/s: p99 send lag (from `pinger_send_lag_seconds`)",
            format!(
                "{:.3} ms (p50 {:.3} ms; {:.2}% of pings within 1 ms)",
                fast.lag_p99 * 1000.0,
                fast.lag_p50 * 1000.0,
                fast.lag_within_1ms * 100.0
            ),
            "<= 1 ms",
            fast.lag_within_1ms >= 0.99,
        ),
        Figure::info(
            3,
            "pinger at 5,000/s: CPU seconds per 1,000 pings (`process_cpu_seconds_total`)",
            format!(
                "{:.3} ({:.0}% of a core)",
                fast.cpu_seconds / fast.completed * 1000.0,
                fast.cpu_seconds / seconds * 100.0
            ),
        ),
        Figure::info(
            3,
            "pinger at 10/s for 10 s: CPU, p99 send lag",
            format!(
                "{:.1}% of a core ({:.2} s CPU per 1,000 pings); p99 lag {:.3} ms",
                slow.cpu_seconds / 10.0 * 100.0,
                slow.cpu_seconds / slow.completed.max(1.0) * 1000.0,
                slow.lag_p99 * 1000.0
            ),
        ),
    ]
}

// -------------------------------------------------- group 4: fidelity: injected delays seen in spans

pub fn fidelity(dir: &Path, settings: Settings) -> Vec<Figure> {
    let sink = OtlpSink::start(true);
    let endpoint = sink.endpoint();
    let target = free_address();
    let mut ponger = ponger(
        dir,
        target,
        &["--profile", "slow"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16384"),
        ],
    );
    let histogram_before = buckets(
        &scrape(target),
        "http_request_duration_seconds",
        &[("handler", "/ping")],
    );
    let address = free_address();
    let listen = address.to_string();
    let target_url = format!("http://{target}/ping");
    let mut pinger = Process::start(
        dir,
        "pinger",
        &[
            "--listen",
            &listen,
            "--target",
            &target_url,
            "--rate",
            "200",
        ],
        &[],
    );
    std::thread::sleep(settings.fidelity_run);
    // The pinger stops scheduling and waits for the pings in flight.
    pinger.terminate(Duration::from_secs(15));
    let histogram = bucket_delta(
        &histogram_before,
        &buckets(
            &scrape(target),
            "http_request_duration_seconds",
            &[("handler", "/ping")],
        ),
    );
    // The ponger exports every 200 ms; SIGTERM flushes the rest.
    ponger.terminate(Duration::from_secs(15));
    let spans = sink.take();

    // The ponger's server span per trace, and the delay its child span injected.
    let mut server: HashMap<&[u8], Duration> = HashMap::new();
    let mut injected: HashMap<&[u8], (f64, Duration)> = HashMap::new();
    for span in &spans {
        if span.kind == 2 && span.name == "GET /ping" {
            server.insert(&span.trace_id, span.duration);
        } else if let Some(delay_ms) = span.delay_ms {
            injected.insert(&span.trace_id, (delay_ms, span.duration));
        }
    }
    // Configured delay (ms) -> server-side excess (ms); and the sleep's own excess.
    let mut excess: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut sleep_excess: Vec<f64> = Vec::new();
    for (trace, server_duration) in &server {
        let Some((delay_ms, sleep)) = injected.get(trace) else {
            continue; // slow has no 0 ms entry: every ping sleeps
        };
        excess
            .entry(delay_ms.round() as u64)
            .or_default()
            .push(server_duration.as_secs_f64() * 1000.0 - delay_ms);
        sleep_excess.push(sleep.as_secs_f64() * 1000.0 - delay_ms);
    }
    let total: usize = excess.values().map(Vec::len).sum();

    let mut figures = Vec::new();
    let expected_share = [(200u64, 0.05), (500, 0.50), (2000, 0.45)];
    for (delay, share) in expected_share {
        let mut values = excess.remove(&delay).unwrap_or_default();
        values.sort_by(f64::total_cmp);
        let p50 = quantile(&values, 0.5);
        let p99 = quantile(&values, 0.99);
        figures.push(Figure::checked(
            4,
            &format!("{delay} ms entry: server span duration minus configured delay, median / p99 (n={})", values.len()),
            format!("{p50:.3} ms / {p99:.3} ms (max {:.3} ms)", quantile(&values, 1.0)),
            "median <= 2 ms, p99 <= 10 ms",
            p50 <= 2.0 && p99 <= 10.0,
        ));
        // Binomial: within 4 standard deviations (a false alarm about once in
        // 16,000 runs per entry).
        let n = total as f64;
        let observed = values.len() as f64;
        let sigma = (n * share * (1.0 - share)).sqrt();
        let z = (observed - n * share) / sigma;
        figures.push(Figure::checked(
            4,
            &format!("{delay} ms entry: observed share (expected {share})"),
            format!("{:.4} (z = {z:+.2})", observed / n),
            "|z| <= 4 (binomial, n pings)",
            z.abs() <= 4.0,
        ));
    }
    if !excess.is_empty() {
        figures.push(Figure::checked(
            4,
            "pings with a delay outside the profile",
            format!("{:?}", excess.keys().collect::<Vec<_>>()),
            "none",
            false,
        ));
    }
    sleep_excess.sort_by(f64::total_cmp);
    figures.push(Figure::info(
        4,
        "`injected delay` span (the sleep alone) minus configured delay, median / p99",
        format!(
            "{:.3} ms / {:.3} ms",
            quantile(&sleep_excess, 0.5),
            quantile(&sleep_excess, 0.99)
        ),
    ));
    // What a dashboard shows: each delay must land in the bucket just above it.
    let in_bucket = |lower: f64, upper: f64| {
        let count = |bound: f64| {
            histogram
                .iter()
                .find(|(b, _)| (*b - bound).abs() < 1e-9)
                .map_or(0.0, |(_, c)| *c)
        };
        count(upper) - count(lower)
    };
    let observations = histogram.last().map_or(0.0, |(_, count)| *count);
    let right_bucket = in_bucket(0.2, 0.25) + in_bucket(0.5, 0.6) + in_bucket(2.0, 2.5);
    figures.push(Figure::checked(
        4,
        "`http_request_duration_seconds{handler=\"/ping\"}`: observations in the bucket just above their delay (0.2-0.25, 0.5-0.6, 2-2.5 s)",
        format!("{right_bucket:.0} of {observations:.0}"),
        "all",
        observations > 0.0 && right_bucket == observations,
    ));
    figures.push(Figure::info(
        4,
        "traces matched (server span + delay span) / spans received",
        format!("{total} / {}", spans.len()),
    ));
    figures
}

// -------------------------------------------------- group 5: memory

/// Opens `count` connections, each sending one `GET /ping`, and reads every
/// answer; returns how many were 200.
fn many_pings(address: SocketAddr, count: usize) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..count {
            tasks.spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
                stream
                    .write_all(b"GET /ping HTTP/1.1\r\nHost: ponger\r\nConnection: close\r\n\r\n")
                    .await
                    .ok()?;
                let mut response = Vec::new();
                stream.read_to_end(&mut response).await.ok()?;
                Some(response.starts_with(b"HTTP/1.1 200"))
            });
            // Paced so the listen backlog never overflows (a dropped SYN is
            // retried a second later), all within well under the 2 s sleep.
            if index % 200 == 199 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let mut ok = 0;
        while let Some(result) = tasks.join_next().await {
            if let Ok(Some(true)) = result {
                ok += 1;
            }
        }
        ok
    })
}

/// Sends 5,000 pings at once to `address` while sampling the process's
/// resident set (and, for the ponger, its in-flight gauge) every 50 ms:
/// (peak MiB, peak in flight, pings answered 200).
fn peak_under_load(process: &Process, address: SocketAddr, ponger: bool) -> (f64, f64, usize) {
    let pid = process.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let (mut peak_rss, mut peak_in_flight) = (0u64, 0f64);
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak_rss = peak_rss.max(crate::process::rss_bytes(pid));
                if ponger {
                    if let Some((200, body)) = get(address, "/metrics", Duration::from_secs(2)) {
                        if let Ok(page) = Exposition::parse(String::new(), body) {
                            peak_in_flight = peak_in_flight
                                .max(page.sum("http_requests_in_flight", &[("handler", "/ping")]));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (peak_rss, peak_in_flight)
        })
    };
    let ok = many_pings(address, 5000);
    std::thread::sleep(Duration::from_millis(200));
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (peak_rss, peak_in_flight) = sampler.join().expect("sampler");
    (peak_rss as f64 / MIB, peak_in_flight, ok)
}

pub fn memory(dir: &Path, settings: Settings) -> Vec<Figure> {
    let mut figures = Vec::new();

    // Idle: freshly started, and after a scrape.
    let address = free_address();
    let idle = ponger(dir, address, &[], &[]);
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = idle.rss_bytes() as f64 / MIB;
    let _ = scrape(address);
    std::thread::sleep(Duration::from_millis(200));
    let scraped_rss = idle.rss_bytes() as f64 / MIB;
    drop(idle);
    figures.push(Figure::checked(
        5,
        "ponger resident set at idle (1 s after start; after one scrape)",
        format!("{idle_rss:.1} MiB; {scraped_rss:.1} MiB"),
        "<= 16 MiB",
        idle_rss.max(scraped_rss) <= 16.0,
    ));

    // 5,000 pings in flight, each sleeping 2 s; then the bare axum server
    // sleeping 2 s per ping under the same load, for the side-by-side ratio.
    let address = free_address();
    let busy = ponger(
        dir,
        address,
        &["--latency", "100%2s", "--success-percent", "100"],
        &[],
    );
    let busy_idle = busy.rss_bytes() as f64 / MIB;
    let (peak_rss, peak_in_flight, ok) = peak_under_load(&busy, address, true);
    drop(busy);
    // The same with tracing unsampled: what the spans of the pings in flight hold.
    let address = free_address();
    let unsampled = ponger(
        dir,
        address,
        &["--latency", "100%2s", "--success-percent", "100"],
        &[("OTEL_TRACES_SAMPLER", "always_off")],
    );
    let (unsampled_peak, _, unsampled_ok) = peak_under_load(&unsampled, address, true);
    drop(unsampled);
    let bare_address = free_address();
    let bare = bare_pong(dir, bare_address, &["2000"]);
    let bare_idle = bare.rss_bytes() as f64 / MIB;
    let (bare_peak, _, bare_ok) = peak_under_load(&bare, bare_address, false);
    drop(bare);
    figures.push(Figure::checked(
        5,
        "ponger resident set with 5,000 pings in flight sleeping 2 s (peak)",
        format!(
            "{peak_rss:.1} MiB (peak in flight {peak_in_flight:.0}; {ok} of 5000 answered 200)"
        ),
        "<= 96 MiB",
        peak_rss <= 96.0 && peak_in_flight >= 4900.0 && ok == 5000,
    ));
    figures.push(Figure::info(
        5,
        "same load, ponger with tracing unsampled (`always_off`): peak; KiB per ping in flight more than when sampled",
        format!(
            "{unsampled_peak:.1} MiB ({unsampled_ok} of 5000 answered); {:.1} KiB",
            (peak_rss - unsampled_peak) * 1024.0 / 5000.0
        ),
    ));
    figures.push(Figure::info(
        5,
        "same load on the bare axum server sleeping 2 s per ping (no instrumentation): peak; ponger / bare; KiB per ping in flight above idle",
        format!(
            "{bare_peak:.1} MiB ({bare_ok} of 5000 answered); {:.2}; ponger {:.1} KiB, bare {:.1} KiB",
            peak_rss / bare_peak,
            (peak_rss - busy_idle) * 1024.0 / 5000.0,
            (bare_peak - bare_idle) * 1024.0 / 5000.0
        ),
    ));

    // The pinger against a target that is down, two ways at once: nothing
    // listening (connection refused) and a listener that never accepts
    // (connections hang until the 5 s timeout, so max-in-flight skips).
    let refused = free_address();
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_address = hung.local_addr().expect("address");
    let start_pinger = |target: SocketAddr| {
        let address = free_address();
        let listen = address.to_string();
        let url = format!("http://{target}/ping");
        let process = Process::start(
            dir,
            "pinger",
            &["--listen", &listen, "--target", &url, "--rate", "1000"],
            &[],
        )
        .wait_ok(address, "/healthz", WAIT);
        (process, address)
    };
    let pingers = [
        ("nothing listening", start_pinger(refused)),
        ("never accepts", start_pinger(hung_address)),
    ];
    let seconds = settings.down_target_run.as_secs() as usize;
    let warm_up = 10.min(seconds / 2);
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); pingers.len()];
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        for (index, (_, (process, _))) in pingers.iter().enumerate() {
            rss[index].push(process.rss_bytes() as f64 / MIB);
        }
    }
    for (index, (how, (_, address))) in pingers.iter().enumerate() {
        let page = scrape(*address);
        let window = &rss[index][warm_up..];
        let min = window.iter().copied().fold(f64::INFINITY, f64::min);
        let max = window.iter().copied().fold(0.0, f64::max);
        let growth = max / min - 1.0;
        let mut codes: Vec<String> = page
            .find("http_client_requests_total", &[])
            .map(|sample| {
                format!(
                    "{}={}",
                    sample.labels.get("code").map_or("?", String::as_str),
                    sample.value
                )
            })
            .collect();
        codes.sort();
        figures.push(Figure::checked(
            5,
            &format!("pinger at 1,000/s, target down ({how}) for {seconds} s: resident set from {warm_up} s to the end"),
            format!(
                "{min:.1}-{max:.1} MiB, spread {:.1}% (at 1 s: {:.1} MiB); counted: {}, skipped max_in_flight={:.0}",
                growth * 100.0,
                rss[index][0],
                codes.join(", "),
                page.sum("pinger_pings_skipped_total", &[("reason", "max_in_flight")]) + 0.0
            ),
            "flat within 10%; failures counted",
            growth <= 0.10 && page.sum("http_client_requests_total", &[]) > 0.0,
        ));
    }
    drop(hung);
    figures
}

// -------------------------------------------------- group 6: startup

pub fn startup(dir: &Path, settings: Settings) -> Vec<Figure> {
    let mut times = Vec::new();
    for _ in 0..settings.startup_runs {
        let address = free_address();
        let listen = address.to_string();
        let started = Instant::now();
        let process = Process::start(dir, "ponger", &["--listen", &listen], &[]);
        let ready = loop {
            if let Some((200, _)) = get(address, "/readyz", Duration::from_secs(1)) {
                break started.elapsed();
            }
            assert!(started.elapsed() < WAIT, "ponger never became ready");
            std::thread::sleep(Duration::from_micros(200));
        };
        drop(process);
        times.push(ready.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let max = quantile(&times, 1.0);
    vec![Figure::checked(
        6,
        &format!(
            "ponger: exec to first `/readyz` 200, {} starts",
            times.len()
        ),
        format!("median {:.1} ms, max {max:.1} ms", quantile(&times, 0.5)),
        "<= 50 ms",
        max <= 50.0,
    )]
}
