//! Misbehaving targets for the pinger: plain TCP servers on loopback that
//! answer garbage, never answer, or answer well while counting connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads the request, writes bytes that are not HTTP, closes.
    Garbage,
    /// Accepts and holds the connection without a byte of response.
    Silent,
    /// Answers `200 pong` to every request on a connection, keeping it open.
    KeepAliveHttp,
}

/// A fake target; it stops accepting when dropped.
pub struct FakeTarget {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeTarget {
    pub fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (connections, requests, stop) =
                (connections.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let (requests, stop) = (requests.clone(), stop.clone());
                            std::thread::spawn(move || serve(stream, behaviour, &requests, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        Self {
            address,
            connections,
            requests,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/ping", self.address)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, requests: &AtomicUsize, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buffer = [0u8; 4096];
    let mut pending = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => pending.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        // One request per blank line; the pinger sends GETs without a body.
        while let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            pending.drain(..end + 4);
            requests.fetch_add(1, Ordering::Relaxed);
            match behaviour {
                Behaviour::Garbage => {
                    let _ = stream.write_all(b"\x00\x01 this is not HTTP \xff\xfe\r\n\r\n");
                    return;
                }
                Behaviour::Silent => {}
                Behaviour::KeepAliveHttp => {
                    let response = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\npong\n";
                    if stream.write_all(response).is_err() {
                        return;
                    }
                }
            }
        }
    }
}
