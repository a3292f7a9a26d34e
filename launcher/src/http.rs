//! One `GET` over a fresh loopback connection, with std's sockets only: the
//! readiness probe of the launcher, and the benchmarks' requests that must
//! cost the measured process as little as possible.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` on `address`: the status code and the body, or `None` when
/// there is no (complete) answer within `timeout` for each of the connect and
/// every read.
pub fn get(address: SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.set_nodelay(true).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

/// Whether `GET path` answers 200 within `timeout`.
pub fn ok(address: SocketAddr, path: &str, timeout: Duration) -> bool {
    matches!(get(address, path, timeout), Some((200, _)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_status_and_body_and_gives_none_without_a_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request).unwrap();
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nwait")
                .unwrap();
        });
        assert_eq!(
            get(address, "/-/ready", Duration::from_secs(5)),
            Some((503, "wait".to_owned()))
        );
        server.join().unwrap();
        // Nothing listens there any more.
        assert!(!ok(address, "/-/ready", Duration::from_secs(1)));
    }
}
