//! Relay messages (`pocket.service`, §1.2), the gateway payload wrappers (`sdk.types`), and the relay-log entry
//! `MinedRelayMessage` of the Go fleet's Redis layout (`../shared/spec/go-redis-layout.md`).

use super::SessionHeader;

/// `pocket.service.Relay`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Relay {
    #[prost(message, optional, tag = "1")]
    pub req: Option<RelayRequest>,
    #[prost(message, optional, tag = "2")]
    pub res: Option<RelayResponse>,
}

/// `pocket.service.RelayRequest`; `meta` is non-nullable (always emitted, §1.1).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RelayRequest {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<RelayRequestMetadata>,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// `pocket.service.RelayRequestMetadata`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RelayRequestMetadata {
    #[prost(message, optional, tag = "1")]
    pub session_header: Option<SessionHeader>,
    /// Serialized ring signature (§2.5).
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
    #[prost(string, tag = "3")]
    pub supplier_operator_address: String,
}

/// `pocket.service.RelayResponse`; `meta` is non-nullable (always emitted, §1.1).
///
/// `payload_hash` keeps Go's three states of a `[]byte` (nil, empty, set), which `prost::Message` derive cannot:
/// gogoproto's unmarshal makes a field that is on the wire non-nil even when its length is 0, and the response
/// signable hash (§2.2 step 2) drops the payload whenever `PayloadHash != nil`. So a decoded `22 00` is
/// `Some(vec![])`, an absent field `None`; encoding omits both (gogoproto writes the field only when `len > 0`).
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct RelayResponse {
    pub meta: Option<RelayResponseMetadata>,
    pub payload: Vec<u8>,
    pub relay_miner_error: Option<RelayMinerError>,
    /// SHA-256 of `payload` (§2.2; required since v0.1.25). `None` = not on the wire (Go nil).
    pub payload_hash: Option<Vec<u8>>,
}

impl RelayResponse {
    /// The payload hash bytes to encode: gogoproto writes `bytes` fields only when non-empty.
    fn payload_hash_to_encode(&self) -> Option<&Vec<u8>> {
        self.payload_hash.as_ref().filter(|h| !h.is_empty())
    }
}

impl prost::Message for RelayResponse {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        use prost::encoding::{bytes, message};
        if let Some(meta) = &self.meta {
            message::encode(1, meta, buf);
        }
        if !self.payload.is_empty() {
            bytes::encode(2, &self.payload, buf);
        }
        if let Some(error) = &self.relay_miner_error {
            message::encode(3, error, buf);
        }
        if let Some(hash) = self.payload_hash_to_encode() {
            bytes::encode(4, hash, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        use prost::encoding::{bytes, message, skip_field};
        match tag {
            1 => message::merge(wire_type, self.meta.get_or_insert_with(Default::default), buf, ctx),
            2 => bytes::merge(wire_type, &mut self.payload, buf, ctx),
            3 => message::merge(
                wire_type,
                self.relay_miner_error.get_or_insert_with(Default::default),
                buf,
                ctx,
            ),
            4 => bytes::merge(wire_type, self.payload_hash.get_or_insert_with(Vec::new), buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::{bytes, message};
        self.meta.as_ref().map_or(0, |m| message::encoded_len(1, m))
            + if self.payload.is_empty() {
                0
            } else {
                bytes::encoded_len(2, &self.payload)
            }
            + self
                .relay_miner_error
                .as_ref()
                .map_or(0, |e| message::encoded_len(3, e))
            + self.payload_hash_to_encode().map_or(0, |h| bytes::encoded_len(4, h))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// `pocket.service.RelayResponseMetadata`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RelayResponseMetadata {
    #[prost(message, optional, tag = "1")]
    pub session_header: Option<SessionHeader>,
    /// 64-byte r‖s supplier signature (§2.2).
    #[prost(bytes = "vec", tag = "2")]
    pub supplier_operator_signature: Vec<u8>,
}

/// `pocket.service.RelayMinerError`: how a relay miner reports a refused relay to the gateway.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RelayMinerError {
    #[prost(string, tag = "1")]
    pub codespace: String,
    #[prost(uint32, tag = "2")]
    pub code: u32,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub message: String,
}

/// `sdk.types.Header` (one HTTP header with all its values).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HttpHeader {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, repeated, tag = "2")]
    pub values: Vec<String>,
}

/// `sdk.types.POKTHTTPRequest`: the payload of a JSON-RPC/REST RelayRequest.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PoktHttpRequest {
    #[prost(string, tag = "1")]
    pub method: String,
    #[prost(btree_map = "string, message", tag = "2")]
    pub header: std::collections::BTreeMap<String, HttpHeader>,
    #[prost(string, tag = "3")]
    pub url: String,
    #[prost(bytes = "vec", tag = "4")]
    pub body_bz: Vec<u8>,
}

/// `sdk.types.POKTHTTPResponse`: the payload of a RelayResponse (map-key-sorted serialization).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PoktHttpResponse {
    #[prost(uint32, tag = "1")]
    pub status_code: u32,
    #[prost(btree_map = "string, message", tag = "2")]
    pub header: std::collections::BTreeMap<String, HttpHeader>,
    #[prost(bytes = "vec", tag = "3")]
    pub body_bz: Vec<u8>,
}

/// The relay-log entry (Go `MinedRelayMessage`, stream field `data`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MinedRelayMessage {
    /// SHA-256 of the relay bytes; the trie key.
    #[prost(bytes = "vec", tag = "1")]
    pub relay_hash: Vec<u8>,
    /// Serialized `Relay` (request + response with payload cleared).
    #[prost(bytes = "vec", tag = "2")]
    pub relay_bytes: Vec<u8>,
    /// Trie weight: compute units of the service at session start.
    #[prost(uint64, tag = "3")]
    pub compute_units_per_relay: u64,
    #[prost(string, tag = "4")]
    pub session_id: String,
    #[prost(int64, tag = "5")]
    pub session_end_height: i64,
    #[prost(string, tag = "6")]
    pub supplier_operator_address: String,
    #[prost(string, tag = "7")]
    pub service_id: String,
    #[prost(string, tag = "8")]
    pub application_address: String,
    /// Height when the relay arrived at the relayer.
    #[prost(int64, tag = "9")]
    pub arrival_block_height: i64,
    #[prost(int64, tag = "10")]
    pub published_at_unix_nano: i64,
    #[prost(int64, tag = "11")]
    pub session_start_height: i64,
}
