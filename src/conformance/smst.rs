//! Conformance checkers for the SMST kinds (spec §5).

use serde_json::Value;
use storage::MemoryNodeStore;

use super::util::{bool_field, expect_eq, hex_array, hex_field, str_field};
use crate::protocol::gob;
use crate::smst::{Smst, verify_compact_closest_proof};

fn build(v: &Value) -> Result<Smst<MemoryNodeStore>, String> {
    let mut trie = Smst::new(MemoryNodeStore::new());
    let leaves = v
        .get("leaves")
        .and_then(Value::as_array)
        .ok_or("missing list field `leaves`")?;
    for leaf in leaves {
        let weight = leaf
            .get("weight")
            .and_then(Value::as_u64)
            .ok_or("leaf without integer `weight`")?;
        trie.update(&hex_field(leaf, "key")?, &hex_field(leaf, "value")?, weight);
    }
    if let Some(ops) = v.get("ops").and_then(Value::as_array) {
        for op in ops {
            match str_field(op, "op")? {
                "update" => {
                    let weight = op
                        .get("weight")
                        .and_then(Value::as_u64)
                        .ok_or("update without integer `weight`")?;
                    trie.update(&hex_field(op, "key")?, &hex_field(op, "value")?, weight);
                }
                "delete" => {
                    trie.delete(&hex_field(op, "key")?);
                }
                other => return Err(format!("unknown op `{other}`")),
            }
        }
    }
    Ok(trie)
}

/// `smst_root`.
pub fn check_smst_root(v: &Value) -> Result<(), String> {
    let mut trie = build(v)?;
    expect_eq("root", str_field(v, "root")?.to_string(), hex::encode(trie.root()))
}

/// `smst_closest_proof`: gob bytes equal `proof`, and the proof verifies against `root`.
pub fn check_smst_closest_proof(v: &Value) -> Result<(), String> {
    let mut trie = build(v)?;
    let path: [u8; 32] = hex_array(v, "path")?;
    let proof = trie.prove_closest(&path).map_err(|e| e.to_string())?;
    let bytes = gob::encode_closest_proof(&proof.compact());
    expect_eq("proof", str_field(v, "proof")?.to_string(), hex::encode(&bytes))?;
    let root = hex_field(v, "root")?;
    expect_eq("root", hex::encode(&root), hex::encode(trie.root()))?;
    verify_compact_closest_proof(&bytes, &root)
        .map(drop)
        .map_err(|e| format!("proof does not verify: {e}"))
}

/// `smst_verify_proof`: decode and verify as the chain does.
pub fn check_smst_verify_proof(v: &Value) -> Result<(), String> {
    let root = hex_field(v, "root")?;
    let outcome = verify_compact_closest_proof(&hex_field(v, "proof")?, &root);
    // The chain also requires the proof's path to be the one it derived; `path` names it.
    let outcome = match (outcome, hex_field(v, "path")) {
        (Ok(proof), Ok(path)) if proof.path != path => Err("proof path differs from `path`".to_string()),
        (Ok(_), _) => Ok(()),
        (Err(e), _) => Err(e.to_string()),
    };
    let expected = bool_field(v, "valid")?;
    if outcome.is_ok() == expected {
        Ok(())
    } else {
        Err(format!(
            "valid: expected {expected}, got {} ({})",
            outcome.is_ok(),
            outcome.err().unwrap_or_default()
        ))
    }
}
