//! A throwaway certificate authority for TLS tests (rcgen, ring keys).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A self-signed CA and one leaf certificate it signed for `localhost` and `127.0.0.1`.
pub struct TestCa {
    /// The CA certificate, PEM (what a client is told to trust: lwproxy's and lwhost's
    /// `--extra-ca`).
    pub ca_pem: PathBuf,
    /// The leaf certificate, PEM (a server's `--tls-cert`).
    pub cert_pem: PathBuf,
    /// The leaf's private key, PKCS#8 PEM (a server's `--tls-key`).
    pub key_pem: PathBuf,
    /// A rustls server configuration presenting the leaf (ring provider, default versions).
    pub server_config: Arc<rustls::ServerConfig>,
    /// The directory of [`TestCa::temp`], removed when this is dropped.
    _dir: Option<crate::TempDir>,
}

impl TestCa {
    /// Makes the CA (common name `name`) and the leaf, with fresh keys, and writes `ca.pem`,
    /// `cert.pem` and `key.pem` into `dir`.
    pub fn new(dir: &Path, name: &str) -> Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?
            .signed_by(&leaf_key, &ca)?;
        let (ca_pem, cert_pem, key_pem) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
        for (path, text) in [
            (&ca_pem, ca.pem()),
            (&cert_pem, leaf.pem()),
            (&key_pem, leaf_key.serialize_pem()),
        ] {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("the leaf key: {e}"))?;
        let server_config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key)?;
        Ok(TestCa {
            ca_pem,
            cert_pem,
            key_pem,
            server_config: Arc::new(server_config),
            _dir: None,
        })
    }

    /// As [`TestCa::new`], in a fresh [`crate::TempDir`] that lives (and is removed) with the
    /// returned value: keep it as long as the files are read.
    pub fn temp(name: &str) -> Result<TestCa> {
        let dir = crate::TempDir::new("ca")?;
        let mut ca = TestCa::new(dir.path(), name)?;
        ca._dir = Some(dir);
        Ok(ca)
    }
}
