//! The Service in front of the ponger replicas: a TCP load balancer on a
//! loopback port that sends each new connection to a random ready replica,
//! as kube-proxy does for a ClusterIP Service. The pinger opens a fresh
//! connection per ping, so pings spread over replicas in proportion to their
//! number, which is what canary weights without a traffic router rely on.
//!
//! A replica is removed from the endpoints before it is sent SIGTERM;
//! connections already made to it are proxied to the end, so its pings in
//! flight are answered. The balancer also reads the status line of every
//! response, which tells which pings each replica served and how they ended,
//! and counts them per second of the rehearsal, by version and outcome (the
//! timeline the chart draws).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one replica served.
#[derive(Debug, Default)]
pub struct PodStats {
    pub ok: AtomicU64,
    pub failed_status: AtomicU64,
    pub no_response: AtomicU64,
    pub connect_failed: AtomicU64,
    /// Answered after more than 1 s, the latency objective.
    pub slow: AtomicU64,
}

#[derive(Clone, Debug)]
struct Endpoint {
    pod: String,
    address: SocketAddr,
    canary: bool,
    stats: Arc<PodStats>,
    timeline: Arc<Mutex<PingTimeline>>,
}

/// How a ping through the Service ended, as its user saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// Any other status.
    Failed,
    /// No answer: the connection to the replica failed or closed without a status.
    NoAnswer,
}

/// Pings of one version that ended within one second, by outcome.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub ok: u64,
    pub failed: u64,
    pub no_answer: u64,
}

impl OutcomeCounts {
    pub fn total(&self) -> u64 {
        self.ok + self.failed + self.no_answer
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::NoAnswer => self.no_answer += 1,
        }
    }
}

/// The pings that ended in one second, counted when each ended.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct PingSecond {
    pub stable: OutcomeCounts,
    pub canary: OutcomeCounts,
    /// Connections that found no replica in the Service (users saw no answer).
    pub no_endpoint: u64,
}

/// Per-second ping counts since `origin` (the balancer's start).
#[derive(Clone, Debug)]
pub struct PingTimeline {
    origin: std::time::Instant,
    seconds: Vec<PingSecond>,
}

impl PingTimeline {
    pub fn new(origin: std::time::Instant) -> Self {
        Self {
            origin,
            seconds: Vec::new(),
        }
    }

    pub fn origin(&self) -> std::time::Instant {
        self.origin
    }

    fn second(&mut self, at: std::time::Instant) -> &mut PingSecond {
        let index = at.saturating_duration_since(self.origin).as_secs() as usize;
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, PingSecond::default());
        }
        &mut self.seconds[index]
    }

    /// A ping of the canary (`true`) or stable version ended at `at`.
    pub fn record(&mut self, at: std::time::Instant, canary: bool, outcome: Outcome) {
        let second = self.second(at);
        if canary {
            second.canary.add(outcome);
        } else {
            second.stable.add(outcome);
        }
    }

    pub fn record_no_endpoint(&mut self, at: std::time::Instant) {
        self.second(at).no_endpoint += 1;
    }

    /// The seconds that had ended by `now`; second `i` of the result covers
    /// `[i, i + 1)` seconds after the origin.
    pub fn complete_seconds(&self, now: std::time::Instant) -> &[PingSecond] {
        let ended = now.saturating_duration_since(self.origin).as_secs() as usize;
        &self.seconds[..ended.min(self.seconds.len())]
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, PartialEq)]
pub struct Totals {
    pub pings: u64,
    pub ok: u64,
    pub failed: u64,
    pub failed_status: u64,
    pub no_response: u64,
    /// Answered after more than 1 s (the latency objective).
    pub slower_than_1s: u64,
}

impl Totals {
    fn add(&mut self, stats: &PodStats) {
        let ok = stats.ok.load(Ordering::Relaxed);
        let failed_status = stats.failed_status.load(Ordering::Relaxed);
        let no_response = stats.no_response.load(Ordering::Relaxed)
            + stats.connect_failed.load(Ordering::Relaxed);
        self.slower_than_1s += stats.slow.load(Ordering::Relaxed);
        self.ok += ok;
        self.failed_status += failed_status;
        self.no_response += no_response;
        self.failed += failed_status + no_response;
        self.pings += ok + failed_status + no_response;
    }
}

#[derive(Clone, Debug)]
struct PodInfo {
    canary: bool,
    stats: Arc<PodStats>,
}

struct State {
    endpoints: Vec<Endpoint>,
    pods: BTreeMap<String, PodInfo>,
    no_endpoint: u64,
    timeline: Arc<Mutex<PingTimeline>>,
}

#[derive(Clone)]
pub struct Balancer {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Balancer {
    pub async fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| format!("cannot bind the load balancer: {error}"))?;
        let address = listener.local_addr().map_err(|error| error.to_string())?;
        let state = Arc::new(Mutex::new(State {
            endpoints: Vec::new(),
            pods: BTreeMap::new(),
            no_endpoint: 0,
            timeline: Arc::new(Mutex::new(PingTimeline::new(std::time::Instant::now()))),
        }));
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let chosen = {
                    let Ok(mut state) = accept_state.lock() else {
                        return;
                    };
                    if state.endpoints.is_empty() {
                        state.no_endpoint += 1;
                        if let Ok(mut timeline) = state.timeline.lock() {
                            timeline.record_no_endpoint(std::time::Instant::now());
                        }
                        None
                    } else {
                        let index = rand::rng().random_range(0..state.endpoints.len());
                        Some(state.endpoints[index].clone())
                    }
                };
                if let Some(endpoint) = chosen {
                    tokio::spawn(proxy(client, endpoint));
                }
            }
        });
        Ok(Self {
            address,
            state,
            task: Arc::new(task),
        })
    }

    /// Adds a ready replica to the endpoints.
    pub fn add(&self, pod: &str, address: SocketAddr, canary: bool) {
        if let Ok(mut state) = self.state.lock() {
            let timeline = state.timeline.clone();
            let stats = state
                .pods
                .entry(pod.to_owned())
                .or_insert_with(|| PodInfo {
                    canary,
                    stats: Arc::default(),
                })
                .stats
                .clone();
            state.endpoints.retain(|endpoint| endpoint.pod != pod);
            state.endpoints.push(Endpoint {
                pod: pod.to_owned(),
                address,
                canary,
                stats,
                timeline,
            });
        }
    }

    /// Removes a replica from the endpoints: no new connection goes to it.
    pub fn remove(&self, pod: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.endpoints.retain(|endpoint| endpoint.pod != pod);
        }
    }

    pub fn endpoints(&self) -> usize {
        self.state
            .lock()
            .map(|state| state.endpoints.len())
            .unwrap_or(0)
    }

    /// Pings served so far by canary (`true`) or stable (`false`) replicas.
    pub fn totals(&self, canary: bool) -> Totals {
        let mut totals = Totals::default();
        if let Ok(state) = self.state.lock() {
            for info in state.pods.values().filter(|info| info.canary == canary) {
                totals.add(&info.stats);
            }
        }
        totals
    }

    /// Connections that found no endpoint at all.
    pub fn no_endpoint(&self) -> u64 {
        self.state
            .lock()
            .map(|state| state.no_endpoint)
            .unwrap_or(0)
    }

    /// The pings counted per second so far, and the instant second 0 starts.
    pub fn timeline(&self) -> Option<PingTimeline> {
        let state = self.state.lock().ok()?;
        let timeline = state.timeline.lock().ok()?;
        Some(timeline.clone())
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Endpoint {
    /// Counts a proxied ping by the status its replica answered (None: no answer).
    fn answered(&self, status: Option<u16>) {
        let outcome = match status {
            Some(code) if (200..300).contains(&code) => Outcome::Ok,
            Some(_) => Outcome::Failed,
            None => Outcome::NoAnswer,
        };
        let counter = match outcome {
            Outcome::Ok => &self.stats.ok,
            Outcome::Failed => &self.stats.failed_status,
            Outcome::NoAnswer => &self.stats.no_response,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.record(outcome);
    }

    fn record(&self, outcome: Outcome) {
        if let Ok(mut timeline) = self.timeline.lock() {
            timeline.record(std::time::Instant::now(), self.canary, outcome);
        }
    }
}

async fn proxy(client: TcpStream, endpoint: Endpoint) {
    let accepted = std::time::Instant::now();
    let backend =
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(endpoint.address))
            .await
        {
            Ok(Ok(backend)) => backend,
            _ => {
                endpoint
                    .stats
                    .connect_failed
                    .fetch_add(1, Ordering::Relaxed);
                endpoint.record(Outcome::NoAnswer);
                return;
            }
        };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut backend_read, mut backend_write) = backend.into_split();
    let upstream = async move {
        let _ = tokio::io::copy(&mut client_read, &mut backend_write).await;
        let _ = backend_write.shutdown().await;
    };
    let ended = endpoint.clone();
    let downstream = async move {
        let mut buffer = vec![0u8; 8192];
        let mut head: Vec<u8> = Vec::new();
        let mut status: Option<u16> = None;
        loop {
            let read = match backend_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if status.is_none() && head.len() < 12 {
                head.extend_from_slice(&buffer[..read.min(12 - head.len())]);
                if head.len() >= 12 {
                    if accepted.elapsed() > Duration::from_secs(1) {
                        ended.stats.slow.fetch_add(1, Ordering::Relaxed);
                    }
                    status = std::str::from_utf8(&head[9..12])
                        .ok()
                        .and_then(|code| code.parse().ok())
                        .or(Some(0));
                }
            }
            if client_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
        ended.answered(status);
    };
    tokio::join!(upstream, downstream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_counts_each_ping_in_the_second_it_ended() {
        let origin = std::time::Instant::now();
        let mut timeline = PingTimeline::new(origin);
        timeline.record(origin + Duration::from_millis(200), false, Outcome::Ok);
        timeline.record(origin + Duration::from_millis(999), true, Outcome::Failed);
        timeline.record(
            origin + Duration::from_millis(2500),
            true,
            Outcome::NoAnswer,
        );
        timeline.record_no_endpoint(origin + Duration::from_millis(2100));
        assert_eq!(
            timeline
                .complete_seconds(origin + Duration::from_millis(2900))
                .len(),
            2
        );
        let seconds = timeline.complete_seconds(origin + Duration::from_secs(60));
        assert_eq!(seconds.len(), 3);
        assert_eq!(seconds[0].stable.ok, 1);
        assert_eq!(seconds[0].canary.failed, 1);
        assert_eq!(seconds[1], PingSecond::default());
        assert_eq!(seconds[2].canary.no_answer, 1);
        assert_eq!(seconds[2].no_endpoint, 1);
        assert_eq!(seconds[2].canary.total(), 1);
    }
}
