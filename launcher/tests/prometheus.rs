//! The real Prometheus (Debian's package, on PATH as scripts/test.sh
//! installs it) started by the launcher: ready, exemplar storage on, its API
//! answers decoded, stopped by SIGTERM.

use std::time::Duration;

use launcher::{Prometheus, Stopped, prometheus};

#[test]
fn prometheus_starts_ready_with_exemplar_storage_and_stops_on_sigterm() {
    let executable = launcher::on_path("prometheus")
        .expect("prometheus on PATH: scripts/install-test-deps.sh installs it");
    let dir = tempfile::tempdir().unwrap();
    let config = "global:\n  scrape_interval: 1s\nscrape_configs: []\n";
    let (launch, address) = prometheus::launch(&executable, dir.path(), config).unwrap();
    let mut server = Prometheus::start(launch, address).unwrap();
    assert_eq!(server.base_url(), format!("http://{address}"));

    let (status, body) =
        launcher::http::get(address, "/api/v1/status/flags", Duration::from_secs(5)).unwrap();
    assert_eq!(status, 200);
    let flags = prometheus::api_data(serde_json::from_str(&body).unwrap()).unwrap();
    assert_eq!(flags["enable-feature"], "exemplar-storage");
    assert_eq!(flags["web.listen-address"], address.to_string());

    let (_, body) =
        launcher::http::get(address, "/api/v1/query?query=1%2B", Duration::from_secs(5)).unwrap();
    let error = prometheus::api_data(serde_json::from_str(&body).unwrap()).unwrap_err();
    assert_eq!(error.kind, "bad_data");

    let stopped = server.process().stop(Duration::from_secs(20));
    assert!(
        matches!(stopped, Stopped::Exited(status) if status.success()),
        "{stopped}"
    );
}
