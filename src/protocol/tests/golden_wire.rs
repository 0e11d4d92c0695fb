//! Canonical encodings of spec §1.1–1.2 not pinned elsewhere: int64 negatives as 10-byte varints, the
//! `RelayResponse` field order 1, 2, 3, 4 (gogoproto writes `relay_miner_error` = 3 before `payload_hash` = 4
//! although the .proto declares 4 first; our `RelayResponse` encoder is hand-written, see `wire::relay`), and the
//! map-key-sorted `POKTHTTPResponse`. Expected bytes from this independent model (plain Python):
//!
//! ```python
//! def v(x):
//!     x &= (1 << 64) - 1   # Go writes uint64(int64) as a varint: -1 is ff ff ff ff ff ff ff ff ff 01
//!     o = b""
//!     while x >= 0x80: o += bytes([x & 0x7f | 0x80]); x >>= 7
//!     return o + bytes([x])
//! ld = lambda f, b: v(f << 3 | 2) + v(len(b)) + b
//! vi = lambda f, x: v(f << 3) + v(x)
//! print((ld(1, b"pokt1app") + ld(2, b"svc") + ld(3, b"id") + vi(4, -1) + vi(5, 2)).hex())
//! meta = ld(1, ld(2, b"svc")) + ld(2, b"\x01\x02")
//! err = ld(1, b"relayminer") + vi(2, 7) + ld(3, b"d") + ld(4, b"m")
//! print((ld(1, meta) + ld(2, b"p") + ld(3, err) + ld(4, b"\xab" * 32)).hex())
//! entry = lambda k, vals: ld(2, ld(1, k) + ld(2, ld(1, k) + b"".join(ld(2, x) for x in vals)))
//! print((vi(1, 200) + entry(b"a", [b"1", b"x"]) + entry(b"b", [b"2"]) + ld(3, b"hi")).hex())
//! ```

use std::collections::BTreeMap;

use prost::Message as _;

use crate::protocol::relay::{MAX_RELAY_MESSAGE_BYTES, decode_relay_response, encode_relay_response};
use crate::protocol::wire::{
    HttpHeader, PoktHttpResponse, RelayMinerError, RelayResponse, RelayResponseMetadata, SessionHeader,
};

const HEADER_NEGATIVE_START: &str = "0a08706f6b743161707012037376631a02696420ffffffffffffffffff012802";
const RESPONSE_ALL_FIELDS: &str = "0a0b0a051203737663120201021201701a140a0a72656c61796d696e657210071a016422016d2220abababababababababababababababababababababababababababababababab";
const HTTP_RESPONSE: &str = "08c801120e0a016112090a0161120131120178120b0a016212060a01621201321a026869";

#[test]
fn a_negative_int64_is_a_ten_byte_varint() {
    let header = SessionHeader {
        application_address: "pokt1app".into(),
        service_id: "svc".into(),
        session_id: "id".into(),
        session_start_block_height: -1,
        session_end_block_height: 2,
    };
    assert_eq!(hex::encode(header.encode_to_vec()), HEADER_NEGATIVE_START);
    assert_eq!(
        SessionHeader::decode(hex::decode(HEADER_NEGATIVE_START).unwrap().as_slice()).unwrap(),
        header
    );
}

fn full_response() -> RelayResponse {
    RelayResponse {
        meta: Some(RelayResponseMetadata {
            session_header: Some(SessionHeader {
                service_id: "svc".into(),
                ..Default::default()
            }),
            supplier_operator_signature: vec![1, 2],
        }),
        payload: b"p".to_vec(),
        relay_miner_error: Some(RelayMinerError {
            codespace: "relayminer".into(),
            code: 7,
            description: "d".into(),
            message: "m".into(),
        }),
        payload_hash: Some(vec![0xab; 32]),
    }
}

#[test]
fn relay_response_fields_are_written_in_tag_order() {
    let response = full_response();
    assert_eq!(hex::encode(encode_relay_response(&response)), RESPONSE_ALL_FIELDS);
    assert_eq!(response.encoded_len(), RESPONSE_ALL_FIELDS.len() / 2);
    let bytes = hex::decode(RESPONSE_ALL_FIELDS).unwrap();
    assert_eq!(
        decode_relay_response(&bytes, MAX_RELAY_MESSAGE_BYTES).unwrap(),
        response
    );
    // Fields in any order on the wire decode to the same message (and re-encode canonically).
    let mut shuffled = bytes[bytes.len() - 34..].to_vec(); // payload_hash first
    shuffled.extend_from_slice(&bytes[..bytes.len() - 34]);
    let decoded = decode_relay_response(&shuffled, MAX_RELAY_MESSAGE_BYTES).unwrap();
    assert_eq!(hex::encode(encode_relay_response(&decoded)), RESPONSE_ALL_FIELDS);
}

#[test]
fn http_response_headers_are_written_key_sorted() {
    let header = |key: &str, values: &[&str]| HttpHeader {
        key: key.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let mut headers = BTreeMap::new();
    headers.insert("b".to_string(), header("b", &["2"]));
    headers.insert("a".to_string(), header("a", &["1", "x"]));
    let response = PoktHttpResponse {
        status_code: 200,
        header: headers,
        body_bz: b"hi".to_vec(),
    };
    assert_eq!(hex::encode(response.encode_to_vec()), HTTP_RESPONSE);
}
