//! Conformance checkers for the smst kinds (being written; each returns an error until implemented).

use serde_json::Value;

/// Not yet implemented: fails the vector.
pub fn check_smst_root(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_smst_closest_proof(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_smst_verify_proof(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}
