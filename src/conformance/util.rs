//! Field accessors shared by the conformance checkers: each names the missing or malformed field.

use serde_json::Value;

/// A string field.
pub fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field `{name}`"))
}

/// A hex field decoded to bytes.
pub fn hex_field(v: &Value, name: &str) -> Result<Vec<u8>, String> {
    hex::decode(str_field(v, name)?).map_err(|e| format!("field `{name}` is not hex: {e}"))
}

/// A hex field of exactly `N` bytes.
pub fn hex_array<const N: usize>(v: &Value, name: &str) -> Result<[u8; N], String> {
    let bytes = hex_field(v, name)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("field `{name}` must be {N} bytes, got {}", bytes.len()))
}

/// A boolean field.
pub fn bool_field(v: &Value, name: &str) -> Result<bool, String> {
    v.get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("missing bool field `{name}`"))
}

/// An integer field (accepts JSON numbers and decimal strings).
pub fn i64_field(v: &Value, name: &str) -> Result<i64, String> {
    match v.get(name) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("field `{name}` is not an i64")),
        Some(Value::String(s)) => s.parse().map_err(|e| format!("field `{name}` is not an i64: {e}")),
        _ => Err(format!("missing integer field `{name}`")),
    }
}

/// Compares an expected and an actual value, naming the field when they differ.
pub fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, expected: T, actual: T) -> Result<(), String> {
    if expected == actual {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected:?}, got {actual:?}"))
    }
}
