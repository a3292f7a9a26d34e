//! SIGTERM/SIGINT handling. The first signal asks for a graceful shutdown;
//! a second one asks to skip the waiting that can be skipped.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Counts termination signals (SIGTERM or SIGINT) received so far.
#[derive(Clone, Debug)]
pub struct ShutdownSignals {
    received: watch::Receiver<u32>,
}

impl ShutdownSignals {
    /// Starts listening. Must be called inside a tokio runtime.
    pub fn listen() -> std::io::Result<Self> {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (sender, received) = watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = terminate.recv() => {},
                    _ = interrupt.recv() => {},
                }
                sender.send_modify(|count| *count += 1);
            }
        });
        Ok(Self { received })
    }

    /// Resolves once the first signal has arrived.
    pub async fn requested(&self) {
        self.at_least(1).await;
    }

    /// Resolves once a second signal has arrived.
    pub async fn hurried(&self) {
        self.at_least(2).await;
    }

    async fn at_least(&self, count: u32) {
        let mut received = self.received.clone();
        // An error means the listener task is gone, which only happens when the
        // runtime shuts down: nothing left to wait for.
        let _ = received.wait_for(|received| *received >= count).await;
    }
}
