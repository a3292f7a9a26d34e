//! Certificates made for one test: a CA, a server certificate for
//! `127.0.0.1` and `localhost`, and a client certificate, all signed by that
//! CA and written as PEM files for `OTEL_EXPORTER_OTLP_*CERTIFICATE*`.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A test's own certificate authority and the certificates it signed.
pub struct TestPki {
    dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server_certificate_pem: String,
    pub server_key_pem: String,
    pub client_certificate_pem: String,
    pub client_key_pem: String,
}

impl TestPki {
    /// A new CA named `name`, its server and client certificates, and their
    /// files in a temporary directory (removed when this is dropped).
    pub fn generate(name: &str) -> Self {
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");

        let leaf = |names: Vec<String>, common_name: &str, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names).expect("leaf parameters");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.extended_key_usages = vec![usage];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let key = KeyPair::generate().expect("leaf key");
            let certificate = params.signed_by(&key, &ca).expect("signed by the CA");
            (certificate.pem(), key.serialize_pem())
        };
        let (server_certificate_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "testkit receiver",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_certificate_pem, client_key_pem) = leaf(
            Vec::new(),
            "testkit exporter",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pki = Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            ca_pem: ca.pem(),
            server_certificate_pem,
            server_key_pem,
            client_certificate_pem,
            client_key_pem,
        };
        for (file, text) in [
            ("ca.pem", &pki.ca_pem),
            ("client.pem", &pki.client_certificate_pem),
            ("client-key.pem", &pki.client_key_pem),
        ] {
            std::fs::write(pki.dir.path().join(file), text).expect("write a PEM file");
        }
        pki
    }

    /// For `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    pub fn ca_path(&self) -> String {
        self.path("ca.pem")
    }

    /// For `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`.
    pub fn client_certificate_path(&self) -> String {
        self.path("client.pem")
    }

    /// For `OTEL_EXPORTER_OTLP_CLIENT_KEY`.
    pub fn client_key_path(&self) -> String {
        self.path("client-key.pem")
    }

    /// The temporary directory, for more files of a test's own.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn path(&self, file: &str) -> String {
        self.dir
            .path()
            .join(file)
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_owned()
    }

    /// A rustls server configuration presenting the server certificate;
    /// with `require_client_certificate`, clients must present one this CA
    /// signed.
    pub fn server_config(&self, require_client_certificate: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if require_client_certificate {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots
                    .add(certificate.expect("CA PEM"))
                    .expect("CA certificate");
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain = CertificateDer::pem_slice_iter(self.server_certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("key PEM");
        Arc::new(
            builder
                .with_single_cert(chain, key)
                .expect("server certificate and key"),
        )
    }
}
