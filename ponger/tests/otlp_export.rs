//! Span export to any OTLP backend: HTTP and gRPC, each in plain text, over
//! TLS with the test's own CA, and with a client certificate (mutual TLS),
//! against the real receiver in testkit; and what a person sees when the
//! configuration or the collector is wrong.

use std::time::Duration;

use testkit::otlp::{SPAN_KIND_CLIENT, SPAN_KIND_SERVER};
use testkit::{OtlpReceiver, OtlpTransport, ReceiverTls, Service, TestPki, wait_for};

/// How the exporter reaches the receiver.
#[derive(Clone, Copy, Debug)]
enum Security {
    Plain,
    /// TLS, the server verified against the test's CA.
    Tls,
    /// TLS, and the exporter presents a client certificate the receiver requires.
    MutualTls,
}

fn receiver(transport: OtlpTransport, security: Security, pki: &TestPki) -> OtlpReceiver {
    let tls = match security {
        Security::Plain => None,
        Security::Tls => Some(ReceiverTls {
            pki,
            require_client_certificate: false,
        }),
        Security::MutualTls => Some(ReceiverTls {
            pki,
            require_client_certificate: true,
        }),
    };
    OtlpReceiver::serve(transport, tls)
}

/// The variables that point an exporter at `receiver`; the TLS ones name
/// files of `pki`. The `_TRACES_` forms are used for one of the two
/// transports, so that both spellings are exercised.
fn exporter_env(
    receiver: &OtlpReceiver,
    security: Security,
    pki: &TestPki,
    transport: OtlpTransport,
) -> Vec<(String, String)> {
    let traces = transport == OtlpTransport::Grpc;
    let name = |variable: &str| {
        if traces {
            variable.replace("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_")
        } else {
            variable.to_owned()
        }
    };
    let mut env = vec![
        (name("OTEL_EXPORTER_OTLP_ENDPOINT"), receiver.endpoint()),
        (
            name("OTEL_EXPORTER_OTLP_PROTOCOL"),
            receiver.protocol().to_owned(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    if !matches!(security, Security::Plain) {
        env.push((name("OTEL_EXPORTER_OTLP_CERTIFICATE"), pki.ca_path()));
    }
    if matches!(security, Security::MutualTls) {
        env.push((
            name("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
            pki.client_certificate_path(),
        ));
        env.push((name("OTEL_EXPORTER_OTLP_CLIENT_KEY"), pki.client_key_path()));
    }
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

/// Pings a ponger exporting to a receiver over `transport` and `security`,
/// and checks that the receiver gets each ping's server span.
fn ponger_spans_arrive(transport: OtlpTransport, security: Security) {
    let pki = TestPki::generate("receiver");
    let receiver = receiver(transport, security, &pki);
    let env = exporter_env(&receiver, security, &pki, transport);
    let ponger = Service::ponger(&["--latency", "100%0ms"], &borrowed(&env));
    assert!(
        ponger
            .logs()
            .iter()
            .any(|line| line.contains("exporting spans over OTLP")
                && line.contains(receiver.protocol())),
        "{:?}",
        ponger.logs()
    );
    let client = testkit::http_client();
    let mut trace_ids = Vec::new();
    for index in 0..3 {
        let trace_id = format!("{:032x}", 0xabc0 + index);
        let response = client
            .get(ponger.url("/ping"))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .send()
            .expect("ping");
        assert!(response.status().is_success() || response.status().is_server_error());
        trace_ids.push(trace_id);
    }
    wait_for(
        &format!("{transport:?} {security:?}: the pings' server spans"),
        Duration::from_secs(20),
        || {
            let spans = receiver.spans();
            trace_ids
                .iter()
                .all(|trace_id| {
                    spans.iter().any(|span| {
                        &span.trace_id == trace_id
                            && span.service_name == "ponger"
                            && span.kind == SPAN_KIND_SERVER
                            && span.name == "GET /ping"
                    })
                })
                .then_some(())
        },
    );
    let failures: Vec<String> = ponger
        .logs()
        .into_iter()
        .filter(|line| line.contains("span export failed"))
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(receiver.handshake_errors().is_empty());
}

#[test]
fn http_plain_receives_the_spans() {
    ponger_spans_arrive(OtlpTransport::Http, Security::Plain);
}

#[test]
fn http_over_tls_receives_the_spans() {
    ponger_spans_arrive(OtlpTransport::Http, Security::Tls);
}

#[test]
fn http_over_mutual_tls_receives_the_spans() {
    ponger_spans_arrive(OtlpTransport::Http, Security::MutualTls);
}

#[test]
fn grpc_plain_receives_the_spans() {
    ponger_spans_arrive(OtlpTransport::Grpc, Security::Plain);
}

#[test]
fn grpc_over_tls_receives_the_spans() {
    ponger_spans_arrive(OtlpTransport::Grpc, Security::Tls);
}

#[test]
fn grpc_over_mutual_tls_receives_the_spans() {
    ponger_spans_arrive(OtlpTransport::Grpc, Security::MutualTls);
}

#[test]
fn a_grpc_endpoint_without_a_scheme_is_plain_text_when_insecure_is_true() {
    let receiver = OtlpReceiver::serve(OtlpTransport::Grpc, None);
    let endpoint = receiver.endpoint().replace("http://", "");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let ponger = Service::ponger(&["--latency", "100%0ms"], &env);
    testkit::http_client()
        .get(ponger.url("/ping"))
        .send()
        .expect("ping");
    wait_for(
        "the ping's span over plain gRPC",
        Duration::from_secs(20),
        || (!receiver.spans().is_empty()).then_some(()),
    );
}

#[test]
fn pinger_and_ponger_traces_join_over_grpc_with_mutual_tls() {
    let pki = TestPki::generate("receiver");
    let transport = OtlpTransport::Grpc;
    let receiver = receiver(transport, Security::MutualTls, &pki);
    let env = exporter_env(&receiver, Security::MutualTls, &pki, transport);
    let ponger = Service::ponger(&["--latency", "100%0ms"], &borrowed(&env));
    let _pinger = Service::pinger(&ponger.url("/ping"), "20", &[], &borrowed(&env));
    let (client, server) = wait_for(
        "a pinger client span and the ponger server span under it",
        Duration::from_secs(20),
        || {
            let spans = receiver.spans();
            spans
                .iter()
                .filter(|span| span.service_name == "pinger" && span.kind == SPAN_KIND_CLIENT)
                .find_map(|client| {
                    spans
                        .iter()
                        .find(|server| {
                            server.service_name == "ponger"
                                && server.kind == SPAN_KIND_SERVER
                                && server.parent_span_id == client.span_id
                        })
                        .map(|server| (client.clone(), server.clone()))
                })
        },
    );
    assert_eq!(client.trace_id, server.trace_id);
}

/// The export failure lines a service logged.
fn failure_lines(service: &Service) -> Vec<serde_json::Value> {
    service
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("span export failed"))
        })
        .collect()
}

/// Starts a ponger exporting with `env`, pings it for a while (many batches,
/// each export failing) and returns its single failure line.
fn single_failure_line(env: &[(&str, &str)]) -> serde_json::Value {
    let ponger = Service::ponger(&["--latency", "100%0ms"], env);
    let client = testkit::http_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Several batches (100 ms apart) fail; the line is written once.
    let mut pings = 0;
    while pings < 30 || failure_lines(&ponger).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no failure line: {:?}",
            ponger.logs()
        );
        let _ = client.get(ponger.url("/ping")).send();
        pings += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let lines = failure_lines(&ponger);
    assert_eq!(lines.len(), 1, "one line per interval: {lines:#?}");
    let sdk_lines: Vec<String> = ponger
        .logs()
        .into_iter()
        .filter(|line| line.contains("BatchSpanProcessor.ExportError"))
        .collect();
    assert!(sdk_lines.is_empty(), "{sdk_lines:?}");
    lines[0].clone()
}

#[test]
fn a_receiver_signed_by_another_ca_is_reported_as_a_certificate_failure() {
    let trusted = TestPki::generate("trusted");
    let other = TestPki::generate("other");
    for transport in [OtlpTransport::Http, OtlpTransport::Grpc] {
        let receiver = receiver(transport, Security::Tls, &other);
        let endpoint = receiver.endpoint();
        let ca = trusted.ca_path();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", receiver.protocol()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        let line = single_failure_line(&env);
        let fields = &line["fields"];
        assert_eq!(fields["cause"], "certificate", "{transport:?}: {line}");
        assert!(
            fields["endpoint"]
                .as_str()
                .is_some_and(|logged| logged.starts_with(&endpoint)),
            "{transport:?}: {line}"
        );
        assert!(
            fields["error"]
                .as_str()
                .is_some_and(|error| error.contains("UnknownIssuer")),
            "{transport:?}: {line}"
        );
        assert_eq!(fields["protocol"], receiver.protocol());
        assert!(receiver.spans().is_empty());
        if transport == OtlpTransport::Http {
            assert!(!receiver.handshake_errors().is_empty());
        }
    }
}

#[test]
fn a_receiver_that_requires_a_client_certificate_refuses_an_exporter_without_one() {
    let pki = TestPki::generate("mutual");
    for transport in [OtlpTransport::Http, OtlpTransport::Grpc] {
        let receiver = receiver(transport, Security::MutualTls, &pki);
        let endpoint = receiver.endpoint();
        let ca = pki.ca_path();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", receiver.protocol()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        let line = single_failure_line(&env);
        // Over TLS 1.3 the server refuses the certificate after the client
        // has finished its handshake. The HTTP client reads the server's
        // alert (CertificateRequired); tonic reads it, or finds the
        // connection already closed, depending on timing.
        let accepted: &[&str] = match transport {
            OtlpTransport::Http => &["certificate"],
            OtlpTransport::Grpc => &["certificate", "connection"],
        };
        let cause = line["fields"]["cause"].as_str().unwrap_or_default();
        assert!(accepted.contains(&cause), "{transport:?}: {line}");
        assert!(receiver.spans().is_empty());
    }
}

#[test]
fn a_closed_port_is_reported_as_refused_with_the_endpoint_redacted() {
    let port = testkit::prometheus::free_port();
    for protocol in ["http/protobuf", "grpc"] {
        let endpoint = format!("http://user:secret@127.0.0.1:{port}");
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        let line = single_failure_line(&env);
        assert_eq!(line["fields"]["cause"], "refused", "{protocol}: {line}");
        let logged = line["fields"]["endpoint"].as_str().unwrap_or_default();
        assert!(
            logged.starts_with(&format!("http://REDACTED:REDACTED@127.0.0.1:{port}")),
            "{protocol}: {line}"
        );
        assert!(!line.to_string().contains("secret"), "{line}");
    }
}

#[test]
fn a_collector_that_never_answers_is_reported_as_a_timeout() {
    // Accepts connections and never reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("address"));
    for protocol in ["http/protobuf", "grpc"] {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        let line = single_failure_line(&env);
        assert_eq!(line["fields"]["cause"], "timeout", "{protocol}: {line}");
    }
}

#[test]
fn bad_exporter_settings_exit_2_with_one_line_naming_the_variable() {
    let pki = TestPki::generate("config");
    let not_pem = pki.dir().join("not-pem.txt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let not_pem = not_pem.to_str().expect("utf-8").to_owned();
    let https = "https://127.0.0.1:4318";
    let cases: &[testkit::ConfigErrorCase<'_>] = &[
        (
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", https),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
            ],
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "PEM file of CA certificates",
        ),
        (
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", https),
                ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &not_pem),
            ],
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "no CERTIFICATE block",
        ),
        (
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", https),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &not_pem),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &not_pem),
            ],
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "client certificate",
        ),
        (
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", https),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    &pki.client_certificate_path(),
                ),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &pki.ca_path()),
            ],
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "PRIVATE KEY",
        ),
        (
            &[],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://localhost:4318",
        ),
        (
            &[],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a\u{1b}[31mb")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "control character",
        ),
        (
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", https),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/protobuf",
        ),
    ];
    testkit::assert_config_errors("ponger", cases);
    // The same settings code serves the pinger.
    testkit::assert_config_errors("pinger", &cases[..1]);
}
