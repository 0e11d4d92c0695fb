//! `RELAYER_BENCH_FLOOR`: a proxy in the relayer's place that does none of its work but takes the same hops (the
//! backend call, the durable append of a mined relay the miner ingests), so the bench can show the latency floor
//! of this topology on this host.

use super::*;

/// The floor proxy of `RELAYER_BENCH_FLOOR` (see there); returns its URL.
pub(super) async fn floor_proxy(
    backend_url: String,
    store: storage::Storage,
    supplier: String,
    header: relay_miner::protocol::wire::SessionHeader,
    durable: bool,
) -> String {
    use prost::Message as _;
    #[derive(Clone)]
    struct Floor {
        http: Client,
        echo: String,
        store: storage::Storage,
        supplier: String,
        header: relay_miner::protocol::wire::SessionHeader,
        durable: bool,
    }
    async fn handle(
        axum::extract::State(f): axum::extract::State<Arc<Floor>>,
        body: bytes::Bytes,
    ) -> (http::StatusCode, bytes::Bytes) {
        let request = http::Request::post(&f.echo)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(body.clone()))
            .unwrap();
        let response = f.http.request(request).await.unwrap();
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&answer[..answer.len().min(64)]);
        let hash = sha256(&bytes);
        let message = relay_miner::protocol::wire::MinedRelayMessage {
            relay_hash: hash.to_vec(),
            relay_bytes: bytes,
            compute_units_per_relay: 10,
            session_id: f.header.session_id.clone(),
            session_end_height: f.header.session_end_block_height,
            supplier_operator_address: f.supplier.clone(),
            service_id: f.header.service_id.clone(),
            application_address: f.header.application_address.clone(),
            arrival_block_height: f.header.session_start_block_height,
            published_at_unix_nano: 0,
            session_start_height: f.header.session_start_block_height,
        };
        let mined = storage::MinedRelay {
            supplier: f.supplier.clone(),
            session_id: f.header.session_id.clone(),
            session_end_height: f.header.session_end_block_height as u64,
            relay_hash: hash.to_vec(),
            payload: message.encode_to_vec(),
        };
        if f.durable {
            f.store.relay_log.append(vec![mined]).await.unwrap();
        } else {
            let store = f.store.clone();
            tokio::spawn(async move { store.relay_log.append(vec![mined]).await.unwrap() });
        }
        (http::StatusCode::OK, answer)
    }
    let http: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build_http();
    let floor = Arc::new(Floor {
        http,
        echo: format!("{backend_url}/v1/echo"),
        store,
        supplier,
        header,
        durable,
    });
    let router = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}
