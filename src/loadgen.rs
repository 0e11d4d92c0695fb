//! A load generator that plays gateways: it sends correctly ring-signed relay requests (spec §2.1, §2.5) from a
//! genesis' applications — through their delegated gateway, or the app itself when it delegates to none — to the
//! suppliers of the chain's current session, over real HTTP: POSTed JSON-RPC relays ([`LoadGen::send`]) or gRPC
//! relays, `SendRelay` calls over one HTTP/2 channel carrying a call of the demo backend's `demo.Echo`
//! ([`LoadGen::send_grpc`]). Used by `localnet` and the end-to-end tests, which need to know exactly which relays
//! were served (a served relay must end up claimed).
//!
//! Every request is signed on its own (a unique JSON-RPC id, or `Echo` message): identical relay bytes would
//! collapse into one leaf (lessons.md).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use k256::ecdsa::SigningKey;
use k256::elliptic_curve::ops::Reduce as _;
use prost::Message as _;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::chain::query::ChainClient;
use crate::protocol::relay;
use crate::protocol::ring::{RingError, RingSignature};
use crate::protocol::wire::{
    HttpHeader, PoktHttpRequest, RelayRequest, RelayRequestMetadata, RelayResponse, SessionHeader,
};
use crate::relayer::grpc::{RELAY_RESPONSE_TYPE_URL, RpcStatus, SEND_RELAY_PATH, encode_frame};
use crate::sim::backend::grpc::{ECHO_PATH, EchoRequest};
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
    /// The HTTP/2 channel of gRPC relays, opened by the first one and shared by all (not one connection each).
    grpc: tokio::sync::OnceCell<Channel>,
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
            grpc: tokio::sync::OnceCell::new(),
        })
    }

    /// Who sends relay number `n` at `height`, and to whom: application `n mod apps` (through its gateway), a
    /// supplier of its session chosen round-robin. `Err` is the outcome when there is no such route.
    async fn route(&self, n: u64, height: i64) -> Result<Route<'_>, Outcome> {
        let Some(sender) = self.senders.get((n as usize) % self.senders.len().max(1)) else {
            return Err(Outcome::Failed("no application for the service".into()));
        };
        let session = match self.chain.session(&sender.app_address, &self.service_id, height).await {
            Ok(s) => s,
            Err(e) => return Err(Outcome::Failed(format!("no session: {e}"))),
        };
        let round = (n as usize) / self.senders.len().max(1);
        let Some(supplier) = session.suppliers.get(round % session.suppliers.len().max(1)) else {
            return Err(Outcome::Failed("session without suppliers".into()));
        };
        let Some(header) = session.header.clone() else {
            return Err(Outcome::Failed("session without header".into()));
        };
        Ok(Route {
            sender,
            supplier: supplier.operator_address.clone(),
            header,
        })
    }

    /// Sends relay number `n` at chain height `height`, POSTed: a JSON-RPC call, application `n mod apps`, a
    /// supplier of its session chosen round-robin.
    pub async fn send(&self, n: u64, height: i64) -> Outcome {
        let route = match self.route(n, height).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{n},\"method\":\"eth_blockNumber\",\"params\":[]}}");
        let request = match route.sign(|header, supplier, signer, ring| {
            signed_relay_request(header, supplier, "/", body.into_bytes(), signer, ring)
        }) {
            Ok(r) => r,
            Err(outcome) => return outcome,
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
                None if status.is_success() => route.served(),
                None => Outcome::Refused(format!("HTTP {status}")),
                Some(e) => Outcome::Refused(e.message),
            },
            Err(e) => Outcome::Failed(format!("HTTP {status}, undecodable response: {e}")),
        }
    }

    /// Sends relay number `n` at chain height `height` as a gRPC relay (same application and supplier as
    /// [`LoadGen::send`] would pick): `SendRelay` on the relay address over HTTP/2 with `rpc-type: 1` (poktroll's
    /// `RPCType` GRPC), its payload a unary call of the demo backend's `demo.Echo/Echo` ([`grpc_echo_payload`]).
    /// Every gRPC relay goes over one channel, opened by the first. A refused call carries its `RelayMinerError`
    /// in the status details ([`grpc_outcome`]).
    pub async fn send_grpc(&self, n: u64, height: i64) -> Outcome {
        let route = match self.route(n, height).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let payload = grpc_echo_payload(&format!("relay {n}"));
        let request = match route.sign(|header, supplier, signer, ring| {
            signed_relay_request_with_payload(header, supplier, payload.encode_to_vec(), signer, ring)
        }) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let channel = match self.grpc.get_or_try_init(|| self.connect_grpc()).await {
            Ok(c) => c.clone(),
            Err(e) => return Outcome::Failed(format!("gRPC connect: {e}")),
        };
        let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(relay::MAX_RELAY_MESSAGE_BYTES);
        if let Err(e) = client.ready().await {
            return Outcome::Failed(format!("gRPC channel: {e}"));
        }
        let mut call = tonic::Request::new(request);
        call.metadata_mut()
            .insert(RPC_TYPE_METADATA, tonic::metadata::MetadataValue::from_static("1"));
        let codec = tonic_prost::ProstCodec::<RelayRequest, RelayResponse>::default();
        let answer = client
            .unary(call, PathAndQuery::from_static(SEND_RELAY_PATH), codec)
            .await
            .map(tonic::Response::into_inner);
        match grpc_outcome(answer) {
            None => route.served(),
            Some(outcome) => outcome,
        }
    }

    /// The channel of gRPC relays: HTTP/2 cleartext to the relay address.
    async fn connect_grpc(&self) -> Result<Channel, tonic::transport::Error> {
        tonic::transport::Endpoint::from_shared(self.relay_url.clone())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
    }
}

/// Where relay number `n` goes: its sender, the supplier and the session.
struct Route<'a> {
    sender: &'a Sender,
    supplier: String,
    header: SessionHeader,
}

impl Route<'_> {
    /// The relay request `build` makes for this route, ring-signed by the sender over its application's ring.
    fn sign(
        &self,
        build: impl FnOnce(&SessionHeader, &str, &SigningKey, &[[u8; 33]]) -> Result<RelayRequest, RingError>,
    ) -> Result<RelayRequest, Outcome> {
        let ring = [self.sender.app_pubkey, self.sender.signer_pubkey];
        build(&self.header, &self.supplier, &self.sender.signer, &ring)
            .map_err(|e| Outcome::Failed(format!("ring sign: {e}")))
    }

    /// The outcome of a relay this route's supplier served.
    fn served(self) -> Outcome {
        Outcome::Served {
            supplier: self.supplier,
            session_id: self.header.session_id,
            session_end: self.header.session_end_block_height,
        }
    }
}

/// The metadata key naming the backend of a gRPC relay (the `Rpc-Type` header of POSTed ones).
const RPC_TYPE_METADATA: &str = "rpc-type";

/// The payload of a gRPC relay: a unary call of the demo backend's `demo.Echo/Echo` with `message`, as a gateway
/// forwards it (`POST /demo.Echo/Echo`, `content-type: application/grpc`, `te: trailers`, one framed
/// `EchoRequest`).
pub fn grpc_echo_payload(message: &str) -> PoktHttpRequest {
    let call = EchoRequest {
        message: message.to_string(),
        payload: Vec::new(),
    };
    grpc_call_payload(ECHO_PATH, &call.encode_to_vec())
}

/// A relay payload carrying a unary gRPC call of `path` (`/pkg.Service/Method`) with the encoded `message`, as a
/// gateway's `POKTHTTPRequest` carries one: `POST`, `content-type: application/grpc`, `te: trailers`, the message
/// framed.
pub fn grpc_call_payload(path: &str, message: &[u8]) -> PoktHttpRequest {
    PoktHttpRequest {
        method: "POST".into(),
        header: [("content-type", "application/grpc"), ("te", "trailers")]
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    HttpHeader {
                        key: k.to_string(),
                        values: vec![v.to_string()],
                    },
                )
            })
            .collect(),
        url: path.into(),
        body_bz: encode_frame(message),
    }
}

/// What a `SendRelay` call's answer means: `None` when served (a `RelayResponse` without a `RelayMinerError`);
/// else `Refused` with the `RelayMinerError` message — of the answer, or of the `RelayResponse` a refusal carries
/// in its status details (`grpc-status-details-bin`) — or `Failed` for a status without one (no answer, or not
/// the relay miner's refusal of a relay).
pub fn grpc_outcome(answer: Result<RelayResponse, tonic::Status>) -> Option<Outcome> {
    match answer {
        Ok(response) => response.relay_miner_error.map(|e| Outcome::Refused(e.message)),
        Err(status) => {
            let refusal = RpcStatus::decode(status.details())
                .ok()
                .into_iter()
                .flat_map(|s| s.details)
                .filter(|d| d.type_url == RELAY_RESPONSE_TYPE_URL)
                .find_map(|d| relay::decode_relay_response(&d.value, relay::MAX_RELAY_MESSAGE_BYTES).ok())
                .and_then(|r| r.relay_miner_error);
            Some(match refusal {
                Some(e) => Outcome::Refused(e.message),
                None => Outcome::Failed(format!("gRPC {:?}: {}", status.code(), status.message())),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::wire::RelayMinerError;
    use crate::relayer::grpc::{Any, decode_unary};

    fn refusal(message: &str) -> RelayResponse {
        RelayResponse {
            relay_miner_error: Some(RelayMinerError {
                codespace: "relayer".into(),
                code: 4,
                description: "bad_ring_signature".into(),
                message: message.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_grpc_answer_is_served_refused_with_its_relay_miner_error_or_failed() {
        assert_eq!(grpc_outcome(Ok(RelayResponse::default())), None);
        assert_eq!(
            grpc_outcome(Ok(refusal("in the answer"))),
            Some(Outcome::Refused("in the answer".into()))
        );
        // A refusal as the relayer sends it: the RelayResponse inside grpc-status-details-bin.
        let details = RpcStatus {
            code: 7,
            message: "bad ring signature".into(),
            details: vec![Any {
                type_url: RELAY_RESPONSE_TYPE_URL.into(),
                value: relay::encode_relay_response(&refusal("ring signature does not verify")),
            }],
        };
        let status = tonic::Status::with_details(
            tonic::Code::PermissionDenied,
            "bad ring signature",
            details.encode_to_vec().into(),
        );
        assert_eq!(
            grpc_outcome(Err(status)),
            Some(Outcome::Refused("ring signature does not verify".into()))
        );
        // No RelayMinerError (no answer at all, or another method refused): failed, not a relay refusal.
        for status in [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::unimplemented("unknown method"),
            tonic::Status::with_details(tonic::Code::Internal, "garbage", vec![0xff, 0x01].into()),
        ] {
            assert!(
                matches!(grpc_outcome(Err(status.clone())), Some(Outcome::Failed(_))),
                "{status:?}"
            );
        }
    }

    #[test]
    fn the_grpc_payload_is_one_framed_echo_call() {
        let payload = grpc_echo_payload("relay 7");
        assert_eq!(payload.method, "POST");
        assert_eq!(payload.url, ECHO_PATH);
        let header = |k: &str| payload.header.get(k).map(|h| (h.key.as_str(), h.values.clone()));
        assert_eq!(
            header("content-type"),
            Some(("content-type", vec!["application/grpc".to_string()]))
        );
        assert_eq!(header("te"), Some(("te", vec!["trailers".to_string()])));
        let message = decode_unary(&payload.body_bz, None, 1 << 20).unwrap();
        assert_eq!(EchoRequest::decode(message.as_slice()).unwrap().message, "relay 7");
    }
}
