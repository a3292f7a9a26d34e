//! An axum router served on a loopback port from a thread of its own, for
//! test and benchmark peers (receivers, fake collectors) that blocking code
//! talks to.

use std::net::SocketAddr;
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
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.await;
                    })
                    .await;
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
