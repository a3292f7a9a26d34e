//! Serving an axum router over HTTP/1.1 with bounds that hostile or broken
//! clients cannot stretch: a deadline for each request's headers, a cap on
//! open connections, and a shutdown that ends within a deadline.
//!
//! `axum::serve` offers none of these: a client that sends half a request
//! keeps its connection (and, at shutdown, the whole process) for as long as
//! it likes.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};

mod head_deadline;
use head_deadline::{Activity, Answered, Watchdog};

/// How long a client may take to send a request's headers, from the moment
/// its connection opens or its previous response was ready. An idle
/// keep-alive connection is closed after it too; a request being handled is
/// never cut short by it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections served at once; further ones wait in the listen backlog
/// until one closes. 5,000 pings in flight take about 96 MiB (the benchmark
/// in docs/benchmarks.md), so this many stay within the pod's 128 MiB limit.
pub const MAX_CONNECTIONS: usize = 6_000;

/// The bounds [`serve`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and closes every connection that has not sent a request yet and
/// every idle one at once. Requests being handled get `in_flight_grace` to
/// finish; connections still open after it are closed (their requests are
/// recorded as abandoned, 499).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    in_flight_grace: Duration,
) -> std::io::Result<()> {
    // The route table is prepared once here, not for each connection
    // (`Router` served as is rebuilds it per call).
    let router = router.with_state(());
    // No `header_read_timeout` here: see `head_deadline`.
    let http = hyper::server::conn::http1::Builder::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
        };
        // Finished connections leave their results here until collected.
        while connections.try_join_next().is_some() {}
        let activity = Activity::new();
        let service = ConnectionService {
            router: router.clone(),
            activity: activity.clone(),
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let (watchdog, name_connection) =
            Watchdog::spawn(activity.clone(), limits.header_read_timeout);
        let mut closing_seen = closing_seen.clone();
        let task = connections.spawn(async move {
            let _permit = permit;
            let _watchdog = watchdog;
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended");
                    }
                    return;
                }
                _ = closing_seen.wait_for(|closing| *closing) => {}
            }
            // Nothing to answer on a connection that never delivered a whole
            // request, such as one that sent half a request and stopped.
            if !activity.has_requested() {
                return;
            }
            // Closes an idle connection; one with a request in flight is
            // closed once its response is sent.
            connection.as_mut().graceful_shutdown();
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
        });
        let _ = name_connection.send(task);
    }

    drop(listener);
    let open = connections.len();
    let _ = closing.send(true);
    tracing::info!(
        open_connections = open,
        ?in_flight_grace,
        "stopped accepting; closing idle connections, in-flight requests finish"
    );
    let drained = tokio::time::timeout(in_flight_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open_connections = connections.len(),
            ?in_flight_grace,
            "connections still open after the in-flight grace; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accepting fails for the connection alone (it was reset before it was
/// accepted) or for want of resources (descriptors): wait a little then, as
/// every connection would fail the same way.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The router, as hyper calls it for one connection, noting each request's
/// head and answer for the header read timeout.
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future =
        Answered<Either<RouteFuture<Infallible>, tower::util::Oneshot<Router, Request<Incoming>>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.head_received();
        let mut router = self.router.clone();
        // axum's router is always ready, so it is called at once rather than
        // through `oneshot`, whose future carries the request until its first
        // poll: about 200 instructions of a zero-delay ping (callgrind). Should that
        // change, the request waits for readiness as before.
        let answer = match Service::<Request<Incoming>>::poll_ready(
            &mut router,
            &mut TaskContext::from_waker(Waker::noop()),
        ) {
            Poll::Ready(Ok(())) => Either::Left(router.call(request)),
            Poll::Pending => Either::Right(router.oneshot(request)),
        };
        Answered::new(answer, self.activity.clone())
    }
}
