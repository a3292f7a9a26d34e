//! A real Prometheus server (Debian's `prometheus` package), started with
//! exemplar storage on, scraping what the test asks it to.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The `prometheus` executable on PATH. Panics, naming how to install it,
/// when it is absent: tests that need it must fail, not pass by skipping.
pub fn executable() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "prometheus is not on PATH; install Debian's package (apt-get install prometheus) \
                 or run scripts/test.sh, which installs it"
            )
        })
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    child: Child,
    base: String,
    // Holds the config and the TSDB until the server is gone.
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `scrape_configs_yaml` (the YAML list under
    /// `scrape_configs:`), a global scrape and evaluation interval of 1 s, and waits until ready.
    pub fn start(scrape_configs_yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs_yaml}"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let child = Command::new(executable())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Self {
            child,
            base,
            _dir: dir,
        };
        let client = crate::http_client();
        crate::wait_for("Prometheus to be ready", Duration::from_secs(30), || {
            client
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .ok()
                .filter(|response| response.status().is_success())
        });
        prometheus
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let response = crate::http_client()
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .unwrap_or_else(|error| panic!("Prometheus API {path}: {error}"));
        let body: Value = response.json().expect("Prometheus answers JSON");
        assert_eq!(
            body["status"], "success",
            "Prometheus API {path} {params:?}: {body}"
        );
        body["data"].clone()
    }

    /// An instant query; returns `data.result`.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", promql.to_owned())]);
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of an instant query returning one series, if any.
    pub fn query_value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let value = result.first()?["value"][1].as_str()?;
        value.parse().ok()
    }

    /// `/api/v1/query_exemplars` over the last `window`.
    pub fn query_exemplars(&self, promql: &str, window: Duration) -> Vec<Value> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        let data = self.api(
            "/api/v1/query_exemplars",
            &[
                ("query", promql.to_owned()),
                ("start", format!("{:.3}", now - window.as_secs_f64())),
                ("end", format!("{now:.3}")),
            ],
        );
        data.as_array().cloned().unwrap_or_default()
    }

    /// `/api/v1/targets`' active targets.
    pub fn active_targets(&self) -> Vec<Value> {
        self.api("/api/v1/targets", &[])["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
