//! Claim settlements as poktroll reports them: what happened to a claim once its proof window closed.
//!
//! Why: poktroll settles every claim at the end of block `SettlementSessionEnd` (the proof window's close, §3),
//! right after validating that block's proofs, and then **removes the claim from state**
//! (`x/tokenomics/keeper/settle_pending_claims.go`, `RemoveClaim`). From then on a claim lookup answers "not
//! found" whether the supplier was paid or slashed, so a miner that asks only for the claim reads a proof
//! included in that very block, or a session it looks at again after a restart, as lost. The outcome is in the
//! block's `FinalizeBlock` events (CometBFT `block_results`, `finalize_block_events`), one per claim:
//! - `pocket.tokenomics.EventClaimSettled`: paid (no proof required, or a validated one);
//! - `pocket.tokenomics.EventClaimExpired`: a required proof was missing or invalid (`expiration_reason`);
//! - `pocket.tokenomics.EventClaimDiscarded`: settlement failed unexpectedly and the claim was dropped.
//!
//! Two more events of the same block tell what a settlement cost ([`BlockSettlements`]):
//! - `pocket.tokenomics.EventApplicationOverserviced`: the application's stake could not cover a claim, which
//!   was settled for less (`x/tokenomics/keeper/token_logic_modules.go`, `ensureClaimAmountLimits`);
//! - `pocket.tokenomics.EventSupplierSlashed`: the supplier of an expired claim lost `proof_missing_penalty` of
//!   its stake (`slashSupplierStake`).
//!
//! Encoding (cosmos-sdk `TypedEventToEvent`): one attribute per proto field, keyed by the field's proto name,
//! valued with the field's proto-JSON (strings and 64-bit integers quoted, 32-bit integers and enums as in
//! jsonpb), plus `mode` = `EndBlock`. At poktroll v0.1.35 the events carry `supplier_operator_address`,
//! `application_address`, `service_id` and `session_end_block_height`, which identify a supplier's session (an
//! application has one session per service at a time); `EventClaimSettled` also has `session_id`. Older
//! releases carried the whole claim as a `claim` attribute instead; both are read.
//!
//! Pure: no IO. The miner asks for the settlement block's results ([`crate::chain::comet::CometClient::
//! block_results`]) and matches its sessions with [`ClaimSettlement::is_for`].

use serde_json::Value;

use crate::chain::comet::AbciEvent;

/// Event type of a settled (paid) claim.
pub const CLAIM_SETTLED: &str = "pocket.tokenomics.EventClaimSettled";
/// Event type of an expired claim (required proof missing or invalid: not paid, the supplier slashed).
pub const CLAIM_EXPIRED: &str = "pocket.tokenomics.EventClaimExpired";
/// Event type of a claim discarded because its settlement failed (not paid).
pub const CLAIM_DISCARDED: &str = "pocket.tokenomics.EventClaimDiscarded";
/// Event type of a claim the application's stake could not cover (settled for less than claimed).
pub const APPLICATION_OVERSERVICED: &str = "pocket.tokenomics.EventApplicationOverserviced";
/// Event type of a supplier slashed for an expired claim (required proof missing or invalid).
pub const SUPPLIER_SLASHED: &str = "pocket.tokenomics.EventSupplierSlashed";

/// What the chain did with a claim at settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementOutcome {
    /// Paid.
    Settled {
        /// Whether the claim needed a proof (then a validated one was on chain).
        proof_required: bool,
    },
    /// Not paid: a required proof was missing or invalid. `reason` is poktroll's `ClaimExpirationReason` name
    /// (`PROOF_MISSING`, `PROOF_INVALID`).
    Expired {
        /// The expiration reason.
        reason: String,
    },
    /// Not paid: the chain's settlement of this claim failed and it was dropped.
    Discarded {
        /// The chain's error text.
        error: String,
    },
}

/// One claim's settlement, read from its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSettlement {
    /// Supplier operator address.
    pub supplier: String,
    /// Application of the session.
    pub application: String,
    /// Service of the session.
    pub service_id: String,
    /// The session's end height.
    pub session_end: i64,
    /// The session id, when the event carries it.
    pub session_id: Option<String>,
    /// Relays in the claim's root (`num_relays`), when present.
    pub relays: Option<u64>,
    /// Compute units in the claim's root (`num_claimed_compute_units`), when present.
    pub compute_units: Option<u64>,
    /// What the claim is worth in uPOKT (`claimed_upokt`), when present.
    pub claimed_upokt: Option<u128>,
    /// What a settled claim was paid in uPOKT (`settled_upokt`: the claim's worth, or less when the application
    /// was overserviced); `None` for an expired or discarded claim and in releases before the field.
    pub settled_upokt: Option<u128>,
    /// What the supplier's revenue-share holders received for the claim in uPOKT: the `reward_distribution_detailed`
    /// entries whose `op_reason` is a supplier-shareholder distribution (`TLM_RELAY_BURN_EQUALS_MINT_SUPPLIER_
    /// SHAREHOLDER_*` and `TLM_GLOBAL_MINT_SUPPLIER_SHAREHOLDER_*`, v0.1.33 on), after the mint ratio and the
    /// DAO, proposer and source-owner allocations; `None` when the event carries no detailed distribution.
    pub supplier_share_upokt: Option<u128>,
    /// What happened.
    pub outcome: SettlementOutcome,
}

/// A settlement event that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event}: {reason}")]
pub struct SettlementEventError {
    /// The event type.
    pub event: String,
    /// What is wrong.
    pub reason: String,
}

impl ClaimSettlement {
    /// Reads a settlement event; `None` for any other event type.
    pub fn from_event(event: &AbciEvent) -> Option<Result<Self, SettlementEventError>> {
        if ![CLAIM_SETTLED, CLAIM_EXPIRED, CLAIM_DISCARDED].contains(&event.kind.as_str()) {
            return None;
        }
        Some(Self::read(event))
    }

    /// Whether this is the settlement of the given supplier's session.
    pub fn is_for(&self, supplier: &str, application: &str, service_id: &str, session_end: i64) -> bool {
        self.supplier == supplier
            && self.application == application
            && self.service_id == service_id
            && self.session_end == session_end
    }

    fn read(event: &AbciEvent) -> Result<Self, SettlementEventError> {
        let err = |reason: String| SettlementEventError {
            event: event.kind.clone(),
            reason,
        };
        // Releases before the flattened events carried the claim itself.
        let claim: Option<Value> = event.attribute("claim").and_then(|v| serde_json::from_str(v).ok());
        let header = claim.as_ref().and_then(|c| c.get("session_header"));
        let field = |name: &str, in_claim: Option<&Value>| -> Option<String> {
            event
                .attribute(name)
                .map(json_scalar)
                .or_else(|| in_claim.and_then(|c| c.get(name)).and_then(value_scalar))
        };
        let supplier = field("supplier_operator_address", claim.as_ref())
            .ok_or_else(|| err("no supplier_operator_address".into()))?;
        let application = field("application_address", header).ok_or_else(|| err("no application_address".into()))?;
        let service_id = field("service_id", header).ok_or_else(|| err("no service_id".into()))?;
        let session_end =
            field("session_end_block_height", header).ok_or_else(|| err("no session_end_block_height".into()))?;
        let session_end = session_end
            .parse::<i64>()
            .map_err(|e| err(format!("session_end_block_height {session_end:?}: {e}")))?;
        let number = |name: &str| field(name, None).and_then(|v| v.parse::<u64>().ok());
        let outcome = match event.kind.as_str() {
            CLAIM_SETTLED => {
                // v0.1.35: `proof_requirement_int` (0 = NOT_REQUIRED); before: the enum's name.
                let required = field("proof_requirement_int", None)
                    .or_else(|| field("proof_requirement", None))
                    .is_some_and(|v| v != "0" && v != "NOT_REQUIRED");
                SettlementOutcome::Settled {
                    proof_required: required,
                }
            }
            CLAIM_EXPIRED => SettlementOutcome::Expired {
                reason: field("expiration_reason", None).unwrap_or_else(|| "EXPIRATION_REASON_UNSPECIFIED".into()),
            },
            _ => SettlementOutcome::Discarded {
                error: field("error", None).unwrap_or_default(),
            },
        };
        Ok(Self {
            supplier,
            application,
            service_id,
            session_end,
            session_id: field("session_id", header),
            relays: number("num_relays"),
            compute_units: number("num_claimed_compute_units"),
            claimed_upokt: field("claimed_upokt", None).and_then(|v| upokt(&v)),
            settled_upokt: field("settled_upokt", None).and_then(|v| upokt(&v)),
            supplier_share_upokt: event.attribute("reward_distribution_detailed").and_then(supplier_share),
            outcome,
        })
    }
}

/// Every claim settlement among `events`, with the ones that could not be read.
pub fn settlements(events: &[AbciEvent]) -> Vec<Result<ClaimSettlement, SettlementEventError>> {
    events.iter().filter_map(ClaimSettlement::from_event).collect()
}

/// `EventApplicationOverserviced`: the application's stake could not cover a claim, which was settled for less
/// (poktroll `ensureClaimAmountLimits`, `x/tokenomics/keeper/token_logic_modules.go`). Both burns are in stake
/// terms (the settlement plus its global-inflation share): `expected_burn` what the claim asked of the
/// application's stake, `effective_burn` what it could give; the difference is what the supplier was not paid
/// for (in stake terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationOverserviced {
    /// Supplier operator address (`supplier_operator_addr`).
    pub supplier: String,
    /// Application (`application_addr`).
    pub application: String,
    /// Service of the session; `None` in older releases (the event did not say).
    pub service_id: Option<String>,
    /// The session's end height; `None` in older releases.
    pub session_end: Option<i64>,
    /// uPOKT the claim would have burnt from the application's stake.
    pub expected_burn: u128,
    /// uPOKT actually burnt (less than `expected_burn`).
    pub effective_burn: u128,
}

impl ApplicationOverserviced {
    /// Whether this is about the given supplier's session (a release that does not name the service or the
    /// session end matches on supplier and application alone).
    pub fn is_for(&self, supplier: &str, application: &str, service_id: &str, session_end: i64) -> bool {
        self.supplier == supplier
            && self.application == application
            && self.service_id.as_deref().is_none_or(|s| s == service_id)
            && self.session_end.is_none_or(|e| e == session_end)
    }

    /// uPOKT the supplier's claim exceeded what the application's stake could cover (in stake terms).
    pub fn exceeded_by(&self) -> u128 {
        self.expected_burn.saturating_sub(self.effective_burn)
    }
}

/// `EventSupplierSlashed`: a supplier's stake was slashed for an expired claim (poktroll `slashSupplierStake`,
/// `x/tokenomics/keeper/settle_pending_claims.go`), by the proof params' `proof_missing_penalty` (at most its
/// whole stake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierSlashed {
    /// Supplier operator address.
    pub supplier: String,
    /// Application of the session.
    pub application: String,
    /// Service of the session.
    pub service_id: String,
    /// The session's end height.
    pub session_end: i64,
    /// uPOKT slashed from the supplier's stake.
    pub penalty: u128,
}

impl SupplierSlashed {
    /// Whether this is about the given supplier's session.
    pub fn is_for(&self, supplier: &str, application: &str, service_id: &str, session_end: i64) -> bool {
        self.supplier == supplier
            && self.application == application
            && self.service_id == service_id
            && self.session_end == session_end
    }
}

/// Everything one block's finalize-block events say about claim settlements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSettlements {
    /// One per claim settled, expired or discarded.
    pub claims: Vec<ClaimSettlement>,
    /// Claims settled for less than they were worth.
    pub overserviced: Vec<ApplicationOverserviced>,
    /// Suppliers slashed for expired claims.
    pub slashed: Vec<SupplierSlashed>,
}

impl BlockSettlements {
    /// Reads a block's settlement events; the ones that cannot be read are returned apart (other events are
    /// skipped).
    pub fn read(events: &[AbciEvent]) -> (Self, Vec<SettlementEventError>) {
        let mut block = Self::default();
        let mut errors = Vec::new();
        for event in events {
            let read = match event.kind.as_str() {
                APPLICATION_OVERSERVICED => read_overserviced(event).map(|o| block.overserviced.push(o)),
                SUPPLIER_SLASHED => read_slashed(event).map(|s| block.slashed.push(s)),
                _ => match ClaimSettlement::from_event(event) {
                    Some(claim) => claim.map(|c| block.claims.push(c)),
                    None => Ok(()),
                },
            };
            if let Err(e) = read {
                errors.push(e);
            }
        }
        (block, errors)
    }
}

fn read_overserviced(event: &AbciEvent) -> Result<ApplicationOverserviced, SettlementEventError> {
    let err = |reason: String| SettlementEventError {
        event: event.kind.clone(),
        reason,
    };
    let text = |name: &str| event.attribute(name).map(json_scalar);
    let coin = |name: &str| -> Result<u128, SettlementEventError> {
        let raw = event.attribute(name).ok_or_else(|| err(format!("no {name}")))?;
        upokt(&json_scalar(raw)).ok_or_else(|| err(format!("{name} {raw:?} is no upokt amount")))
    };
    let session_end = match text("session_end_block_height") {
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|e| err(format!("session_end_block_height {v:?}: {e}")))?,
        ),
        None => None,
    };
    Ok(ApplicationOverserviced {
        supplier: text("supplier_operator_addr").ok_or_else(|| err("no supplier_operator_addr".into()))?,
        application: text("application_addr").ok_or_else(|| err("no application_addr".into()))?,
        service_id: text("service_id"),
        session_end,
        expected_burn: coin("expected_burn")?,
        effective_burn: coin("effective_burn")?,
    })
}

fn read_slashed(event: &AbciEvent) -> Result<SupplierSlashed, SettlementEventError> {
    let err = |reason: String| SettlementEventError {
        event: event.kind.clone(),
        reason,
    };
    let text = |name: &str| {
        event
            .attribute(name)
            .map(json_scalar)
            .ok_or_else(|| err(format!("no {name}")))
    };
    let session_end = text("session_end_block_height")?;
    let penalty = text("proof_missing_penalty")?;
    Ok(SupplierSlashed {
        supplier: text("supplier_operator_address")?,
        application: text("application_address")?,
        service_id: text("service_id")?,
        session_end: session_end
            .parse()
            .map_err(|e| err(format!("session_end_block_height {session_end:?}: {e}")))?,
        penalty: upokt(&penalty).ok_or_else(|| err(format!("proof_missing_penalty {penalty:?} is no upokt amount")))?,
    })
}

/// A uPOKT amount as poktroll's events write it: a coin's `String()` (`"1000upokt"`, the v0.1.35 string fields),
/// or, in older releases, a `cosmos.base.v1beta1.Coin` as JSON (`{"denom":"upokt","amount":"1000"}`).
/// The supplier shareholders' part of a `reward_distribution_detailed` attribute (a JSON array of
/// `{recipient_address, op_reason, amount}`, poktroll `SettlementOpReason` names): the sum of the amounts whose
/// reason names a supplier-shareholder distribution. `None` when the attribute is not such an array or an amount
/// of such an entry cannot be read (nothing counted rather than a part of it).
fn supplier_share(raw: &str) -> Option<u128> {
    let rows: Vec<Value> = serde_json::from_str(raw).ok()?;
    let mut total: u128 = 0;
    for row in &rows {
        let reason = row.get("op_reason").and_then(value_scalar).unwrap_or_default();
        if !reason.contains("SUPPLIER_SHAREHOLDER") {
            continue;
        }
        let amount = match row.get("amount")? {
            Value::String(text) => upokt(text)?,
            coin => upokt(&coin.to_string())?,
        };
        total = total.saturating_add(amount);
    }
    Some(total)
}

fn upokt(raw: &str) -> Option<u128> {
    if let Some(amount) = raw.strip_suffix("upokt") {
        return amount.parse().ok();
    }
    let coin: Value = serde_json::from_str(raw).ok()?;
    if coin.get("denom")?.as_str()? != "upokt" {
        return None;
    }
    coin.get("amount")?.as_str()?.parse().ok()
}

/// An attribute value as text: the JSON string's contents, a JSON number's digits, else the raw value (a node
/// that printed it unquoted).
fn json_scalar(raw: &str) -> String {
    serde_json::from_str::<Value>(raw)
        .ok()
        .as_ref()
        .and_then(value_scalar)
        .unwrap_or_else(|| raw.to_string())
}

fn value_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, attrs: &[(&str, &str)]) -> AbciEvent {
        AbciEvent {
            kind: kind.into(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// The supplier's revenue is its shareholders' rows of `reward_distribution_detailed` (relay burn = mint and
    /// global mint), not the DAO's, the proposer's or the source owner's, nor the settled amount.
    #[test]
    fn the_supplier_share_is_its_shareholder_rows_of_the_detailed_distribution() {
        let detailed = r#"[{"recipient_address":"pokt1owner","op_reason":"TLM_RELAY_BURN_EQUALS_MINT_SUPPLIER_SHAREHOLDER_REWARD_DISTRIBUTION","amount":"682upokt"},{"recipient_address":"pokt1dao","op_reason":"TLM_RELAY_BURN_EQUALS_MINT_DAO_REWARD_DISTRIBUTION","amount":"97upokt"},{"recipient_address":"pokt1val","op_reason":"TLM_RELAY_BURN_EQUALS_MINT_VALIDATOR_RD","amount":"49upokt"},{"recipient_address":"pokt1rev","op_reason":"TLM_GLOBAL_MINT_SUPPLIER_SHAREHOLDER_REWARD_DISTRIBUTION","amount":"70upokt"},{"recipient_address":"pokt1src","op_reason":"TLM_GLOBAL_MINT_SOURCE_OWNER_REWARD_DISTRIBUTION","amount":"15upokt"}]"#;
        assert_eq!(supplier_share(detailed), Some(752));
        assert_eq!(supplier_share("[]"), Some(0));
        // A shareholder row whose amount cannot be read: nothing, not a part.
        assert_eq!(
            supplier_share(
                r#"[{"op_reason":"TLM_GLOBAL_MINT_SUPPLIER_SHAREHOLDER_REWARD_DISTRIBUTION","amount":"x"}]"#
            ),
            None
        );
        assert_eq!(supplier_share("{}"), None);
        // Coin objects, as some encoders print a Coin.
        assert_eq!(
            supplier_share(
                r#"[{"op_reason":"TLM_RELAY_BURN_EQUALS_MINT_SUPPLIER_SHAREHOLDER_RD","amount":{"denom":"upokt","amount":"5"}}]"#
            ),
            Some(5)
        );
    }

    /// `EventClaimSettled` as poktroll v0.1.35 emits it through cosmos-sdk's `TypedEventToEvent` (keys sorted,
    /// values proto-JSON, `mode` appended by the SDK).
    #[test]
    fn settled_event_of_v0_1_35_golden() {
        let e = event(
            CLAIM_SETTLED,
            &[
                ("application_address", "\"pokt1app\""),
                ("claim_proof_status_int", "1"),
                ("claimed_upokt", "\"1000upokt\""),
                ("deflation_loss_upokt", "\"0upokt\""),
                ("reward_distribution", "{}"),
                ("mint_ratio", "\"1.000000000000000000\""),
                ("minted_upokt", "\"1000upokt\""),
                ("num_claimed_compute_units", "\"420\""),
                ("num_estimated_compute_units", "\"420\""),
                ("num_estimated_relays", "\"42\""),
                ("num_relays", "\"42\""),
                ("overservicing_loss_upokt", "\"0upokt\""),
                ("proof_requirement_int", "2"),
                ("reward_distribution_detailed", "[]"),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"363540\""),
                ("session_id", "\"abc123\""),
                ("settled_upokt", "\"1000upokt\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
                ("supplier_owner_address", "\"pokt1owner\""),
                ("mode", "EndBlock"),
            ],
        );
        let s = ClaimSettlement::from_event(&e).unwrap().unwrap();
        assert_eq!(
            s,
            ClaimSettlement {
                supplier: "pokt1supplier".into(),
                application: "pokt1app".into(),
                service_id: "anvil".into(),
                session_end: 363_540,
                session_id: Some("abc123".into()),
                relays: Some(42),
                compute_units: Some(420),
                claimed_upokt: Some(1000),
                settled_upokt: Some(1000),
                supplier_share_upokt: Some(0),
                outcome: SettlementOutcome::Settled { proof_required: true },
            }
        );
        assert!(s.is_for("pokt1supplier", "pokt1app", "anvil", 363_540));
        assert!(!s.is_for("pokt1other", "pokt1app", "anvil", 363_540));
        assert!(!s.is_for("pokt1supplier", "pokt1app", "anvil", 363_530));
        assert!(!s.is_for("pokt1supplier", "pokt1app2", "anvil", 363_540));
        assert!(!s.is_for("pokt1supplier", "pokt1app", "eth", 363_540));

        let not_required = event(
            CLAIM_SETTLED,
            &[
                ("application_address", "\"pokt1app\""),
                ("proof_requirement_int", "0"),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"10\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
            ],
        );
        let s = ClaimSettlement::from_event(&not_required).unwrap().unwrap();
        assert_eq!(s.outcome, SettlementOutcome::Settled { proof_required: false });
        assert_eq!((s.relays, s.session_id.as_deref()), (None, None));
    }

    #[test]
    fn expired_and_discarded_events_of_v0_1_35_golden() {
        let e = event(
            CLAIM_EXPIRED,
            &[
                ("application_address", "\"pokt1app\""),
                ("claim_proof_status_int", "0"),
                ("claimed_upokt", "\"1000upokt\""),
                ("expiration_reason", "\"PROOF_MISSING\""),
                ("num_claimed_compute_units", "\"420\""),
                ("num_estimated_compute_units", "\"420\""),
                ("num_estimated_relays", "\"42\""),
                ("num_relays", "\"42\""),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"363540\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
                ("mode", "EndBlock"),
            ],
        );
        let s = ClaimSettlement::from_event(&e).unwrap().unwrap();
        assert_eq!(
            s.outcome,
            SettlementOutcome::Expired {
                reason: "PROOF_MISSING".into()
            }
        );
        assert_eq!(
            (s.relays, s.compute_units, s.session_id.as_deref()),
            (Some(42), Some(420), None)
        );
        assert_eq!((s.claimed_upokt, s.settled_upokt), (Some(1000), None));
        assert!(s.is_for("pokt1supplier", "pokt1app", "anvil", 363_540));

        let d = event(
            CLAIM_DISCARDED,
            &[
                ("application_address", "\"pokt1app\""),
                ("claim_proof_status_int", "0"),
                ("error", "\"settlement failed\""),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"363540\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
            ],
        );
        let s = ClaimSettlement::from_event(&d).unwrap().unwrap();
        assert_eq!(
            s.outcome,
            SettlementOutcome::Discarded {
                error: "settlement failed".into()
            }
        );
    }

    /// Releases before the flattened events carried the claim as one JSON attribute.
    #[test]
    fn older_events_with_the_whole_claim_are_read() {
        let claim = r#"{"supplier_operator_address":"pokt1supplier","session_header":{"application_address":"pokt1app","service_id":"anvil","session_id":"abc","session_start_block_height":"1","session_end_block_height":"10"},"root_hash":"AAAA","proof_validation_status":"VALIDATED"}"#;
        let e = event(
            CLAIM_SETTLED,
            &[
                ("claim", claim),
                ("num_relays", "\"5\""),
                ("proof_requirement", "\"NOT_REQUIRED\""),
            ],
        );
        let s = ClaimSettlement::from_event(&e).unwrap().unwrap();
        assert!(s.is_for("pokt1supplier", "pokt1app", "anvil", 10));
        assert_eq!(s.session_id.as_deref(), Some("abc"));
        assert_eq!(s.outcome, SettlementOutcome::Settled { proof_required: false });
        assert_eq!(s.relays, Some(5));
    }

    #[test]
    fn other_events_are_skipped_and_unreadable_ones_reported() {
        assert!(ClaimSettlement::from_event(&event("pocket.proof.EventProofValidityChecked", &[])).is_none());
        let missing = ClaimSettlement::from_event(&event(CLAIM_SETTLED, &[("service_id", "\"anvil\"")]))
            .unwrap()
            .unwrap_err();
        assert!(missing.reason.contains("supplier_operator_address"), "{missing}");
        let bad_height = event(
            CLAIM_EXPIRED,
            &[
                ("application_address", "\"pokt1app\""),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"ten\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
            ],
        );
        let e = ClaimSettlement::from_event(&bad_height).unwrap().unwrap_err();
        assert!(e.reason.contains("session_end_block_height"), "{e}");
        let all = settlements(&[
            event("transfer", &[]),
            bad_height,
            event(
                CLAIM_SETTLED,
                &[
                    ("application_address", "\"a\""),
                    ("service_id", "\"s\""),
                    ("session_end_block_height", "\"4\""),
                    ("supplier_operator_address", "\"p\""),
                ],
            ),
        ]);
        assert_eq!(all.len(), 2);
        assert!(all[0].is_err() && all[1].is_ok());
    }

    /// `EventApplicationOverserviced` and `EventSupplierSlashed` as poktroll v0.1.35 emits them
    /// (`ensureClaimAmountLimits`, `slashSupplierStake`): amounts as a coin's `String()`, read with the claims of
    /// the same block.
    #[test]
    fn overserviced_and_slashed_events_of_v0_1_35_golden() {
        let overserviced = event(
            APPLICATION_OVERSERVICED,
            &[
                ("application_addr", "\"pokt1app\""),
                ("effective_burn", "\"1000upokt\""),
                ("expected_burn", "\"1386upokt\""),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"363540\""),
                ("spend_limit_exceeded", "false"),
                ("supplier_operator_addr", "\"pokt1supplier\""),
                ("mode", "EndBlock"),
            ],
        );
        let slashed = event(
            SUPPLIER_SLASHED,
            &[
                ("application_address", "\"pokt1app2\""),
                ("claim_proof_status_int", "0"),
                ("proof_missing_penalty", "\"320upokt\""),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"363540\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
                ("supplier_stake_after_slash", "\"999680upokt\""),
                ("mode", "EndBlock"),
            ],
        );
        let settled = event(
            CLAIM_SETTLED,
            &[
                ("application_address", "\"pokt1app\""),
                ("claimed_upokt", "\"1260upokt\""),
                ("proof_requirement_int", "0"),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"363540\""),
                ("settled_upokt", "\"909upokt\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
            ],
        );
        let (block, errors) = BlockSettlements::read(&[event("transfer", &[]), overserviced, settled, slashed]);
        assert_eq!(errors, vec![]);
        assert_eq!(
            block.overserviced,
            vec![ApplicationOverserviced {
                supplier: "pokt1supplier".into(),
                application: "pokt1app".into(),
                service_id: Some("anvil".into()),
                session_end: Some(363_540),
                expected_burn: 1386,
                effective_burn: 1000,
            }]
        );
        assert_eq!(block.overserviced[0].exceeded_by(), 386);
        assert!(block.overserviced[0].is_for("pokt1supplier", "pokt1app", "anvil", 363_540));
        assert!(!block.overserviced[0].is_for("pokt1supplier", "pokt1app", "anvil", 363_530));
        assert!(!block.overserviced[0].is_for("pokt1other", "pokt1app", "anvil", 363_540));
        assert_eq!(
            block.slashed,
            vec![SupplierSlashed {
                supplier: "pokt1supplier".into(),
                application: "pokt1app2".into(),
                service_id: "anvil".into(),
                session_end: 363_540,
                penalty: 320,
            }]
        );
        assert!(block.slashed[0].is_for("pokt1supplier", "pokt1app2", "anvil", 363_540));
        assert!(!block.slashed[0].is_for("pokt1supplier", "pokt1app", "anvil", 363_540));
        assert_eq!(block.claims.len(), 1);
        assert_eq!(
            (block.claims[0].claimed_upokt, block.claims[0].settled_upokt),
            (Some(1260), Some(909))
        );
    }

    /// Older releases carried the burns as `cosmos.base.v1beta1.Coin` JSON and no service or session end (then
    /// matched on supplier and application); an unreadable amount is reported, not read as zero.
    #[test]
    fn older_overserviced_events_and_unreadable_amounts() {
        let older = event(
            APPLICATION_OVERSERVICED,
            &[
                ("application_addr", "\"pokt1app\""),
                ("effective_burn", r#"{"denom":"upokt","amount":"10"}"#),
                ("expected_burn", r#"{"denom":"upokt","amount":"25"}"#),
                ("supplier_operator_addr", "\"pokt1supplier\""),
            ],
        );
        let bad = event(
            SUPPLIER_SLASHED,
            &[
                ("application_address", "\"pokt1app\""),
                ("proof_missing_penalty", "\"320uatom\""),
                ("service_id", "\"anvil\""),
                ("session_end_block_height", "\"10\""),
                ("supplier_operator_address", "\"pokt1supplier\""),
            ],
        );
        let (block, errors) = BlockSettlements::read(&[older, bad]);
        assert_eq!(block.overserviced.len(), 1);
        assert_eq!(block.overserviced[0].exceeded_by(), 15);
        assert!(block.overserviced[0].is_for("pokt1supplier", "pokt1app", "anvil", 10));
        assert!(block.slashed.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.contains("proof_missing_penalty"), "{}", errors[0]);
    }
}
