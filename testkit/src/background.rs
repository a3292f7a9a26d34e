//! An axum router served on a loopback port from a thread of its own, for
//! test and benchmark peers (receivers, fake collectors) that blocking code
//! talks to.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The server; it stops when dropped.
pub struct BackgroundServer {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl BackgroundServer {
    /// Serves `router` on a free loopback port, on a current-thread runtime
    /// of its own, and returns once the port is bound.
    pub fn start(router: axum::Router) -> Self {
        Self::start_with(move |listener, stop| async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await;
        })
    }

    /// Runs `serve` with a listener bound to a free loopback port, on a
    /// current-thread runtime of its own, and returns once the port is bound.
    /// `serve` is to stop when its second argument completes (on drop).
    pub fn start_with<F, S>(serve: S) -> Self
    where
        S: FnOnce(tokio::net::TcpListener, Stopped) -> F + Send + 'static,
        F: Future<Output = ()>,
    {
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port");
                let _ = address_sender.send(listener.local_addr().expect("local address"));
                serve(listener, Stopped(stop)).await;
            });
        });
        let address = address_receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("background server started");
        Self {
            address,
            shutdown: Some(shutdown),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Completes when the [`BackgroundServer`] is dropped.
pub struct Stopped(tokio::sync::oneshot::Receiver<()>);

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(context).map(|_| ())
    }
}
