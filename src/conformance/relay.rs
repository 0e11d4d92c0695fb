//! Conformance checkers for `supplier_sign` and `relay` (spec §2.1–2.3, §2.5).

use serde_json::Value;

use super::util::{bool_field, expect_eq, hex_array, hex_field};
use crate::protocol::{address, relay, ring, supplier_sig};

/// `supplier_sign`: RFC 6979 low-S signature over SHA-256(d) equals `signature`.
pub fn check_supplier_sign(v: &Value) -> Result<(), String> {
    let key = address::signing_key_from_hex(super::util::str_field(v, "private_key")?).map_err(|e| e.to_string())?;
    let signable: [u8; 32] = hex_array(v, "signable_sha256")?;
    let expected = hex_field(v, "signature")?;
    let signature = supplier_sig::sign(&key, &signable);
    expect_eq("signature", hex::encode(expected), hex::encode(signature))?;
    let pubkey = address::compressed_public_key(key.verifying_key());
    supplier_sig::verify(&pubkey, &signable, &signature).map_err(|e| format!("own signature does not verify: {e}"))
}

/// `relay`: decode both messages, re-encode canonically, recompute every hash, verify both signatures.
pub fn check_relay(v: &Value) -> Result<(), String> {
    let limit = relay::MAX_RELAY_MESSAGE_BYTES;
    let request = relay::decode_relay_request(&hex_field(v, "relay_request")?, limit).map_err(|e| e.to_string())?;
    let response = relay::decode_relay_response(&hex_field(v, "relay_response")?, limit).map_err(|e| e.to_string())?;
    let request_hash = relay::request_signable_hash(&request);
    expect_eq(
        "request_signable_sha256",
        hex::encode(hex_field(v, "request_signable_sha256")?),
        hex::encode(request_hash),
    )?;
    let response_hash = relay::response_signable_hash(&response);
    expect_eq(
        "response_signable_sha256",
        hex::encode(hex_field(v, "response_signable_sha256")?),
        hex::encode(response_hash),
    )?;
    let bytes = relay::relay_bytes(&request, &response);
    expect_eq(
        "relay_hash",
        hex::encode(hex_field(v, "relay_hash")?),
        hex::encode(relay::relay_hash(&bytes)),
    )?;

    let signature = request
        .meta
        .as_ref()
        .map(|m| m.signature.as_slice())
        .unwrap_or_default();
    let ring_valid = ring::verify_relay_ring_signature(signature, &request_hash).is_ok();
    expect_eq("ring_valid", bool_field(v, "ring_valid")?, ring_valid)?;

    let supplier_pub = hex_field(v, "supplier_pub")?;
    let supplier_signature = response
        .meta
        .as_ref()
        .map(|m| m.supplier_operator_signature.as_slice())
        .unwrap_or_default();
    let supplier_valid = supplier_sig::verify(&supplier_pub, &response_hash, supplier_signature).is_ok();
    expect_eq(
        "supplier_signature_valid",
        bool_field(v, "supplier_signature_valid")?,
        supplier_valid,
    )
}
