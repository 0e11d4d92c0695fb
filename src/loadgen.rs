//! A load generator that plays gateways: it sends correctly ring-signed relay requests (spec §2.1, §2.5) from a
//! genesis' applications — through their delegated gateway, or the app itself when it delegates to none — to the
//! suppliers of the chain's current session, over real HTTP. Used by `localnet` and the end-to-end tests, which
//! need to know exactly which relays were served (a served relay must end up claimed).
//!
//! Every request is signed on its own (a unique JSON-RPC id): identical relay bytes would collapse into one leaf
//! (lessons.md).

use std::sync::Arc;

use http_body_util::BodyExt as _;
use k256::ecdsa::SigningKey;
use k256::elliptic_curve::ops::Reduce as _;
use prost::Message as _;

use crate::chain::query::ChainClient;
use crate::protocol::relay;
use crate::protocol::ring::{RingError, RingSignature};
use crate::protocol::wire::{HttpHeader, PoktHttpRequest, RelayRequest, RelayRequestMetadata, SessionHeader};
use crate::sim::chain::{Genesis, actor};

/// A relay request for `supplier` in the session of `header`: a JSON POST of `body` to `url`, ring-signed by
/// `signer` over `ring` (spec §2.1, §2.5). Gateways, tests and benches build their requests with it.
pub fn signed_relay_request(
    header: &SessionHeader,
    supplier: &str,
    url: &str,
    body: Vec<u8>,
    signer: &SigningKey,
    ring: &[[u8; 33]],
) -> Result<RelayRequest, RingError> {
    let payload = PoktHttpRequest {
        method: "POST".into(),
        header: [(
            "content-type".to_string(),
            HttpHeader {
                key: "content-type".into(),
                values: vec!["application/json".into()],
            },
        )]
        .into(),
        url: url.into(),
        body_bz: body,
    };
    signed_relay_request_with_payload(header, supplier, payload.encode_to_vec(), signer, ring)
}

/// A relay request carrying `payload` as it is (a WebSocket relay's raw message, spec §2.7), ring-signed by
/// `signer`, a member of `ring`.
pub fn signed_relay_request_with_payload(
    header: &SessionHeader,
    supplier: &str,
    payload: Vec<u8>,
    signer: &SigningKey,
    ring: &[[u8; 33]],
) -> Result<RelayRequest, RingError> {
    let mut request = RelayRequest {
        meta: Some(RelayRequestMetadata {
            session_header: Some(header.clone()),
            signature: vec![],
            supplier_operator_address: supplier.to_string(),
        }),
        payload,
    };
    let secret = k256::Scalar::reduce(&signer.to_bytes());
    let signature = RingSignature::sign(ring, &relay::request_signable_hash(&request), &secret)?;
    if let Some(meta) = request.meta.as_mut() {
        meta.signature = signature.to_bytes();
    }
    Ok(request)
}

/// The result of one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Served: the relay miner answered with a signed response.
    Served {
        /// Supplier that served it.
        supplier: String,
        /// Session id of the request.
        session_id: String,
        /// Session end height.
        session_end: i64,
    },
    /// The relay miner refused it (its `RelayMinerError` message).
    Refused(String),
    /// No answer (connection refused, timeout, no session).
    Failed(String),
}

/// Errors building the generator.
#[derive(Debug, thiserror::Error)]
pub enum LoadGenError {
    /// A genesis key is invalid.
    #[error("genesis: {0}")]
    Genesis(String),
}

struct Sender {
    app_address: String,
    app_pubkey: [u8; 33],
    signer: SigningKey,
    signer_pubkey: [u8; 33],
}

/// Sends relays for one service.
pub struct LoadGen {
    chain: Arc<ChainClient>,
    relay_url: String,
    service_id: String,
    senders: Vec<Sender>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl LoadGen {
    /// A generator for `genesis`' applications staked for `service_id`, sending to `relay_url`.
    pub fn new(
        genesis: &Genesis,
        chain: Arc<ChainClient>,
        relay_url: &str,
        service_id: &str,
    ) -> Result<Self, LoadGenError> {
        let err = |e: crate::sim::chain::genesis::GenesisError| LoadGenError::Genesis(e.to_string());
        let gateways: Vec<_> = genesis
            .gateways
            .iter()
            .map(|g| actor(&g.key_hex))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut senders = Vec::new();
        for app in genesis
            .applications
            .iter()
            .filter(|a| a.services.iter().any(|s| s == service_id))
        {
            let (app_key, app_address, app_pubkey) = actor(&app.key_hex).map_err(err)?;
            let (signer, signer_pubkey) = match app.delegate_to.first().and_then(|g| gateways.get(*g)) {
                Some((key, _, pubkey)) => (key.clone(), *pubkey),
                None => (app_key, app_pubkey),
            };
            senders.push(Sender {
                app_address,
                app_pubkey,
                signer,
                signer_pubkey,
            });
        }
        let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        Ok(Self {
            chain,
            relay_url: relay_url.to_string(),
            service_id: service_id.to_string(),
            senders,
            http,
        })
    }

    /// Sends relay number `n` at chain height `height`: application `n mod apps`, a supplier of its session
    /// chosen round-robin.
    pub async fn send(&self, n: u64, height: i64) -> Outcome {
        let Some(sender) = self.senders.get((n as usize) % self.senders.len().max(1)) else {
            return Outcome::Failed("no application for the service".into());
        };
        let session = match self.chain.session(&sender.app_address, &self.service_id, height).await {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(format!("no session: {e}")),
        };
        let round = (n as usize) / self.senders.len().max(1);
        let Some(supplier) = session.suppliers.get(round % session.suppliers.len().max(1)) else {
            return Outcome::Failed("session without suppliers".into());
        };
        let Some(header) = session.header.clone() else {
            return Outcome::Failed("session without header".into());
        };
        let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{n},\"method\":\"eth_blockNumber\",\"params\":[]}}");
        let ring = [sender.app_pubkey, sender.signer_pubkey];
        let request = match signed_relay_request(
            &header,
            &supplier.operator_address,
            "/",
            body.into_bytes(),
            &sender.signer,
            &ring,
        ) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("ring sign: {e}")),
        };
        let body = relay::encode_relay_request(&request);
        let post = match http::Request::post(&self.relay_url)
            .header("content-type", "application/x-protobuf")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let response = match self.http.request(post).await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let status = response.status();
        let bytes = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Outcome::Failed(format!("response body: {e}")),
        };
        match relay::decode_relay_response(&bytes, relay::MAX_RELAY_MESSAGE_BYTES) {
            Ok(r) => match r.relay_miner_error {
                None if status.is_success() => Outcome::Served {
                    supplier: supplier.operator_address.clone(),
                    session_id: header.session_id,
                    session_end: header.session_end_block_height,
                },
                None => Outcome::Refused(format!("HTTP {status}")),
                Some(e) => Outcome::Refused(e.message),
            },
            Err(e) => Outcome::Failed(format!("HTTP {status}, undecodable response: {e}")),
        }
    }
}
