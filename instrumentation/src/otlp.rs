//! Where and how spans are exported: the standard `OTEL_EXPORTER_OTLP_*`
//! variables, checked at start-up so that a mistake ends the process with one
//! line naming the variable, rather than failing every export later.
//!
//! A `_TRACES_` variable wins over its general form, as the OpenTelemetry
//! specification asks. Spans are exported only when an endpoint is set.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod export;
mod report;

pub use export::ExportBuildError;
pub(crate) use export::build;

/// The wire protocol of the exporter (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`: `POST <endpoint>/v1/traces`, usually port 4318. The default.
    HttpProtobuf,
    /// `grpc`: the OTLP `TraceService`, usually port 4317.
    Grpc,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }

    fn example_endpoint(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http://localhost:4318",
            Self::Grpc => "http://localhost:4317",
        }
    }
}

/// A bad `OTEL_EXPORTER_OTLP_*` setting. Each message is one line that names
/// the variable and the accepted form; values are escaped and endpoints'
/// credentials left out.
#[derive(Debug, thiserror::Error)]
pub enum OtlpConfigError {
    #[error(
        "{variable}: {value:?} is not a supported protocol; expected http/protobuf (OTLP over HTTP, usually port 4318) or grpc (usually port 4317)"
    )]
    UnknownProtocol {
        variable: &'static str,
        value: String,
    },
    #[error(
        "{variable}: http/json is not supported; expected http/protobuf (every OTLP/HTTP receiver accepts it, at the same endpoint) or grpc"
    )]
    JsonProtocol { variable: &'static str },
    #[error(
        "{variable}: grpc is not supported by this build (built without the `grpc` feature); expected http/protobuf"
    )]
    GrpcNotBuilt { variable: &'static str },
    #[error("{variable}: {value:?} {problem}; expected a URL such as {example}")]
    Endpoint {
        variable: &'static str,
        value: String,
        problem: String,
        example: &'static str,
    },
    #[error(
        "{variable}: {value:?} is not a timeout; expected a positive whole number of milliseconds, such as 10000"
    )]
    Timeout {
        variable: &'static str,
        value: String,
    },
    #[error("{variable}: {value:?} is not a boolean; expected true or false")]
    Boolean {
        variable: &'static str,
        value: String,
    },
    #[error("{variable}: the value is not valid UTF-8")]
    NotUnicode { variable: &'static str },
    #[error("{variable}: cannot read {path:?}: {error}; expected the path of {expected}")]
    ReadFile {
        variable: &'static str,
        path: PathBuf,
        error: std::io::Error,
        expected: &'static str,
    },
    #[error("{variable}: {path:?} {problem}; expected {expected}")]
    Pem {
        variable: &'static str,
        path: PathBuf,
        problem: String,
        expected: &'static str,
    },
    #[error(
        "{present} is set but {missing} is not; a client certificate and its private key go together"
    )]
    HalfIdentity {
        present: &'static str,
        missing: &'static str,
    },
    #[error("{variable}: cannot set up TLS with this setting: {error}")]
    Tls {
        variable: &'static str,
        error: rustls::Error,
    },
    #[error(
        "{variable}: {endpoint} uses TLS but no trusted CA certificate was found on this system ({detail}); expected the ca-certificates package, SSL_CERT_FILE, or OTEL_EXPORTER_OTLP_CERTIFICATE naming a PEM file"
    )]
    NoTrustedRoots {
        variable: &'static str,
        endpoint: String,
        detail: String,
    },
}

/// Where spans go, and how: the checked `OTEL_EXPORTER_OTLP_*` settings.
#[derive(Debug)]
pub struct ExportSettings {
    pub protocol: OtlpProtocol,
    pub endpoint: Endpoint,
    pub timeout: Duration,
    /// Present when the endpoint is `https` (or a gRPC endpoint without a
    /// scheme and `OTEL_EXPORTER_OTLP_INSECURE` not true).
    pub tls: Option<TlsSettings>,
    /// Variables that are set but do not apply: TLS files with a plain-text
    /// endpoint, `OTEL_EXPORTER_OTLP_INSECURE` with HTTP. Worth a warning,
    /// since the person who set them expected an effect.
    pub unused: Vec<&'static str>,
}

/// A checked endpoint URL and the variable it came from.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub uri: Uri,
    pub variable: &'static str,
}

impl Endpoint {
    /// The URL as it may be logged: any user name or password replaced,
    /// the query left out (hosted backends take keys there too).
    pub fn redacted(&self) -> String {
        let scheme = self.uri.scheme_str().unwrap_or("http");
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let without_query = format!("{scheme}://{authority}{}", self.uri.path());
        crate::redact::redact_userinfo_in(&without_query).into_owned()
    }

    fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }
}

/// The TLS material for an `https` endpoint.
#[derive(Debug)]
pub struct TlsSettings {
    /// The CA certificates that verify the server: from
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` alone when it is set, otherwise the
    /// platform's trusted roots.
    pub roots: TrustedRoots,
    /// The client's certificate and key, for a collector that asks for one.
    pub identity: Option<ClientIdentity>,
}

#[derive(Debug)]
pub enum TrustedRoots {
    /// The system's roots (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    Platform(Vec<CertificateDer<'static>>),
    /// The certificates of a PEM file, and the file's text.
    File {
        certificates: Vec<CertificateDer<'static>>,
        pem: Vec<u8>,
    },
}

/// A client certificate chain and its private key, parsed and as PEM text.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The variables that named the certificate and the key.
    pub certificate_variable: &'static str,
    pub key_variable: &'static str,
}

impl std::fmt::Debug for ClientIdentity {
    /// Never the key.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .field("key_variable", &self.key_variable)
            .finish_non_exhaustive()
    }
}

/// Reads environment variables; a test passes a map instead of the process's.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process environment, for [`ExportSettings::from_env`].
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

struct Env<'a>(Lookup<'a>);

impl Env<'_> {
    /// The trimmed value of `variable`; unset and blank are both `None`.
    fn get(&self, variable: &'static str) -> Result<Option<String>, OtlpConfigError> {
        match (self.0)(variable) {
            None => Ok(None),
            Some(value) => {
                let value = value
                    .into_string()
                    .map_err(|_| OtlpConfigError::NotUnicode { variable })?;
                let value = value.trim();
                Ok((!value.is_empty()).then(|| value.to_owned()))
            }
        }
    }

    /// The first of `variables` that is set, with its name.
    fn first(
        &self,
        variables: [&'static str; 2],
    ) -> Result<Option<(&'static str, String)>, OtlpConfigError> {
        for variable in variables {
            if let Some(value) = self.get(variable)? {
                return Ok(Some((variable, value)));
            }
        }
        Ok(None)
    }
}

const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const PROTOCOL: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];
const TIMEOUT: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
];
const INSECURE: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    "OTEL_EXPORTER_OTLP_INSECURE",
];
const CERTIFICATE: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
];
const CLIENT_CERTIFICATE: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
];
const CLIENT_KEY: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
];

/// The specification's default, and what an OTLP/HTTP exporter waits for.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl ExportSettings {
    /// The export settings `lookup` describes, or `None` when no endpoint is
    /// set (spans are then created but not exported). Certificate files are
    /// read and parsed here.
    pub fn from_env(lookup: Lookup<'_>) -> Result<Option<Self>, OtlpConfigError> {
        let env = Env(lookup);
        let protocol = protocol(&env)?;
        let insecure = match env.first(INSECURE)? {
            None => false,
            Some((variable, value)) => parse_bool(variable, &value)?,
        };
        let timeout = match env.first(TIMEOUT)? {
            None => DEFAULT_TIMEOUT,
            Some((variable, value)) => match value.parse::<u64>() {
                Ok(millis) if millis > 0 => Duration::from_millis(millis),
                _ => return Err(OtlpConfigError::Timeout { variable, value }),
            },
        };
        // Certificate variables are checked even when the endpoint is plain
        // HTTP: a path that does not exist is a mistake either way.
        let mut tls_variables = Vec::new();
        let roots_file = match env.first(CERTIFICATE)? {
            None => None,
            Some((variable, path)) => {
                tls_variables.push(variable);
                Some(read_certificates(variable, path)?)
            }
        };
        let identity = client_identity(&env)?;
        if let Some(identity) = &identity {
            tls_variables.extend([identity.certificate_variable, identity.key_variable]);
        }

        let endpoint = if let Some(value) = env.get(TRACES_ENDPOINT)? {
            parse_endpoint(TRACES_ENDPOINT, &value, protocol, insecure, false)?
        } else if let Some(value) = env.get(ENDPOINT)? {
            parse_endpoint(ENDPOINT, &value, protocol, insecure, true)?
        } else {
            return Ok(None);
        };

        let mut unused = Vec::new();
        if !endpoint.is_https() {
            unused.extend(tls_variables);
        }
        if protocol != OtlpProtocol::Grpc {
            unused.extend(env.first(INSECURE)?.map(|(variable, _)| variable));
        }
        let tls = if endpoint.is_https() {
            let roots = match roots_file {
                Some((certificates, pem)) => TrustedRoots::File { certificates, pem },
                None => platform_roots(&endpoint)?,
            };
            Some(TlsSettings { roots, identity })
        } else {
            None
        };
        Ok(Some(Self {
            protocol,
            endpoint,
            timeout,
            tls,
            unused,
        }))
    }
}

fn protocol(env: &Env<'_>) -> Result<OtlpProtocol, OtlpConfigError> {
    let Some((variable, value)) = env.first(PROTOCOL)? else {
        return Ok(OtlpProtocol::HttpProtobuf);
    };
    match value.as_str() {
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "grpc" if cfg!(feature = "grpc") => Ok(OtlpProtocol::Grpc),
        "grpc" => Err(OtlpConfigError::GrpcNotBuilt { variable }),
        "http/json" => Err(OtlpConfigError::JsonProtocol { variable }),
        _ => Err(OtlpConfigError::UnknownProtocol { variable, value }),
    }
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, OtlpConfigError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(OtlpConfigError::Boolean {
            variable,
            value: value.to_owned(),
        })
    }
}

/// Checks an endpoint. `base`: the general variable's URL, to which
/// OTLP/HTTP adds `/v1/traces`; the `_TRACES_` one is used as it is. A gRPC
/// endpoint without a scheme takes `http` when `insecure`, else `https`.
fn parse_endpoint(
    variable: &'static str,
    value: &str,
    protocol: OtlpProtocol,
    insecure: bool,
    base: bool,
) -> Result<Endpoint, OtlpConfigError> {
    let error = |problem: String| OtlpConfigError::Endpoint {
        variable,
        value: crate::redact::redact_userinfo_in(value).into_owned(),
        problem,
        example: protocol.example_endpoint(),
    };
    if value.chars().any(char::is_control) {
        return Err(error("contains a control character".to_owned()));
    }
    let has_scheme = value
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#', '@']));
    let text = match (has_scheme, protocol) {
        (true, _) => value.to_owned(),
        (false, OtlpProtocol::Grpc) if insecure => format!("http://{value}"),
        (false, OtlpProtocol::Grpc) => format!("https://{value}"),
        (false, OtlpProtocol::HttpProtobuf) => {
            return Err(error("has no scheme".to_owned()));
        }
    };
    let uri: Uri = text
        .parse()
        .map_err(|parse_error| error(format!("is not a URL ({parse_error})")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(error(format!(
                "has the scheme {other}; only http and https are supported"
            )));
        }
        None => return Err(error("has no scheme".to_owned())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(error("has no host".to_owned()));
    }
    let uri = if base && protocol == OtlpProtocol::HttpProtobuf {
        let scheme = uri.scheme_str().unwrap_or("http");
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = uri.path().trim_end_matches('/');
        format!("{scheme}://{authority}{path}/v1/traces")
            .parse()
            .map_err(|parse_error| error(format!("is not a URL ({parse_error})")))?
    } else {
        uri
    };
    Ok(Endpoint { uri, variable })
}

const CA_FILE: &str = "a PEM file of CA certificates";
const CERTIFICATE_FILE: &str = "a PEM file holding the client certificate (and its chain)";
const KEY_FILE: &str = "a PEM file holding the client's private key (PKCS#8, PKCS#1 or SEC1)";

fn read_file(
    variable: &'static str,
    path: &str,
    expected: &'static str,
) -> Result<(PathBuf, Vec<u8>), OtlpConfigError> {
    let path = PathBuf::from(path);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(error) => Err(OtlpConfigError::ReadFile {
            variable,
            path,
            error,
            expected,
        }),
    }
}

/// The certificates of the PEM file at `path`: at least one.
fn read_certificates(
    variable: &'static str,
    path: String,
) -> Result<(Vec<CertificateDer<'static>>, Vec<u8>), OtlpConfigError> {
    let expected = if variable.contains("CLIENT") {
        CERTIFICATE_FILE
    } else {
        CA_FILE
    };
    let (path, pem) = read_file(variable, &path, expected)?;
    let pem_error = |problem: String| OtlpConfigError::Pem {
        variable,
        path: path.clone(),
        problem,
        expected,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(format!("is not valid PEM ({error})")))?;
    if certificates.is_empty() {
        return Err(pem_error("holds no CERTIFICATE block".to_owned()));
    }
    Ok((certificates, pem))
}

fn client_identity(env: &Env<'_>) -> Result<Option<ClientIdentity>, OtlpConfigError> {
    match (env.first(CLIENT_CERTIFICATE)?, env.first(CLIENT_KEY)?) {
        (None, None) => Ok(None),
        (Some((present, _)), None) => Err(OtlpConfigError::HalfIdentity {
            present,
            missing: CLIENT_KEY[1],
        }),
        (None, Some((present, _))) => Err(OtlpConfigError::HalfIdentity {
            present,
            missing: CLIENT_CERTIFICATE[1],
        }),
        (Some((certificate_variable, certificate_path)), Some((key_variable, key_path))) => {
            let (chain, chain_pem) = read_certificates(certificate_variable, certificate_path)?;
            let (path, key_pem) = read_file(key_variable, &key_path, KEY_FILE)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
                let problem = match error {
                    rustls::pki_types::pem::Error::NoItemsFound => {
                        "holds no PRIVATE KEY block".to_owned()
                    }
                    other => format!("is not valid PEM ({other})"),
                };
                OtlpConfigError::Pem {
                    variable: key_variable,
                    path,
                    problem,
                    expected: KEY_FILE,
                }
            })?;
            Ok(Some(ClientIdentity {
                chain,
                key,
                chain_pem,
                key_pem,
                certificate_variable,
                key_variable,
            }))
        }
    }
}

fn platform_roots(endpoint: &Endpoint) -> Result<TrustedRoots, OtlpConfigError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let detail = found
            .errors
            .first()
            .map_or_else(|| "none installed".to_owned(), ToString::to_string);
        return Err(OtlpConfigError::NoTrustedRoots {
            variable: endpoint.variable,
            endpoint: endpoint.redacted(),
            detail,
        });
    }
    Ok(TrustedRoots::Platform(found.certs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<ExportSettings>, OtlpConfigError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(key, value)| ((*key).to_owned(), OsString::from(value)))
            .collect();
        ExportSettings::from_env(&move |name| map.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        settings(vars)
            .expect_err("a configuration error")
            .to_string()
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert!(settings(&[]).expect("valid").is_none());
        assert!(
            settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
                .expect("valid")
                .is_none()
        );
    }

    #[test]
    fn the_general_endpoint_gets_the_traces_path_and_the_traces_one_is_kept() {
        let base = settings(&[(ENDPOINT, "http://collector:4318/")])
            .expect("valid")
            .expect("exporting");
        assert_eq!(base.endpoint.uri, "http://collector:4318/v1/traces");
        assert_eq!(base.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(base.timeout, Duration::from_secs(10));
        assert!(base.tls.is_none());
        let traces = settings(&[
            (ENDPOINT, "http://ignored:4318"),
            (TRACES_ENDPOINT, "http://collector:9999/custom"),
        ])
        .expect("valid")
        .expect("exporting");
        assert_eq!(traces.endpoint.uri, "http://collector:9999/custom");
        assert_eq!(traces.endpoint.variable, TRACES_ENDPOINT);
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn grpc_endpoints_are_used_as_given_and_insecure_decides_a_missing_scheme() {
        let grpc = |vars: &[(&str, &str)]| {
            let mut all = vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
            all.extend_from_slice(vars);
            settings(&all).expect("valid").expect("exporting")
        };
        let plain = grpc(&[(ENDPOINT, "http://collector:4317")]);
        assert_eq!(plain.protocol, OtlpProtocol::Grpc);
        assert_eq!(plain.endpoint.uri, "http://collector:4317/");
        let insecure = grpc(&[
            (ENDPOINT, "collector:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "TRUE"),
        ]);
        assert_eq!(insecure.endpoint.uri.scheme_str(), Some("http"));
        let secure = grpc(&[(ENDPOINT, "collector:4317")]);
        assert_eq!(secure.endpoint.uri.scheme_str(), Some("https"));
        // The traces variable wins over the general one.
        let traces_wins = grpc(&[
            (ENDPOINT, "collector:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false"),
        ]);
        assert_eq!(traces_wins.endpoint.uri.scheme_str(), Some("https"));
    }

    #[cfg(not(feature = "grpc"))]
    #[test]
    fn a_build_without_grpc_refuses_it_in_one_line() {
        let message = error(&[
            (ENDPOINT, "http://x:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert!(
            message.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL") && message.contains("http/protobuf"),
            "{message}"
        );
    }

    #[test]
    fn bad_settings_name_their_variable_and_the_accepted_form() {
        // The variables, the variable named, the accepted form quoted.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (
                &[(ENDPOINT, "ftp://x")],
                ENDPOINT,
                "only http and https are supported",
            ),
            (&[(ENDPOINT, "collector:4318")], ENDPOINT, "has no scheme"),
            (
                &[(TRACES_ENDPOINT, "http://x\u{7}y")],
                TRACES_ENDPOINT,
                "control character",
            ),
            (&[(ENDPOINT, "http://")], ENDPOINT, "http://localhost:4318"),
            (
                &[
                    (ENDPOINT, "http://x"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpcc"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/protobuf",
            ),
            (
                &[
                    (ENDPOINT, "http://x"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "http/protobuf",
            ),
            (
                &[
                    (ENDPOINT, "http://x"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
                ],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "milliseconds",
            ),
            (
                &[
                    (ENDPOINT, "http://x"),
                    ("OTEL_EXPORTER_OTLP_INSECURE", "yes"),
                ],
                "OTEL_EXPORTER_OTLP_INSECURE",
                "true or false",
            ),
            (
                &[
                    (ENDPOINT, "http://x"),
                    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
                ],
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                "PEM file of CA certificates",
            ),
            (
                &[
                    (ENDPOINT, "http://x"),
                    ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/nonexistent/key.pem"),
                ],
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ),
        ];
        for (vars, variable, accepted) in cases {
            let message = error(vars);
            assert!(message.starts_with(variable), "{vars:?}: {message}");
            assert!(message.contains(accepted), "{vars:?}: {message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn settings_that_do_not_apply_are_listed() {
        let dir = std::env::temp_dir().join(format!("otlp-unused-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = dir.join("ca.pem");
        // Any certificate parses here: the CA file's content is not checked
        // against anything when the endpoint is plain text.
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let ca = ca.to_str().expect("utf-8 path");
        let plain = settings(&[
            (ENDPOINT, "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ])
        .expect("valid")
        .expect("exporting");
        assert_eq!(
            plain.unused,
            [
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_INSECURE"
            ]
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn credentials_in_an_endpoint_never_reach_a_message() {
        let message = error(&[(ENDPOINT, "ftp://user:secret@host/")]);
        assert!(!message.contains("secret"), "{message}");
        let endpoint = settings(&[(ENDPOINT, "http://user:secret@host:4318/?key=secret")])
            .expect("valid")
            .expect("exporting")
            .endpoint;
        assert_eq!(
            endpoint.redacted(),
            "http://REDACTED:REDACTED@host:4318/v1/traces"
        );
    }

    #[test]
    fn a_file_without_pem_blocks_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("otlp-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("not-a-ca.pem");
        std::fs::write(&file, "hello\n").expect("write");
        let path = file.to_str().expect("utf-8 path");
        let message = error(&[
            (ENDPOINT, "https://x"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ignored"),
        ]);
        assert!(
            message.starts_with("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE") && message.contains(path),
            "{message}"
        );
        assert!(message.contains("no CERTIFICATE block"), "{message}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
