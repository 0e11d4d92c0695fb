//! The simulator's genesis: services, applications, gateways and suppliers (with their keys, so the demo load
//! generator and miner can sign as them), params and difficulty. Loaded from YAML (`config/sim-genesis.yaml`).

use std::path::Path;

use serde::Deserialize;

/// Errors loading a genesis file.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// Unreadable file.
    #[error("cannot read genesis {0}: {1}")]
    Read(String, std::io::Error),
    /// Bad YAML or unknown key (named with its path).
    #[error("genesis key `{key}`: {problem}")]
    Parse {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A value is unusable.
    #[error("invalid genesis: {0}")]
    Invalid(String),
}

/// Shared params (spec §1.2 names).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GenesisSharedParams {
    /// Blocks per session.
    pub num_blocks_per_session: u64,
    /// Grace period after session end.
    pub grace_period_end_offset_blocks: u64,
    /// Claim window open offset.
    pub claim_window_open_offset_blocks: u64,
    /// Claim window length.
    pub claim_window_close_offset_blocks: u64,
    /// Proof window open offset.
    pub proof_window_open_offset_blocks: u64,
    /// Proof window length.
    pub proof_window_close_offset_blocks: u64,
    /// uPOKT per compute unit × granularity.
    pub compute_units_to_tokens_multiplier: u64,
    /// Granularity of the multiplier.
    pub compute_unit_cost_granularity: u64,
}

impl Default for GenesisSharedParams {
    fn default() -> Self {
        Self {
            num_blocks_per_session: 10,
            grace_period_end_offset_blocks: 1,
            claim_window_open_offset_blocks: 1,
            claim_window_close_offset_blocks: 4,
            proof_window_open_offset_blocks: 0,
            proof_window_close_offset_blocks: 4,
            compute_units_to_tokens_multiplier: 42_000_000,
            compute_unit_cost_granularity: 1_000_000,
        }
    }
}

/// Proof params.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GenesisProofParams {
    /// Probability a claim below the threshold needs a proof.
    pub proof_request_probability: f64,
    /// Claims worth at least this many uPOKT always need a proof.
    pub proof_requirement_threshold_upokt: u64,
    /// Slashed when a required proof is missing.
    pub proof_missing_penalty_upokt: u64,
    /// Fee per proof.
    pub proof_submission_fee_upokt: u64,
}

impl Default for GenesisProofParams {
    fn default() -> Self {
        Self {
            proof_request_probability: 0.25,
            proof_requirement_threshold_upokt: 20_000_000,
            proof_missing_penalty_upokt: 320_000_000,
            proof_submission_fee_upokt: 0,
        }
    }
}

/// One service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisService {
    /// Service id.
    pub id: String,
    /// Compute units per relay.
    pub compute_units_per_relay: u64,
    /// Relay mining difficulty target (hex, 32 bytes; default: base = every relay applicable).
    #[serde(default)]
    pub difficulty_target_hex: Option<String>,
}

/// One actor with a key (application, gateway or supplier operator).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisApplication {
    /// Hex private key (demo only: lets the load generator sign as the app).
    pub key_hex: String,
    /// Stake in uPOKT.
    pub stake_upokt: u64,
    /// Services the app is staked for.
    pub services: Vec<String>,
    /// Gateways (by index into `gateways`) the app delegates to.
    #[serde(default)]
    pub delegate_to: Vec<usize>,
}

/// One gateway.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisGateway {
    /// Hex private key.
    pub key_hex: String,
    /// Stake in uPOKT.
    pub stake_upokt: u64,
}

/// One supplier.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisSupplier {
    /// Hex private key of the operator.
    pub key_hex: String,
    /// Stake in uPOKT.
    pub stake_upokt: u64,
    /// Balance in uPOKT (pays fees).
    #[serde(default = "default_balance")]
    pub balance_upokt: u64,
    /// Services with their relay endpoint URL.
    pub services: Vec<GenesisSupplierService>,
}

fn default_balance() -> u64 {
    1_000_000_000
}

/// A supplier's service endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisSupplierService {
    /// Service id.
    pub service_id: String,
    /// Public relay URL.
    pub url: String,
}

/// The whole genesis.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Chain id txs must be signed for.
    pub chain_id: String,
    /// Block interval.
    #[serde(default = "default_block_time")]
    pub block_time_ms: u64,
    /// Shared params.
    #[serde(default)]
    pub shared_params: GenesisSharedParams,
    /// Proof params.
    #[serde(default)]
    pub proof_params: GenesisProofParams,
    /// Suppliers per session.
    #[serde(default = "default_suppliers_per_session")]
    pub num_suppliers_per_session: u64,
    /// Services.
    pub services: Vec<GenesisService>,
    /// Applications.
    pub applications: Vec<GenesisApplication>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<GenesisGateway>,
    /// Suppliers.
    pub suppliers: Vec<GenesisSupplier>,
}

fn default_block_time() -> u64 {
    1000
}

fn default_suppliers_per_session() -> u64 {
    15
}

impl Genesis {
    /// Parses YAML (unknown keys are errors naming their path).
    pub fn from_yaml(text: &str) -> Result<Self, GenesisError> {
        let de = serde_norway::Deserializer::from_str(text);
        let genesis: Self = serde_path_to_error::deserialize(de).map_err(|e| GenesisError::Parse {
            key: e.path().to_string(),
            problem: e.into_inner().to_string(),
        })?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Reads and parses a genesis file.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|e| GenesisError::Read(path.display().to_string(), e))?;
        Self::from_yaml(&text)
    }

    /// Checks what serde cannot: every error names its key path and the problem.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let invalid = |key: String, problem: String| GenesisError::Parse { key, problem };
        if self.chain_id.trim().is_empty() {
            return Err(invalid("chain_id".into(), "must not be empty".into()));
        }
        if self.block_time_ms == 0 {
            return Err(invalid("block_time_ms".into(), "must be ≥ 1".into()));
        }
        if self.shared_params.num_blocks_per_session == 0 {
            return Err(invalid(
                "shared_params.num_blocks_per_session".into(),
                "must be ≥ 1".into(),
            ));
        }
        if self.shared_params.compute_unit_cost_granularity == 0 {
            return Err(invalid(
                "shared_params.compute_unit_cost_granularity".into(),
                "must be ≥ 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.proof_params.proof_request_probability) {
            return Err(invalid(
                "proof_params.proof_request_probability".into(),
                format!("{} is not in [0, 1]", self.proof_params.proof_request_probability),
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, svc) in self.services.iter().enumerate() {
            if svc.id.is_empty() || !ids.insert(svc.id.as_str()) {
                return Err(invalid(
                    format!("services[{i}].id"),
                    format!("`{}` is empty or defined twice", svc.id),
                ));
            }
            if svc.compute_units_per_relay == 0 {
                return Err(invalid(
                    format!("services[{i}].compute_units_per_relay"),
                    "must be ≥ 1".into(),
                ));
            }
            if let Some(t) = &svc.difficulty_target_hex
                && !hex::decode(t).is_ok_and(|b| b.len() == 32)
            {
                return Err(invalid(
                    format!("services[{i}].difficulty_target_hex"),
                    "must be 64 hex digits (32 bytes)".into(),
                ));
            }
        }
        let known = |key: String, id: &str| {
            if ids.contains(id) {
                Ok(())
            } else {
                Err(invalid(key, format!("no service `{id}` in `services`")))
            }
        };
        let key_ok = |key: String, key_hex: &str| {
            crate::protocol::address::signing_key_from_hex(key_hex)
                .map(drop)
                .map_err(|e| invalid(key, format!("not a secp256k1 private key in hex: {e}")))
        };
        for (i, gw) in self.gateways.iter().enumerate() {
            key_ok(format!("gateways[{i}].key_hex"), &gw.key_hex)?;
        }
        for (i, app) in self.applications.iter().enumerate() {
            key_ok(format!("applications[{i}].key_hex"), &app.key_hex)?;
            for (j, id) in app.services.iter().enumerate() {
                known(format!("applications[{i}].services[{j}]"), id)?;
            }
            if let Some(bad) = app.delegate_to.iter().find(|g| **g >= self.gateways.len()) {
                return Err(invalid(
                    format!("applications[{i}].delegate_to"),
                    format!("no gateway {bad} (there are {})", self.gateways.len()),
                ));
            }
        }
        for (i, sup) in self.suppliers.iter().enumerate() {
            key_ok(format!("suppliers[{i}].key_hex"), &sup.key_hex)?;
            for (j, svc) in sup.services.iter().enumerate() {
                known(format!("suppliers[{i}].services[{j}].service_id"), &svc.service_id)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../../../config/sim-genesis.yaml");

    #[test]
    fn demo_genesis_loads() {
        let g = Genesis::from_yaml(DEMO).unwrap();
        assert_eq!(g.chain_id, "pocket");
        assert!(!g.suppliers.is_empty() && !g.applications.is_empty());
    }

    #[test]
    fn errors_name_the_key_and_the_problem() {
        let cases = [
            ("chain_id: pocket\n", "services"),
            (
                "chain_id: pocket\nbogus: 1\nservices: []\napplications: []\nsuppliers: []\n",
                "bogus",
            ),
            (
                "chain_id: pocket\nservices: [{id: a, compute_units_per_relay: x}]\napplications: []\nsuppliers: []\n",
                "services[0].compute_units_per_relay",
            ),
        ];
        for (yaml, key) in cases {
            let e = Genesis::from_yaml(yaml).unwrap_err().to_string();
            assert!(e.contains(key), "{e} should name {key}");
        }
        let mut g = Genesis::from_yaml(DEMO).unwrap();
        g.suppliers[0].services[0].service_id = "nope".into();
        let e = g.validate().unwrap_err().to_string();
        assert!(
            e.contains("suppliers[0].services[0].service_id") && e.contains("nope"),
            "{e}"
        );
        let mut g = Genesis::from_yaml(DEMO).unwrap();
        g.applications[1].key_hex = "zz".into();
        let e = g.validate().unwrap_err().to_string();
        assert!(e.contains("applications[1].key_hex"), "{e}");
        let mut g = Genesis::from_yaml(DEMO).unwrap();
        g.services[1].difficulty_target_hex = Some("ab".into());
        let e = g.validate().unwrap_err().to_string();
        assert!(e.contains("services[1].difficulty_target_hex"), "{e}");
    }
}
