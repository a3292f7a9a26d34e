//! A real Prometheus server (Debian's `prometheus` package), started by the
//! launcher with exemplar storage and the remote-write receiver on, scraping
//! what the test asks it to.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The `prometheus` executable on PATH. Panics, naming how to install it,
/// when it is absent: tests that need it must fail, not pass by skipping.
pub fn executable() -> PathBuf {
    launcher::on_path("prometheus").unwrap_or_else(|error| {
        panic!(
            "{error}; install Debian's package (apt-get install prometheus) \
                 or run scripts/test.sh, which installs it"
        )
    })
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    // Stopped (killed) when dropped.
    _server: launcher::Prometheus,
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
    /// Its last log lines are shown if it never gets ready.
    pub fn start_with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = launcher::prometheus::launch(&executable(), dir.path(), config)
            .and_then(|(launch, address)| {
                launcher::Prometheus::start(
                    launch.arg("--web.enable-remote-write-receiver"),
                    address,
                )
            })
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            base: server.base_url(),
            _server: server,
            _dir: dir,
        }
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
        launcher::prometheus::api_data(self.api(path, params)).map_err(|error| error.to_string())
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
            .map(|sample| launcher::prometheus::sample_value(&sample["value"][1]))
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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    launcher::free_loopback_address()
        .expect("a free loopback port")
        .port()
}
