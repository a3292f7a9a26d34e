//! `OTEL_BSP_*` and `OTEL_TRACES_SAMPLER*` values that once aborted the
//! process, spun a core or were ignored in silence: each now starts the
//! ponger with the default in its place and one warning line that names the
//! variable, the value given and the value used.

use std::time::Duration;

use testkit::{OtlpReceiver, Service, http_client, scrape, wait_for};

/// The warning lines among `logs` (JSON) about `variable`.
fn warnings_about(logs: &[String], variable: &str) -> Vec<serde_json::Value> {
    logs.iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|log| log["level"] == "WARN" && log["fields"]["variable"] == variable)
        .collect()
}

fn cpu_seconds(server: &Service) -> f64 {
    scrape(&server.url("/metrics"), false).sum("process_cpu_seconds_total", &[])
}

#[test]
fn out_of_range_batch_settings_warn_once_and_use_the_defaults() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let cases = [
        // A 368 GB queue allocation: an abort before this check.
        (
            "OTEL_BSP_MAX_QUEUE_SIZE",
            "1000000000",
            "2048 (the default)",
        ),
        // An export thread that never sleeps.
        (
            "OTEL_BSP_SCHEDULE_DELAY",
            "0",
            "5000 milliseconds (the default)",
        ),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-1", "512 (the default)"),
        (
            "OTEL_BSP_EXPORT_TIMEOUT",
            "99999999999",
            "30000 milliseconds (the default)",
        ),
        ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "0", "1 (the default)"),
    ];
    let mut envs = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    envs.extend(cases.iter().map(|(variable, value, _)| (*variable, *value)));
    let server = Service::ponger(&["--latency", "100%0ms"], &envs);
    let logs = server.logs();
    for (variable, value, used) in cases {
        let warnings = warnings_about(&logs, variable);
        assert_eq!(warnings.len(), 1, "{variable}: {logs:#?}");
        assert_eq!(warnings[0]["fields"]["value"], value, "{variable}");
        assert_eq!(warnings[0]["fields"]["used"], used, "{variable}");
    }

    // It serves, and its export thread sleeps between batches: idle, the
    // whole process uses well under a tenth of a core (a spinning thread
    // would use all of one).
    let pong = http_client()
        .get(server.url("/ping"))
        .send()
        .expect("ping answered");
    assert!(pong.status().is_success() || pong.status().as_u16() == 500);
    let before = cpu_seconds(&server);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(&server) - before;
    assert!(used < 0.2, "{used} CPU seconds in 2 s of idling");

    // The default 5 s schedule then exports the ping's spans.
    wait_for("the ping's spans", Duration::from_secs(15), || {
        (!receiver.spans().is_empty()).then_some(())
    });
}

#[test]
fn an_unknown_sampler_or_a_ratio_above_one_warns_and_uses_the_default() {
    for (envs, variable, value, used) in [
        (
            &[("OTEL_TRACES_SAMPLER", "bogus")][..],
            "OTEL_TRACES_SAMPLER",
            "bogus",
            "parentbased_always_on",
        ),
        (
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ][..],
            "OTEL_TRACES_SAMPLER_ARG",
            "2",
            "1.0 (the default)",
        ),
    ] {
        let server = Service::ponger(&["--latency", "100%0ms"], envs);
        let warnings = warnings_about(&server.logs(), variable);
        assert_eq!(warnings.len(), 1, "{:#?}", server.logs());
        assert_eq!(warnings[0]["fields"]["value"], value);
        assert_eq!(warnings[0]["fields"]["used"], used);
        // The default samples every new trace: the answer names its trace.
        let pong = http_client()
            .get(server.url("/ping"))
            .send()
            .expect("ping answered");
        assert!(pong.headers().contains_key("x-trace-id"), "{envs:?}");
    }
    // A valid ratio is used as given, silently.
    let server = Service::ponger(
        &["--latency", "100%0ms"],
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    );
    assert!(
        server
            .logs()
            .iter()
            .all(|line| !line.contains("\"level\":\"WARN\"")),
        "{:#?}",
        server.logs()
    );
    let pong = http_client()
        .get(server.url("/ping"))
        .send()
        .expect("ping answered");
    assert!(!pong.headers().contains_key("x-trace-id"));
}
