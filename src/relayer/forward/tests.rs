//! Tests of module `forward` against real loopback backends.

#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::super::{Relayer, ServiceRoute};
use super::Forwarded;
use crate::chain::query::ChainClient;
use crate::protocol::wire::PoktHttpRequest;
use crate::telemetry::Telemetry;

const ORIGIN: super::Origin<'static> = super::Origin {
    supplier: "pokt1supplier",
    application: "pokt1app",
};

/// The whole answer of a forwarded relay (none of these backends streams).
fn whole(forwarded: Forwarded) -> crate::protocol::wire::PoktHttpResponse {
    match forwarded {
        Forwarded::Whole(r) => r,
        Forwarded::Stream(head) => panic!("streamed: {head:?}"),
    }
}

/// Serves `router` on a free loopback port; its URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A backend recording the request target of every request it gets.
async fn recording_backend() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let router = axum::Router::new().fallback(move |uri: http::Uri| {
        let s = Arc::clone(&s);
        async move {
            s.lock().unwrap().push(uri.to_string());
            "ok"
        }
    });
    (serve(router).await, seen)
}

fn relayer(url: &str) -> Arc<Relayer> {
    relayer_with_limit(url, 1 << 20)
}

fn relayer_with_limit(url: &str, max_body_bytes: usize) -> Arc<Relayer> {
    let chain = Arc::new(ChainClient::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap());
    let (_tx, rx) = watch::channel(0);
    let telemetry = Telemetry::new().unwrap();
    let services: HashMap<_, _> = [(
        "svc".to_string(),
        ServiceRoute {
            backend_url: url.to_string(),
            timeout: Duration::from_secs(5),
            max_body_bytes,
        },
    )]
    .into();
    let mem = storage::MemoryBackend::new().storage();
    Arc::new(
        Relayer::new(
            chain,
            crate::keys::Keyring::default(),
            services,
            mem.relay_log,
            rx,
            &telemetry,
        )
        .unwrap(),
    )
}

/// A relayer of a whole config (`services.svc` and whatever `http_transport` keys the test sets).
fn relayer_from_yaml(yaml: &str) -> Relayer {
    let config = crate::config::Config::from_yaml(yaml).unwrap();
    assert_eq!(config.validate(), vec![]);
    let services = super::super::routes::services_from_config(&config).unwrap();
    let chain = Arc::new(ChainClient::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap());
    let (_tx, rx) = watch::channel(0);
    let telemetry = Telemetry::new().unwrap();
    let mem = storage::MemoryBackend::new().storage();
    Relayer::with_services(
        chain,
        crate::keys::Keyring::default(),
        services,
        super::super::RelayerOptions::default(),
        &mem,
        rx,
        &telemetry,
    )
    .unwrap()
}

/// PATH and shannon-sdk put `http.Request.URL.String()` (absolute: the supplier's public URL) in
/// `POKTHTTPRequest.url`; only its path and query reach the backend, joined onto the backend URL's own.
#[tokio::test]
async fn an_absolute_payload_url_reaches_the_backend_as_path_and_query() {
    let (url, seen) = recording_backend().await;
    let r = relayer(&format!("{url}/v2/KEY?apikey=s3cret"));
    let service = Arc::clone(&r.services["svc"]);
    let (backend, _) = service.backend(None);
    for (relay_url, want) in [
        (
            "https://relayminer.example.com/v1/rest?x=1",
            "/v2/KEY/v1/rest?apikey=s3cret&x=1",
        ),
        ("https://relayminer.example.com", "/v2/KEY?apikey=s3cret"),
        ("/", "/v2/KEY?apikey=s3cret"),
        ("/v1", "/v2/KEY/v1?apikey=s3cret"),
    ] {
        let payload = PoktHttpRequest {
            method: "POST".into(),
            url: relay_url.into(),
            ..Default::default()
        };
        let answer = whole(r.forward(&service, backend, payload, ORIGIN, true).await.unwrap());
        assert_eq!(answer.status_code, 200);
        assert_eq!(seen.lock().unwrap().pop().as_deref(), Some(want), "{relay_url}");
    }
    let bad = PoktHttpRequest {
        url: "/a%zz".into(),
        ..Default::default()
    };
    let err = r.forward(&service, backend, bad, ORIGIN, true).await.unwrap_err();
    assert_eq!(err.code().1, "malformed", "{err}");
    assert!(seen.lock().unwrap().is_empty());
}

/// The backend is told who the relay is for (`Pocket-*`, the gateway's own values replaced) and asked for no
/// content encoding; one it compresses anyway reaches the gateway decoded, within the body limit.
#[tokio::test]
async fn backends_get_the_pocket_context_and_compressed_answers_are_decoded() {
    use std::io::Write as _;
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let s = Arc::clone(&seen);
    let router = axum::Router::new().fallback(move |uri: http::Uri, headers: http::HeaderMap| {
        let s = Arc::clone(&s);
        async move {
            s.lock().unwrap().push(headers);
            let text = format!("answer to {}", uri.path()).repeat(50);
            let (encoding, body) = match uri.path() {
                "/gzip" => {
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(text.as_bytes()).unwrap();
                    ("gzip", e.finish().unwrap())
                }
                "/deflate" => {
                    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(text.as_bytes()).unwrap();
                    ("deflate", e.finish().unwrap())
                }
                "/br" => ("br", b"opaque".to_vec()),
                "/empty" => ("gzip", Vec::new()),
                "/sse" => {
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(b"data: tick\n\n").unwrap();
                    let sse = [
                        (http::header::CONTENT_ENCODING, "gzip"),
                        (http::header::CONTENT_TYPE, "text/event-stream"),
                    ];
                    return (sse, e.finish().unwrap());
                }
                _ => ("identity", text.into_bytes()),
            };
            (
                [
                    (http::header::CONTENT_ENCODING, encoding),
                    (http::header::CONTENT_TYPE, "text/plain"),
                ],
                body,
            )
        }
    });
    let url = serve(router).await;
    let r = relayer(&url);
    let service = Arc::clone(&r.services["svc"]);
    let (backend, _) = service.backend(None);
    let request = |path: &str| PoktHttpRequest {
        method: "GET".into(),
        url: path.into(),
        header: [("Accept-Encoding", "gzip, br"), ("Pocket-Application", "pokt1spoofed")]
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    crate::protocol::wire::HttpHeader {
                        key: k.to_string(),
                        values: vec![v.to_string()],
                    },
                )
            })
            .collect(),
        ..Default::default()
    };
    for path in ["/gzip", "/deflate"] {
        let answer = whole(r.forward(&service, backend, request(path), ORIGIN, true).await.unwrap());
        assert_eq!(
            answer.body_bz,
            format!("answer to {path}").repeat(50).into_bytes(),
            "{path}"
        );
        assert!(
            !answer.header.contains_key("content-encoding"),
            "{path}: {:?}",
            answer.header
        );
        assert!(!answer.header.contains_key("content-length"), "{path}");
    }
    // An empty body marked compressed (a 204, a HEAD) is an empty body, not a decoding error.
    let answer = whole(
        r.forward(&service, backend, request("/empty"), ORIGIN, true)
            .await
            .unwrap(),
    );
    assert!(answer.body_bz.is_empty());
    assert!(!answer.header.contains_key("content-encoding"));
    // A stream compressed anyway is read whole and decoded, not relayed as batches of compressed bytes.
    let answer = whole(
        r.forward(&service, backend, request("/sse"), ORIGIN, true)
            .await
            .unwrap(),
    );
    assert_eq!(answer.body_bz, b"data: tick\n\n");
    // An encoding it cannot decode is passed on as sent.
    let answer = whole(
        r.forward(&service, backend, request("/br"), ORIGIN, true)
            .await
            .unwrap(),
    );
    assert_eq!(answer.body_bz, b"opaque");
    assert_eq!(answer.header["content-encoding"].values, ["br"]);
    for headers in seen.lock().unwrap().iter() {
        assert_eq!(headers.get("accept-encoding"), None);
        assert_eq!(headers["pocket-supplier"], "pokt1supplier");
        assert_eq!(headers["pocket-service"], "svc");
        assert_eq!(headers["pocket-application"], "pokt1app");
    }
    // Decoded past the body limit: refused, as an answer over the limit is.
    let small = relayer_with_limit(&url, 100);
    let service = Arc::clone(&small.services["svc"]);
    let err = small
        .forward(&service, service.backend(None).0, request("/gzip"), ORIGIN, true)
        .await
        .unwrap_err();
    assert_eq!(err.code().1, "response_too_large", "{err}");
}

/// Go's "0 = no limit" in `http_transport`: relays reach the backend instead of failing "within 0ns".
#[tokio::test]
async fn transport_zeros_let_relays_through() {
    let (url, seen) = recording_backend().await;
    let yaml = format!(
        "http_transport:
  response_header_timeout_seconds: 0
  dial_timeout_seconds: 0
  max_conns_per_host: 0
  idle_conn_timeout_seconds: 0
  tcp_keep_alive_seconds: 0
services:
  svc:
    backends:
      jsonrpc: {{url: {url}}}
"
    );
    let r = relayer_from_yaml(&yaml);
    let service = Arc::clone(&r.services["svc"]);
    for _ in 0..2 {
        let answer = whole(
            r.forward(
                &service,
                service.backend(None).0,
                PoktHttpRequest::default(),
                ORIGIN,
                true,
            )
            .await
            .unwrap(),
        );
        assert_eq!(answer.status_code, 200);
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// An `https` backend (third-party RPC providers): TLS with the certificate verified against the roots plus
/// `http_transport.tls_ca_file`; without the CA the relay is a backend error, never plaintext.
#[tokio::test]
async fn https_backends_speak_tls_and_verify_the_certificate() {
    let router = axum::Router::new().fallback(|uri: http::Uri| async move { format!("tls {uri}") });
    let (pem, server) = crate::chain::tls::testing::self_signed(&[b"http/1.1"]);
    let port = crate::chain::tls::testing::serve_tls(router, server).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let relayer_for = |ca_line: String| {
        let yaml = format!(
            "http_transport:\n{ca_line}services:\n  svc:\n    backends:\n      jsonrpc: {{url: \"https://localhost:{port}/v2/KEY\"}}\n"
        );
        relayer_from_yaml(&yaml)
    };
    let payload = || PoktHttpRequest {
        url: "https://relayminer.example.com/v1".into(),
        ..Default::default()
    };
    let r = relayer_for(format!("  tls_ca_file: {}\n", ca.display()));
    let service = Arc::clone(&r.services["svc"]);
    let answer = whole(
        r.forward(&service, service.backend(None).0, payload(), ORIGIN, true)
            .await
            .unwrap(),
    );
    assert_eq!(answer.status_code, 200);
    assert_eq!(answer.body_bz, b"tls /v2/KEY/v1");
    let r = relayer_for("  max_conns_per_host: 10\n".into());
    let service = Arc::clone(&r.services["svc"]);
    let err = r
        .forward(&service, service.backend(None).0, payload(), ORIGIN, true)
        .await
        .unwrap_err();
    assert_eq!(err.code().1, "backend_error", "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}
