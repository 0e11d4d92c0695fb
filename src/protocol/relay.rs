//! Relay hashing (§2.1–2.3): the request signable hash the ring signs, the response signable hash the supplier
//! signs, the relay bytes that go into the trie and the proof, and the relay hash (trie key and difficulty hash).
//!
//! Every hash is computed over the canonical (gogoproto-compatible) re-encoding of the *decoded* message, never
//! over received bytes (§1.1): unknown fields are dropped on decode, exactly as the chain drops them.

use prost::Message as _;

use super::sha256;
use super::wire::{Relay, RelayRequest, RelayRequestMetadata, RelayResponse, RelayResponseMetadata, SessionHeader};

/// Largest relay message the decoders accept (requests and responses carry whole backend payloads).
pub const MAX_RELAY_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why relay bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayDecodeError {
    /// Larger than the limit.
    #[error("relay message of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit applied.
        limit: usize,
    },
    /// Not a valid protobuf encoding of the message.
    #[error("malformed {message}: {reason}")]
    Malformed {
        /// Which message.
        message: &'static str,
        /// The decoder's reason.
        reason: String,
    },
}

fn check_len(bytes: &[u8], limit: usize) -> Result<(), RelayDecodeError> {
    if bytes.len() > limit {
        Err(RelayDecodeError::TooLarge {
            len: bytes.len(),
            limit,
        })
    } else {
        Ok(())
    }
}

/// Decodes a `RelayRequest` (at most `limit` bytes) and normalizes it: `meta` is always present.
pub fn decode_relay_request(bytes: &[u8], limit: usize) -> Result<RelayRequest, RelayDecodeError> {
    check_len(bytes, limit)?;
    let mut request = RelayRequest::decode(bytes).map_err(|e| RelayDecodeError::Malformed {
        message: "RelayRequest",
        reason: e.to_string(),
    })?;
    request.meta.get_or_insert_with(RelayRequestMetadata::default);
    Ok(request)
}

/// Decodes a `RelayResponse` (at most `limit` bytes) and normalizes it: `meta` is always present.
pub fn decode_relay_response(bytes: &[u8], limit: usize) -> Result<RelayResponse, RelayDecodeError> {
    check_len(bytes, limit)?;
    let mut response = RelayResponse::decode(bytes).map_err(|e| RelayDecodeError::Malformed {
        message: "RelayResponse",
        reason: e.to_string(),
    })?;
    response.meta.get_or_insert_with(RelayResponseMetadata::default);
    Ok(response)
}

/// Decodes relay bytes (e.g. out of a proof leaf) into a `Relay`.
pub fn decode_relay(bytes: &[u8], limit: usize) -> Result<Relay, RelayDecodeError> {
    check_len(bytes, limit)?;
    let mut relay = Relay::decode(bytes).map_err(|e| RelayDecodeError::Malformed {
        message: "Relay",
        reason: e.to_string(),
    })?;
    if let Some(req) = relay.req.as_mut() {
        req.meta.get_or_insert_with(RelayRequestMetadata::default);
    }
    if let Some(res) = relay.res.as_mut() {
        res.meta.get_or_insert_with(RelayResponseMetadata::default);
    }
    Ok(relay)
}

/// Canonical encoding of a request: `meta` always emitted (non-nullable in gogoproto, §1.1).
pub fn encode_relay_request(request: &RelayRequest) -> Vec<u8> {
    if request.meta.is_some() {
        request.encode_to_vec()
    } else {
        RelayRequest {
            meta: Some(RelayRequestMetadata::default()),
            payload: request.payload.clone(),
        }
        .encode_to_vec()
    }
}

/// Canonical encoding of a response: `meta` always emitted (non-nullable in gogoproto, §1.1).
pub fn encode_relay_response(response: &RelayResponse) -> Vec<u8> {
    if response.meta.is_some() {
        response.encode_to_vec()
    } else {
        let mut copy = response.clone();
        copy.meta = Some(RelayResponseMetadata::default());
        copy.encode_to_vec()
    }
}

/// §2.1: SHA256 of the request with `meta.signature` emptied (everything else, payload included, kept).
pub fn request_signable_hash(request: &RelayRequest) -> [u8; 32] {
    let mut copy = request.clone();
    copy.meta
        .get_or_insert_with(RelayRequestMetadata::default)
        .signature
        .clear();
    sha256(&encode_relay_request(&copy))
}

/// §2.2 step 2: SHA256 of the response with the supplier signature emptied and, when `payload_hash` is non-nil
/// (Go `res.PayloadHash != nil`: any field 4 on the wire, even of length 0), the payload emptied.
pub fn response_signable_hash(response: &RelayResponse) -> [u8; 32] {
    let mut copy = response.clone();
    copy.meta
        .get_or_insert_with(RelayResponseMetadata::default)
        .supplier_operator_signature
        .clear();
    if copy.payload_hash.is_some() {
        copy.payload.clear();
    }
    sha256(&encode_relay_response(&copy))
}

/// §2.3: `Relay{req = full signed request, res = signed response with payload cleared (payload_hash kept)}`.
pub fn relay_bytes(request: &RelayRequest, response: &RelayResponse) -> Vec<u8> {
    let mut req = request.clone();
    req.meta.get_or_insert_with(RelayRequestMetadata::default);
    let mut res = response.clone();
    res.meta.get_or_insert_with(RelayResponseMetadata::default);
    res.payload.clear();
    Relay {
        req: Some(req),
        res: Some(res),
    }
    .encode_to_vec()
}

/// The length of [`relay_bytes`] for `request` and any response [`sign_response`] makes of it (§2.3: the request
/// whole; the response with the session header copied, a 64-byte signature, a 32-byte `payload_hash` and its
/// payload cleared), so known before the backend answers: the response's body is not in the relay. A request
/// without metadata makes the relay 2 bytes longer (an empty one is written); a response carrying a relay-miner
/// error is longer too: never shorter than this.
pub fn least_relay_bytes_len(request: &RelayRequest) -> usize {
    let response = RelayResponse {
        meta: Some(RelayResponseMetadata {
            session_header: request.meta.as_ref().and_then(|m| m.session_header.clone()),
            supplier_operator_signature: vec![0; 64],
        }),
        payload: Vec::new(),
        payload_hash: Some(vec![0; 32]),
        relay_miner_error: None,
    };
    prost::encoding::message::encoded_len(1, request) + prost::encoding::message::encoded_len(2, &response)
}

/// §2.3: the relay hash, SHA256 of the relay bytes (trie key and difficulty hash).
pub fn relay_hash(relay_bytes: &[u8]) -> [u8; 32] {
    sha256(relay_bytes)
}

/// §2.2: builds the signed response for `request`: payload = backend bytes, `payload_hash = SHA256(payload)`,
/// session header copied from the request, signed with the supplier operator key.
pub fn sign_response(
    request: &RelayRequest,
    payload: Vec<u8>,
    supplier_key: &k256::ecdsa::SigningKey,
) -> RelayResponse {
    let session_header: Option<SessionHeader> = request.meta.as_ref().and_then(|m| m.session_header.clone());
    let mut response = RelayResponse {
        meta: Some(RelayResponseMetadata {
            session_header,
            supplier_operator_signature: Vec::new(),
        }),
        payload_hash: Some(sha256(&payload).to_vec()),
        payload,
        relay_miner_error: None,
    };
    let signable = response_signable_hash(&response);
    let signature = super::supplier_sig::sign(supplier_key, &signable);
    if let Some(meta) = response.meta.as_mut() {
        meta.supplier_operator_signature = signature.to_vec();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e2e() -> serde_json::Value {
        let text = include_str!("../../tests/vectors/protocol-test-vectors.json");
        serde_json::from_str::<serde_json::Value>(text).unwrap()["relay_e2e"].clone()
    }

    fn hex_of(v: &serde_json::Value, k: &str) -> Vec<u8> {
        hex::decode(v[k].as_str().unwrap()).unwrap()
    }

    /// The relay's length known from its request alone is the length of the relay its signed response makes,
    /// whatever the backend's body (not in the relay, §2.3).
    #[test]
    fn least_relay_bytes_len_is_the_relay_length_for_any_body() {
        let v = e2e();
        let request = decode_relay_request(&hex_of(&v, "relay_request"), MAX_RELAY_MESSAGE_BYTES).unwrap();
        let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        for body in [Vec::new(), b"{}".to_vec(), vec![b'x'; 100_000]] {
            let response = sign_response(&request, body, &key);
            assert_eq!(least_relay_bytes_len(&request), relay_bytes(&request, &response).len());
        }
        let mut bare = request.clone();
        bare.meta = None;
        let response = sign_response(&bare, b"{}".to_vec(), &key);
        assert_eq!(least_relay_bytes_len(&bare) + 2, relay_bytes(&bare, &response).len());
    }

    #[test]
    fn golden_relay_e2e() {
        let v = e2e();
        let header = SessionHeader::decode(hex_of(&v, "session_header").as_slice()).unwrap();
        assert_eq!(hex_of(&v, "session_header").len(), 122);
        assert_eq!(header.encode_to_vec(), hex_of(&v, "session_header"));
        assert_eq!(header.session_start_block_height, 9);

        let request = decode_relay_request(&hex_of(&v, "relay_request"), MAX_RELAY_MESSAGE_BYTES).unwrap();
        assert_eq!(encode_relay_request(&request), hex_of(&v, "relay_request"));
        let mut unsigned = request.clone();
        unsigned.meta.as_mut().unwrap().signature.clear();
        assert_eq!(encode_relay_request(&unsigned), hex_of(&v, "req_signable"));
        assert_eq!(
            request_signable_hash(&request).to_vec(),
            hex_of(&v, "req_signable_sha256")
        );

        let response = decode_relay_response(&hex_of(&v, "relay_response_wire"), MAX_RELAY_MESSAGE_BYTES).unwrap();
        assert_eq!(response.payload_hash, Some(hex_of(&v, "res_payload_hash")));
        assert_eq!(response.payload_hash, Some(sha256(&response.payload).to_vec()));
        assert_eq!(
            response_signable_hash(&response).to_vec(),
            hex_of(&v, "res_signable_sha256")
        );
        assert_eq!(
            response.meta.as_ref().unwrap().supplier_operator_signature,
            hex_of(&v, "supplier_sig")
        );

        // Re-signing the same payload with the supplier key reproduces the wire response byte for byte.
        let key = crate::protocol::address::signing_key_from_hex(v["supplier_priv"].as_str().unwrap()).unwrap();
        let resigned = sign_response(&request, response.payload.clone(), &key);
        assert_eq!(encode_relay_response(&resigned), hex_of(&v, "relay_response_wire"));

        let bytes = relay_bytes(&request, &response);
        assert_eq!(bytes, hex_of(&v, "relay_bytes"));
        assert_eq!(relay_hash(&bytes).to_vec(), hex_of(&v, "relay_hash"));
        assert_eq!(sha256(&relay_hash(&bytes)).to_vec(), hex_of(&v, "relay_path"));
        let relay = decode_relay(&bytes, MAX_RELAY_MESSAGE_BYTES).unwrap();
        assert_eq!(relay.req.as_ref(), Some(&request));
    }

    #[test]
    fn empty_meta_is_always_emitted() {
        let request = RelayRequest {
            meta: None,
            payload: vec![],
        };
        assert_eq!(encode_relay_request(&request), vec![0x0a, 0x00]);
        let decoded = decode_relay_request(&[], 10).unwrap();
        assert_eq!(encode_relay_request(&decoded), vec![0x0a, 0x00]);
        let response = RelayResponse::default();
        assert_eq!(encode_relay_response(&response), vec![0x0a, 0x00]);
    }

    #[test]
    fn unknown_fields_do_not_change_hashes() {
        let v = e2e();
        let mut wire = hex_of(&v, "relay_request");
        let before = request_signable_hash(&decode_relay_request(&wire, usize::MAX).unwrap());
        wire.extend_from_slice(&[0xa0, 0x06, 0x01]); // field 100, varint 1: unknown to RelayRequest
        let after = request_signable_hash(&decode_relay_request(&wire, usize::MAX).unwrap());
        assert_eq!(before, after);
    }

    #[test]
    fn size_limit_and_garbage_are_typed_errors() {
        assert_eq!(
            decode_relay_request(&[0u8; 11], 10),
            Err(RelayDecodeError::TooLarge { len: 11, limit: 10 })
        );
        assert!(matches!(
            decode_relay_request(&[0x0a, 0x05, 0x01], 100),
            Err(RelayDecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_relay(&[0xff; 4], 100),
            Err(RelayDecodeError::Malformed { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic_on_random_or_mutated_input(
            random in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            index in 0usize..2000,
            byte in proptest::num::u8::ANY,
        ) {
            let _ = decode_relay_request(&random, MAX_RELAY_MESSAGE_BYTES);
            let _ = decode_relay_response(&random, MAX_RELAY_MESSAGE_BYTES);
            let _ = decode_relay(&random, MAX_RELAY_MESSAGE_BYTES);
            let v = e2e();
            for field in ["relay_request", "relay_response_wire", "relay_bytes"] {
                let mut bytes = hex_of(&v, field);
                let i = index % bytes.len();
                bytes[i] = byte;
                if let Ok(req) = decode_relay_request(&bytes, MAX_RELAY_MESSAGE_BYTES) {
                    let _ = request_signable_hash(&req);
                }
                if let Ok(res) = decode_relay_response(&bytes, MAX_RELAY_MESSAGE_BYTES) {
                    let _ = response_signable_hash(&res);
                }
                let _ = decode_relay(&bytes, MAX_RELAY_MESSAGE_BYTES);
            }
        }
    }
}
