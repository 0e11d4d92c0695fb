//! Conformance checkers for `session_id`, `session_windows`, `seeded_float64` and `difficulty` (spec §3, §4,
//! §6.3).

use serde_json::Value;

use super::util::{bool_field, expect_eq, hex_array, hex_field, i64_field, str_field};
use crate::protocol::wire::SharedParams;
use crate::protocol::{difficulty, lottery, session};

/// `session_id`.
pub fn check_session_id(v: &Value) -> Result<(), String> {
    let id = session::session_id(
        &hex_field(v, "block_hash")?,
        str_field(v, "service_id")?,
        str_field(v, "app")?,
        i64_field(v, "start")?,
    );
    expect_eq("session_id", str_field(v, "session_id")?.to_string(), id)
}

fn shared_params(v: &Value) -> Result<SharedParams, String> {
    let p = v
        .get("shared_params")
        .filter(|p| p.is_object())
        .ok_or("missing object field `shared_params`")?;
    let u = |name: &str| -> Result<u64, String> {
        match p.get(name) {
            None | Some(Value::Null) => Ok(0),
            Some(_) => u64::try_from(i64_field(p, name)?).map_err(|_| format!("`shared_params.{name}` is negative")),
        }
    };
    let i = |name: &str| -> Result<i64, String> {
        match p.get(name) {
            None | Some(Value::Null) => Ok(0),
            Some(_) => i64_field(p, name),
        }
    };
    Ok(SharedParams {
        num_blocks_per_session: u("num_blocks_per_session")?,
        grace_period_end_offset_blocks: u("grace_period_end_offset_blocks")?,
        claim_window_open_offset_blocks: u("claim_window_open_offset_blocks")?,
        claim_window_close_offset_blocks: u("claim_window_close_offset_blocks")?,
        proof_window_open_offset_blocks: u("proof_window_open_offset_blocks")?,
        proof_window_close_offset_blocks: u("proof_window_close_offset_blocks")?,
        supplier_unbonding_period_sessions: u("supplier_unbonding_period_sessions")?,
        application_unbonding_period_sessions: u("application_unbonding_period_sessions")?,
        compute_units_to_tokens_multiplier: u("compute_units_to_tokens_multiplier")?,
        gateway_unbonding_period_sessions: u("gateway_unbonding_period_sessions")?,
        compute_unit_cost_granularity: u("compute_unit_cost_granularity")?,
        session_grid_anchor_height: i("session_grid_anchor_height")?,
        session_number_at_anchor: i("session_number_at_anchor")?,
    })
}

/// `session_windows`.
pub fn check_session_windows(v: &Value) -> Result<(), String> {
    let params = shared_params(v)?;
    let w = session::SessionWindows::new(&params, i64_field(v, "height")?).map_err(|e| e.to_string())?;
    for (name, got) in [
        ("start", w.start),
        ("end", w.end),
        ("number", w.number),
        ("claim_open", w.claim_open),
        ("claim_close", w.claim_close),
        ("proof_open", w.proof_open),
        ("proof_close", w.proof_close),
    ] {
        if v.get(name).is_some() {
            expect_eq(name, i64_field(v, name)?, got)?;
        }
    }
    Ok(())
}

/// `seeded_float64`: compared exactly as f64.
pub fn check_seeded_float64(v: &Value) -> Result<(), String> {
    let expected = v
        .get("expected")
        .and_then(Value::as_f64)
        .ok_or("missing number field `expected`")?;
    let got = lottery::seeded_float64(&hex_field(v, "seed")?);
    if got.to_bits() == expected.to_bits() {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {got:?}"))
    }
}

/// `difficulty`.
pub fn check_difficulty(v: &Value) -> Result<(), String> {
    let hash: [u8; 32] = hex_array(v, "relay_hash")?;
    let target = hex_field(v, "target")?;
    expect_eq(
        "applicable",
        bool_field(v, "applicable")?,
        difficulty::is_volume_applicable(&hash, &target),
    )
}
