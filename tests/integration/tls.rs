//! A test PKI: a CA made for one test and a server certificate it signs, as PEM files in
//! a private directory, for the TLS-serving simulated gorouter (`cf-sim
//! --router-tls-cert/--router-tls-key`), the gateway's `--scrape-ca-file` and test
//! upstreams.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA and one server certificate it signed, with their files.
pub struct TestPki {
    _dir: tempfile::TempDir,
    /// The CA's certificate (what a client trusts).
    pub ca_file: PathBuf,
    /// The server's certificate chain (leaf, then the CA).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    /// A fresh CA named `ca_name` and a certificate for `names` (DNS names, wildcards and
    /// IP addresses) signed by it.
    pub fn new(ca_name: &str, names: &[&str]) -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        let cert = params.signed_by(&key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server-key.pem");
        let cert_pem = format!("{}{}", cert.pem(), ca.pem());
        let key_pem = key.serialize_pem();
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, &cert_pem).unwrap();
        std::fs::write(&key_file, &key_pem).unwrap();
        TestPki {
            _dir: dir,
            ca_file,
            cert_file,
            key_file,
            cert_pem,
            key_pem,
        }
    }

    /// The PKI of a platform whose routes are `*.apps.example.com` (cf-sim's default apps
    /// domain) and which is reached on loopback.
    pub fn platform() -> TestPki {
        TestPki::new(
            "gds-prometheus test CA",
            &[
                "*.apps.example.com",
                "apps.example.com",
                "localhost",
                "127.0.0.1",
            ],
        )
    }

    /// `--router-tls-cert PATH --router-tls-key PATH` for cf-sim.
    pub fn router_args(&self) -> Vec<String> {
        vec![
            "--router-tls-cert".into(),
            self.cert_file.display().to_string(),
            "--router-tls-key".into(),
            self.key_file.display().to_string(),
        ]
    }

    /// A rustls server configuration with the certificate (aws-lc-rs, HTTP/1.1).
    pub fn server_config(&self) -> rustls::ServerConfig {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}
