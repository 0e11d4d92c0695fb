//! Conformance vectors (`../shared/spec/vectors-format.md`): JSON-Lines files, one object per line with a `kind`.
//! Each kind is checked by a function `fn(&Value) -> Result<(), String>` in the submodule of its area; the
//! runner reports `FILE:LINE KIND: what differed` per failure and `N passed, M failed`. An unknown kind or a
//! malformed line is a failure, never a skip.

mod relay;
mod ring;
mod session;
mod smst;
pub(crate) mod util;

use serde_json::Value;

/// Result of running one or more vector files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Vectors that passed.
    pub passed: usize,
    /// One line per failing vector: `FILE:LINE KIND: what differed`.
    pub failures: Vec<String>,
}

impl Report {
    /// The summary line the CLI prints last.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failures.len())
    }
}

/// Checks one vector object; `Err` says what differed.
pub fn check_vector(vector: &Value) -> Result<(), String> {
    let kind = vector
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| "missing string field `kind`".to_string())?;
    match kind {
        "hash_to_scalar" => ring::check_hash_to_scalar(vector),
        "hash_to_curve" => ring::check_hash_to_curve(vector),
        "ring_verify" => ring::check_ring_verify(vector),
        "ring_sign_deterministic" => ring::check_ring_sign_deterministic(vector),
        "session_id" => session::check_session_id(vector),
        "session_windows" => session::check_session_windows(vector),
        "seeded_float64" => session::check_seeded_float64(vector),
        "difficulty" => session::check_difficulty(vector),
        "supplier_sign" => relay::check_supplier_sign(vector),
        "relay" => relay::check_relay(vector),
        "smst_root" => smst::check_smst_root(vector),
        "smst_closest_proof" => smst::check_smst_closest_proof(vector),
        "smst_verify_proof" => smst::check_smst_verify_proof(vector),
        other => Err(format!("unknown kind `{other}`")),
    }
}

/// Runs every vector in `text` (the contents of `file_name`), adding to `report`.
pub fn run_text(file_name: &str, text: &str, report: &mut Report) {
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let line_no = index + 1;
        let vector: Value = match serde_json::from_str(trimmed) {
            Ok(v) => v,
            Err(e) => {
                report
                    .failures
                    .push(format!("{file_name}:{line_no} ?: malformed JSON: {e}"));
                continue;
            }
        };
        let kind = vector.get("kind").and_then(Value::as_str).unwrap_or("?").to_string();
        // A checker must never take the runner down: a panic in one vector is a failure of that vector.
        match std::panic::catch_unwind(|| check_vector(&vector)) {
            Ok(Ok(())) => report.passed += 1,
            Ok(Err(what)) => report.failures.push(format!("{file_name}:{line_no} {kind}: {what}")),
            Err(_) => report
                .failures
                .push(format!("{file_name}:{line_no} {kind}: checker panicked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_and_malformed_lines_fail() {
        let mut report = Report::default();
        run_text("t", "# comment\n\n{\"kind\":\"nope\"}\nnot json\n{}\n", &mut report);
        assert_eq!(report.passed, 0);
        assert_eq!(report.failures.len(), 3, "{:?}", report.failures);
        assert!(report.failures[0].starts_with("t:3 nope: unknown kind"));
        assert!(report.failures[1].starts_with("t:4 ?: malformed JSON"));
        assert_eq!(report.summary(), "0 passed, 3 failed");
    }
}
