//! A real Prometheus server (Debian's `prometheus` package), started with
//! exemplar storage on, scraping what the test asks it to.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The `prometheus` executable on PATH. Panics, naming how to install it,
/// when it is absent: tests that need it must fail, not pass by skipping.
pub fn executable() -> PathBuf {
    which::which("prometheus").unwrap_or_else(|_| {
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
        Self::start_with_config(&format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs_yaml}"
        ))
    }

    /// Starts Prometheus with a whole `prometheus.yml` (rule files included),
    /// exemplar storage and the remote-write receiver on, and waits until ready.
    /// Its log is kept beside the TSDB and shown if it never gets ready.
    pub fn start_with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).expect("log file");
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
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Self {
            child,
            base,
            _dir: dir,
        };
        let client = crate::http_client();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !client
            .get(format!("{}/-/ready", prometheus.base))
            .send()
            .is_ok_and(|response| response.status().is_success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "Prometheus did not get ready; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        prometheus
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The whole JSON answer of an API call (`status`, `data`, `error`), whatever its status.
    pub fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        crate::http_client()
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .unwrap_or_else(|error| panic!("Prometheus API {path}: {error}"))
            .json()
            .expect("Prometheus answers JSON")
    }

    /// `data` of an API call: `Err` with Prometheus' error when it failed.
    pub fn try_api(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let body = self.api(path, params);
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query: `Ok(data.result)` or `Err(error message)`.
    pub fn try_query(&self, promql: &str) -> Result<Vec<Value>, String> {
        self.try_api("/api/v1/query", &[("query", promql.to_owned())])
            .map(|data| data["result"].as_array().cloned().unwrap_or_default())
    }

    /// An instant query that must succeed; returns `data.result`.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        self.try_query(promql)
            .unwrap_or_else(|error| panic!("query {promql}: {error}"))
    }

    /// The values of an instant query's vector, as Argo Rollouts hands them
    /// to its conditions.
    pub fn query_values(&self, promql: &str) -> Vec<f64> {
        self.query(promql)
            .iter()
            .map(|sample| {
                let text = sample["value"][1].as_str().expect("sample value");
                text.parse().unwrap_or_else(|_| panic!("value {text}"))
            })
            .collect()
    }

    /// The single value of an instant query returning one series, if any.
    pub fn query_value(&self, promql: &str) -> Option<f64> {
        self.query_values(promql).first().copied()
    }

    /// `/api/v1/query_exemplars` over the last `window`: the series groups.
    pub fn try_query_exemplars(
        &self,
        promql: &str,
        window: Duration,
    ) -> Result<Vec<Value>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        self.try_api(
            "/api/v1/query_exemplars",
            &[
                ("query", promql.to_owned()),
                ("start", format!("{:.3}", now - window.as_secs_f64())),
                ("end", format!("{now:.3}")),
            ],
        )
        .map(|data| data.as_array().cloned().unwrap_or_default())
    }

    /// [`try_query_exemplars`](Self::try_query_exemplars) that must succeed.
    pub fn query_exemplars(&self, promql: &str, window: Duration) -> Vec<Value> {
        self.try_query_exemplars(promql, window)
            .unwrap_or_else(|error| panic!("exemplars {promql}: {error}"))
    }

    /// `/api/v1/rules`: every rule, with its health and last error.
    pub fn rules(&self) -> Vec<Value> {
        let data = self
            .try_api("/api/v1/rules", &[])
            .unwrap_or_else(|error| panic!("rules: {error}"));
        data["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// `/api/v1/targets`' active targets.
    pub fn active_targets(&self) -> Vec<Value> {
        let data = self
            .try_api("/api/v1/targets", &[])
            .unwrap_or_else(|error| panic!("targets: {error}"));
        data["activeTargets"]
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
