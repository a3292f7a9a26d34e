//! Prometheus as a child process: a given configuration, its TSDB in a
//! directory of the caller's, a free loopback port, exemplar storage on; and
//! the decoding of its HTTP API's answers, whatever HTTP client asked.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::{Error, Launch, Process};

/// The path that answers 200 once Prometheus serves queries.
pub const READY_PATH: &str = "/-/ready";
/// How long Prometheus may take to get ready (a first start replays no WAL
/// and takes a second or two; a loaded machine takes longer).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prometheus to start from `executable`: `config` is written to
/// `dir/prometheus.yml`, the TSDB kept in `dir/data`; it listens on a free
/// loopback port (the address returned), stores exemplars and logs warnings
/// and errors only. Add flags to the [`Launch`] before starting it.
pub fn launch(executable: &Path, dir: &Path, config: &str) -> Result<(Launch, SocketAddr), Error> {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).map_err(|source| Error::Write {
        path: config_path.clone(),
        source,
    })?;
    let address = crate::free_loopback_address()?;
    let launch = Launch::new("prometheus", executable).args([
        format!("--config.file={}", config_path.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={address}"),
        "--enable-feature=exemplar-storage".to_owned(),
        "--log.level=warn".to_owned(),
    ]);
    Ok((launch, address))
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    process: Process,
    address: SocketAddr,
}

impl Prometheus {
    /// Starts `launch` (see [`launch`]) and waits until it is ready.
    pub fn start(launch: Launch, address: SocketAddr) -> Result<Self, Error> {
        let mut process = launch.spawn()?;
        process.wait_http_ok(address, READY_PATH, READY_TIMEOUT)?;
        Ok(Self { process, address })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://<address>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// An HTTP API call that Prometheus answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// `errorType`, e.g. `bad_data`.
    pub kind: String,
    pub message: String,
}

/// The `data` of an HTTP API answer (`{"status": "success", "data": ...}`),
/// or the error Prometheus gave.
pub fn api_data(mut body: Value) -> Result<Value, ApiError> {
    if body["status"] == "success" {
        return Ok(body["data"].take());
    }
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_owned();
    Err(ApiError {
        kind: text("errorType"),
        message: text("error"),
    })
}

/// A sample value as the API writes it: a string such as `"0.25"`, `"NaN"`
/// or `"+Inf"`. Anything else reads as NaN.
pub fn sample_value(value: &Value) -> f64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_answers_give_data_or_the_error() {
        let data = api_data(json!({"status": "success", "data": {"result": []}}));
        assert_eq!(data.unwrap(), json!({"result": []}));
        let error =
            api_data(json!({"status": "error", "errorType": "bad_data", "error": "parse error"}))
                .unwrap_err();
        assert_eq!(error.to_string(), "bad_data: parse error");
    }

    #[test]
    fn sample_values_include_nan_and_infinities() {
        assert_eq!(sample_value(&json!("0.25")), 0.25);
        assert_eq!(sample_value(&json!("+Inf")), f64::INFINITY);
        assert_eq!(sample_value(&json!("-Inf")), f64::NEG_INFINITY);
        assert!(sample_value(&json!("NaN")).is_nan());
        assert!(sample_value(&json!(1)).is_nan());
    }
}
