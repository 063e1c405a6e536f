//! TLS for `sslmode` other than `disable`, with rustls and the ring provider picked explicitly
//! (kube in the same binary also uses rustls/ring; relying on a process-wide default provider
//! would panic once two are compiled in).
//!
//! The modes mean what they mean to libpq: `prefer` and `require` encrypt without checking the
//! server's certificate unless a root certificate is configured (then `require` checks the
//! chain like `verify-ca`); `verify-ca` checks the chain; `verify-full` also checks that the
//! certificate names the host. The root certificates come from `sslrootcert`/`PGSSLROOTCERT`,
//! else `~/.postgresql/root.crt`; `system` means the operating system's store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::settings::SslMode;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("root certificate file {} does not exist: set PGSSLROOTCERT or sslrootcert (\"system\" for the OS store) for sslmode={mode}", path.display())]
    NoRootFile { path: PathBuf, mode: SslMode },
    #[error("cannot read root certificates from {}: {message}", path.display())]
    BadRoots { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

pub fn connector(mode: SslMode, root: Option<&Path>) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let default_root = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"));
    let root = match root {
        Some(r) => Some(r.to_path_buf()),
        None => default_root.filter(|p| p.exists() || matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull)),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, root) {
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => Arc::new(Unverified(provider.clone())),
        (SslMode::Prefer, Some(_)) => Arc::new(Unverified(provider.clone())),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(TlsSetupError::NoRootFile { path: PathBuf::from("~/.postgresql/root.crt"), mode });
        }
        (mode, Some(root)) => {
            let roots = Arc::new(load_roots(&root, mode)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsSetupError::BadRoots { path: root.clone(), message: e.to_string() })?;
            if mode == SslMode::VerifyFull { webpki } else { Arc::new(ChainOnly(webpki)) }
        }
    };
    let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn load_roots(path: &Path, mode: SslMode) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    if path == Path::new("system") {
        let found = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(found.certs);
    } else {
        if !path.exists() {
            return Err(TlsSetupError::NoRootFile { path: path.to_path_buf(), mode });
        }
        let bad = |message: String| TlsSetupError::BadRoots { path: path.to_path_buf(), message };
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            store.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
        }
    }
    if store.is_empty() {
        return Err(TlsSetupError::BadRoots { path: path.to_path_buf(), message: "no certificates".into() });
    }
    Ok(store)
}

/// `prefer`/`require` without a root certificate: encryption without authentication, as in
/// libpq. The handshake signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate may differ
/// from the host we dialled (WebPKI checks the chain before the name, so a name error means
/// the chain passed).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
