//! TLS for outgoing connections: `https` backends, the node's `https` gRPC and CometBFT RPC (and its `wss`
//! new-block websocket). rustls with the `ring` provider only (no aws-lc-rs: it builds offline with a C compiler).
//!
//! Trusted roots: the system's certificate store (what Go's `crypto/x509` uses, `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! honoured), plus Mozilla's roots built in (`webpki-roots`, so a minimal container image without a CA bundle still
//! reaches public endpoints), plus the PEM certificates of an optional CA file (`http_transport.tls_ca_file` for
//! backends, `pocket_node.tls_ca_file` for the node) for private CAs or self-signed endpoints. Certificates and host
//! names are always verified; there is no switch to turn that off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// A TCP connector that speaks TLS for `https` URIs and plain HTTP for `http` ones.
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Errors building a TLS client configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read TLS CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("TLS CA file {path}: {problem}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Which application protocol a TLS connection negotiates (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1 only (backends, CometBFT RPC and websocket): one request per connection at a time, so
    /// `max_conns_per_host` keeps its Go meaning.
    Http1,
    /// HTTP/2 only (gRPC).
    H2,
}

/// The `ring` provider. rustls 0.23.48 deprecates it for lacking post-quantum key exchange (X25519MLKEM768, only
/// in the aws-lc-rs provider); aws-lc-rs needs a much larger C build, so relay-miner stays on ring: classic
/// X25519/P-256 key exchange, as Go's TLS stack used before 1.24.
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Installs the `ring` provider as the process default (needed by libraries that build their own rustls
/// configs, e.g. the Redis client for `rediss://`). Idempotent.
pub fn install_default_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err means a provider is already installed; either way one is.
        let _ = provider().install_default();
    });
}

/// The system roots plus Mozilla's, loaded once per process (reading the system store touches the disk).
fn base_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        for e in native.errors {
            tracing::debug!(error = %e, "a system CA certificate could not be loaded");
        }
        tracing::debug!(added, ignored, "system CA certificates loaded");
        roots
    })
}

/// The PEM certificates of `path`.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |problem: String| TlsError::BadCa {
        path: path.to_path_buf(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A client configuration trusting the base roots and those of `ca_file`, negotiating `alpn`.
pub fn client_config(ca_file: Option<&Path>, alpn: Alpn) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    install_default_provider();
    let mut roots = base_roots().clone();
    if let Some(path) = ca_file {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsError::BadCa {
                path: path.to_path_buf(),
                problem: format!("not a CA certificate: {e}"),
            })?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCa {
            path: ca_file.map(Path::to_path_buf).unwrap_or_default(),
            problem: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match alpn {
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::H2 => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(config))
}

/// Wraps `http` (its timeouts, keep-alive, nodelay already set) to speak TLS to `https` URIs with `tls`; `http`
/// URIs stay plain unless `https_only`.
pub fn https_connector(mut http: HttpConnector, tls: &Arc<rustls::ClientConfig>, https_only: bool) -> HttpsConnector {
    http.enforce_http(false);
    // hyper-rustls sets ALPN itself from the protocols enabled below.
    let mut config = rustls::ClientConfig::clone(tls);
    let h2 = config.alpn_protocols.iter().any(|p| p.as_slice() == b"h2");
    config.alpn_protocols.clear();
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config);
    let builder = if https_only {
        builder.https_only()
    } else {
        builder.https_or_http()
    };
    if h2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A self-signed certificate for `localhost` / `127.0.0.1` and a TLS acceptor with it, for tests.
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    /// A self-signed certificate (its PEM) and a rustls server config serving it with `alpn`.
    pub(crate) fn self_signed(alpn: &[&[u8]]) -> (String, Arc<rustls::ServerConfig>) {
        super::install_default_provider();
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert_pem = key.cert.pem();
        let der = key.cert.der().clone();
        let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(super::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key_der)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        (cert_pem, Arc::new(config))
    }

    /// Serves `router` over TLS (`config`) on a free 127.0.0.1 port; returns the port.
    pub(crate) async fn serve_tls(router: axum::Router, config: Arc<rustls::ServerConfig>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let router = router.clone();
                        async move {
                            use tower::ServiceExt as _;
                            router.oneshot(request.map(axum::body::Body::new)).await
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        port
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            client_config(Some(&missing), Alpn::Http1),
            Err(TlsError::ReadCa { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            client_config(Some(&empty), Alpn::Http1),
            Err(TlsError::BadCa { .. })
        ));
        let (pem, _) = testing::self_signed(&[]);
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, pem).unwrap();
        let config = client_config(Some(&good), Alpn::H2).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
