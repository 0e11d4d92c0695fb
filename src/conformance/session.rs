//! Conformance checkers for the session kinds (being written; each returns an error until implemented).

use serde_json::Value;

/// Not yet implemented: fails the vector.
pub fn check_session_id(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_session_windows(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_seeded_float64(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}

/// Not yet implemented: fails the vector.
pub fn check_difficulty(_v: &Value) -> Result<(), String> {
    Err("checker not implemented yet".into())
}
