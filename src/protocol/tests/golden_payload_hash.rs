//! `RelayResponse.payload_hash` present but empty vs absent (spec §2.2 step 2, §1.1). poktroll v0.1.35
//! `x/service/types/relay.go` `GetSignableBytesHash` drops the payload when `res.PayloadHash != nil`, and
//! gogoproto's `Unmarshal` (`relay.pb.go`, field 4) sets `PayloadHash = []byte{}` — non-nil — for a field 4 of
//! length 0 on the wire (`22 00`), while an absent field stays nil. `Marshal` writes field 4 only when
//! `len > 0`. So the same response with `22 00` and without it has different signable bytes, and both
//! re-encode to the same bytes.
//!
//! Expected bytes from this independent model (hashlib only):
//!
//! ```python
//! import hashlib
//! def v(x):
//!     o = b""
//!     while x >= 0x80: o += bytes([x & 0x7f | 0x80]); x >>= 7
//!     return o + bytes([x])
//! ld = lambda f, b: v(f << 3 | 2) + v(len(b)) + b
//! vi = lambda f, x: v(f << 3) + v(x)
//! header = (ld(1, b"pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4") + ld(2, b"anvil")
//!           + ld(3, b"fea5d6f7544ff6d8af5c22529b2ccf01ed7930b3d454d42dda5ccc0b65b6ebfd") + vi(4, 9) + vi(5, 12))
//! meta, meta_unsigned = ld(1, header) + ld(2, b"\x5a" * 64), ld(1, header)
//! payload = b"hello"; h = hashlib.sha256(payload).digest()
//! for name, tail, signable in [
//!         ("absent", b"", ld(1, meta_unsigned) + ld(2, payload)),          # PayloadHash nil: payload kept
//!         ("empty", b"\x22\x00", ld(1, meta_unsigned)),                   # []byte{}: payload dropped, field omitted
//!         ("set", ld(4, h), ld(1, meta_unsigned) + ld(4, h))]:
//!     print(name, (ld(1, meta) + ld(2, payload) + tail).hex(), hashlib.sha256(signable).hexdigest())
//! e = hashlib.sha256(b"").digest()                                          # an empty payload, hashed
//! print(hashlib.sha256(ld(1, meta_unsigned) + ld(4, e)).hexdigest())
//! ```

use prost::Message as _;

use crate::protocol::relay::{
    MAX_RELAY_MESSAGE_BYTES, decode_relay, decode_relay_response, encode_relay_response, response_signable_hash,
    sign_response,
};
use crate::protocol::wire::{RelayRequest, RelayRequestMetadata};

/// `RelayResponse.meta` (field 1, with its 64-byte signature of 0x5a) as the model encodes it.
const META: &str = "0abe010a7a0a2b706f6b74316d7271743566377168387578733237636a6d397437763965373461397676646e71356a7661341205616e76696c1a40666561356436663735343466663664386166356332323532396232636366303165643739333062336434353464343264646135636363306236356236656266642009280c12405a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// Field 2, payload "hello".
const PAYLOAD: &str = "120568656c6c6f";
/// Field 4, SHA256("hello").
const HASH_FIELD: &str = "22202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

const SIGNABLE_ABSENT: &str = "9096bebdf7235f2ec9c50384e4c5fe0e978ac7501191b551ce4e1cbc1dd486cf";
const SIGNABLE_EMPTY: &str = "d7a959dbd5cc94778d87bb1627f0bca79cc940a4547020344b3d9a9609ff6b90";
const SIGNABLE_SET: &str = "651f61201cbb71cefab9a53e979bc631f0e851253b401edd4d2745288f22c339";
const SIGNABLE_EMPTY_PAYLOAD_HASHED: &str = "e89a5d820829c950c192509941fca6cfc46ef7a8f264491ac07c5d1707b55c01";

fn wire(tail: &str) -> Vec<u8> {
    hex::decode(format!("{META}{PAYLOAD}{tail}")).unwrap()
}

fn signable_of(bytes: &[u8]) -> String {
    hex::encode(response_signable_hash(
        &decode_relay_response(bytes, MAX_RELAY_MESSAGE_BYTES).unwrap(),
    ))
}

#[test]
fn absent_payload_hash_keeps_the_payload_in_the_signable_bytes() {
    let response = decode_relay_response(&wire(""), MAX_RELAY_MESSAGE_BYTES).unwrap();
    assert_eq!(response.payload_hash, None);
    assert_eq!(signable_of(&wire("")), SIGNABLE_ABSENT);
}

#[test]
fn empty_but_present_payload_hash_drops_the_payload_from_the_signable_bytes() {
    let response = decode_relay_response(&wire("2200"), MAX_RELAY_MESSAGE_BYTES).unwrap();
    assert_eq!(response.payload_hash, Some(vec![]), "Go: []byte{{}}, not nil");
    assert_eq!(signable_of(&wire("2200")), SIGNABLE_EMPTY);
    assert_ne!(SIGNABLE_EMPTY, SIGNABLE_ABSENT);
    // A later occurrence replaces an earlier one (last one wins, as gogoproto's append(m.PayloadHash[:0], …)).
    assert_eq!(signable_of(&wire(&format!("{HASH_FIELD}2200"))), SIGNABLE_EMPTY);
}

#[test]
fn set_payload_hash_is_signed_in_place_of_the_payload() {
    assert_eq!(signable_of(&wire(HASH_FIELD)), SIGNABLE_SET);
}

#[test]
fn an_empty_payload_hash_is_never_encoded() {
    // gogoproto writes `bytes` only when len > 0: `22 00` does not survive a canonical re-encoding.
    let response = decode_relay_response(&wire("2200"), MAX_RELAY_MESSAGE_BYTES).unwrap();
    assert_eq!(encode_relay_response(&response), wire(""));
    assert_eq!(response.encoded_len(), wire("").len());
    let set = decode_relay_response(&wire(HASH_FIELD), MAX_RELAY_MESSAGE_BYTES).unwrap();
    assert_eq!(encode_relay_response(&set), wire(HASH_FIELD));
    assert_eq!(set.encoded_len(), wire(HASH_FIELD).len());
}

#[test]
fn presence_survives_the_relay_bytes_of_a_proof_leaf() {
    // The chain decodes the relay out of the proof leaf and verifies the supplier signature over the decoded
    // response (spec §5.4 (15)); a `22 00` inside the leaf must still count as present.
    let mut leaf = vec![0x0a, 0x02, 0x0a, 0x00]; // Relay.req = RelayRequest{meta: {}}
    let res = wire("2200");
    leaf.push(0x12);
    prost::encoding::encode_varint(res.len() as u64, &mut leaf);
    leaf.extend_from_slice(&res);
    let relay = decode_relay(&leaf, MAX_RELAY_MESSAGE_BYTES).unwrap();
    let decoded = relay.res.unwrap();
    assert_eq!(decoded.payload_hash, Some(vec![]));
    assert_eq!(hex::encode(response_signable_hash(&decoded)), SIGNABLE_EMPTY);
}

#[test]
fn signing_an_empty_payload_hashes_it() {
    // Our miner always sets payload_hash = SHA256(payload); for an empty payload that is SHA256("") (non-nil),
    // which the chain verifies like any other hash.
    let header = decode_relay_response(&wire(""), MAX_RELAY_MESSAGE_BYTES)
        .unwrap()
        .meta
        .unwrap()
        .session_header;
    let request = RelayRequest {
        meta: Some(RelayRequestMetadata {
            session_header: header,
            ..Default::default()
        }),
        payload: vec![],
    };
    let key = crate::protocol::address::signing_key_from_hex(&"11".repeat(32)).unwrap();
    let response = sign_response(&request, vec![], &key);
    assert_eq!(response.payload_hash, Some(crate::protocol::sha256(b"").to_vec()));
    assert_eq!(
        hex::encode(response_signable_hash(&response)),
        SIGNABLE_EMPTY_PAYLOAD_HASHED
    );
}

#[test]
fn relay_vectors_with_an_empty_payload_hash_verify_as_on_chain() {
    // payload_hash_relays.jsonl, written by payload_hash_relays.py beside this file: the public relay_e2e request
    // with a response of payload "hello" and `22 00`, supplier-signed over Go's signable bytes (valid) and over the
    // payload-kept bytes (invalid), checked as `relay-miner conformance` checks them.
    let lines: Vec<serde_json::Value> = include_str!("payload_hash_relays.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for v in &lines {
        crate::conformance::check_vector(v).unwrap_or_else(|e| panic!("{}: {e}", v["note"]));
    }
}
