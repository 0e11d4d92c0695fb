//! Conformance checkers for the ring-signature kinds (spec §2.4–2.5).

use k256::Scalar;
use k256::elliptic_curve::group::GroupEncoding as _;
use k256::elliptic_curve::ops::Reduce as _;
use serde_json::Value;

use super::util::{bool_field, expect_eq, hex_array, hex_field, i64_field, str_field};
use crate::protocol::ring::{self, RingSignature};

fn scalar(hex_str: &str, what: &str) -> Result<Scalar, String> {
    let bytes: [u8; 32] = hex::decode(hex_str)
        .map_err(|e| format!("{what} is not hex: {e}"))?
        .try_into()
        .map_err(|_| format!("{what} must be 32 bytes"))?;
    Ok(Scalar::reduce(&k256::FieldBytes::from(bytes)))
}

fn ring_list(v: &Value, name: &str) -> Result<Vec<[u8; 33]>, String> {
    let list = v
        .get(name)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("missing list field `{name}`"))?;
    list.iter()
        .map(|item| {
            let s = item
                .as_str()
                .ok_or_else(|| format!("`{name}` entries must be hex strings"))?;
            hex::decode(s)
                .map_err(|e| format!("`{name}` entry is not hex: {e}"))?
                .try_into()
                .map_err(|_| format!("`{name}` entries must be 33 bytes"))
        })
        .collect()
}

/// `hash_to_scalar`: H_s with the left-align quirk.
pub fn check_hash_to_scalar(v: &Value) -> Result<(), String> {
    let input = hex_field(v, "input")?;
    let got = ring::hash_to_scalar(&input).map_err(|e| e.to_string())?;
    expect_eq(
        "H_s",
        str_field(v, "expected")?.to_string(),
        hex::encode(got.to_bytes()),
    )
}

/// `hash_to_curve`: H_p.
pub fn check_hash_to_curve(v: &Value) -> Result<(), String> {
    let point: [u8; 33] = hex_array(v, "point")?;
    let got = ring::hash_to_curve(&point).map_err(|e| e.to_string())?;
    expect_eq(
        "H_p",
        str_field(v, "expected")?.to_string(),
        hex::encode(got.to_affine().to_bytes()),
    )
}

/// `ring_verify`: verify returns `valid` (with membership against `ring` when given).
pub fn check_ring_verify(v: &Value) -> Result<(), String> {
    let message: [u8; 32] = hex_array(v, "message")?;
    let signature = hex_field(v, "signature")?;
    let expected_valid = bool_field(v, "valid")?;
    let mut outcome = ring::verify_relay_ring_signature(&signature, &message);
    if let (Ok(sig), Some(_)) = (&outcome, v.get("ring")) {
        let members = ring_list(v, "ring")?;
        if let Err(e) = ring::verify_membership(sig.ring(), &members) {
            outcome = Err(e);
        }
    }
    let detail = outcome.as_ref().err().map(|e| format!(" ({e})")).unwrap_or_default();
    if outcome.is_ok() == expected_valid {
        Ok(())
    } else {
        Err(format!(
            "valid: expected {expected_valid}, got {}{detail}",
            outcome.is_ok()
        ))
    }
}

/// `ring_sign_deterministic`: signing with the given randomness yields exactly `signature`.
pub fn check_ring_sign_deterministic(v: &Value) -> Result<(), String> {
    let message: [u8; 32] = hex_array(v, "message")?;
    let ring = ring_list(v, "ring")?;
    let signer = usize::try_from(i64_field(v, "signer_index")?).map_err(|_| "negative signer_index".to_string())?;
    let secret = scalar(str_field(v, "private_key")?, "private_key")?;
    let u = scalar(str_field(v, "u")?, "u")?;
    let s_list = v.get("s").and_then(Value::as_array).ok_or("missing list field `s`")?;
    let decoys = s_list
        .iter()
        .map(|s| match s {
            Value::Null => Ok(None),
            Value::String(h) => scalar(h, "s").map(Some),
            _ => Err("`s` entries must be hex or null".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if decoys.get(signer).is_some_and(Option::is_some) {
        return Err(format!("`s` must be null at signer_index {signer}"));
    }
    let sig = RingSignature::sign_with(&ring, &message, &secret, &u, &decoys).map_err(|e| e.to_string())?;
    expect_eq(
        "signature",
        str_field(v, "signature")?.to_string(),
        hex::encode(sig.to_bytes()),
    )
}
