//! Conformance checkers for the ring kinds (being written; each returns an error until implemented).

use serde_json::Value;

/// Not yet implemented: fails the vector.
pub fn check_hash_to_scalar(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_hash_to_curve(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_ring_verify(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_ring_sign_deterministic(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}
