//! What the chain checks: tx authentication (SIGN_MODE_DIRECT, unordered or ordered), `MsgCreateClaim` (§6.1),
//! `MsgSubmitProof` at tx time (§5.4 steps 1–12) and at end block (steps 13–17), session hydration (§3), and
//! settlement (required proof missing or invalid ⇒ expired and slashed, §6.2).

use k256::ecdsa::signature::Verifier as _;
use prost::Message as _;

use super::validate_basic::Refusal;
use super::{ChainState, ClaimEntry, MsgRecord, Settlement, TxResult};
use crate::chain::tx::{AuthInfo, SignDoc, TxBody, TxRaw};
use crate::protocol::session::{self, SessionWindows};
use crate::protocol::wire::{self, SessionHeader};
use crate::protocol::{address, difficulty, lottery, relay, ring, supplier_sig};
use crate::smst::hash::root_sum_count;

/// Hydrates the session of (app, service) at `height` (§3); `Err` with the chain's reason.
pub(super) fn hydrate_session(s: &ChainState, app: &str, service: &str, height: i64) -> Result<wire::Session, String> {
    let height = if height <= 0 { s.height } else { height };
    if height > s.height {
        return Err(format!("height {height} is in the future (latest {})", s.height));
    }
    // The grid of the params at that height (§3: `ParamsAtHeight(h)`).
    let params = s.shared_at(height);
    let windows = SessionWindows::new(&params, height).map_err(|e| e.to_string())?;
    let application = s
        .applications
        .get(app)
        .ok_or_else(|| format!("application {app} not found"))?;
    if !application.service_configs.iter().any(|c| c.service_id == service) {
        return Err(format!("application {app} is not staked for service {service}"));
    }
    if !s.services.contains_key(service) {
        return Err(format!("service {service} not found"));
    }
    let start_hash = s
        .block_hashes
        .get(&windows.start)
        .ok_or_else(|| format!("no block at {}", windows.start))?;
    let session_id = session::session_id(start_hash, service, app, windows.start);
    let candidates: Vec<String> = s
        .suppliers
        .values()
        .filter(|sup| {
            sup.service_config_history.iter().any(|u| {
                u.service.as_ref().is_some_and(|c| c.service_id == service)
                    && session::config_active_at(u.activation_height, u.deactivation_height, height)
            })
        })
        .map(|sup| sup.operator_address.clone())
        .collect();
    if candidates.is_empty() {
        return Err(format!("no suppliers for service {service}"));
    }
    let n = usize::try_from(s.genesis.num_suppliers_per_session).unwrap_or(usize::MAX);
    let selected = session::select_suppliers(start_hash, service, app, windows.start, &candidates, n);
    Ok(wire::Session {
        header: Some(SessionHeader {
            application_address: app.to_string(),
            service_id: service.to_string(),
            session_id: session_id.clone(),
            session_start_block_height: windows.start,
            session_end_block_height: windows.end,
        }),
        session_id,
        session_number: windows.number,
        num_blocks_per_session: params.num_blocks_per_session as i64,
        application: Some(application.clone()),
        suppliers: selected.iter().filter_map(|op| s.suppliers.get(op).cloned()).collect(),
    })
}

/// Checks a message's header against the hydrated on-chain session and supplier membership as poktroll's
/// `queryAndValidateSessionHeader` does (`x/proof/keeper/session.go`; §5.4 step 2, §6.1): the session is hydrated
/// at the header's start height and only its session id and supplier list are compared, not the other header
/// fields. Returns the on-chain header.
fn check_session(s: &ChainState, header: &SessionHeader, supplier: &str) -> Result<SessionHeader, String> {
    session::validate_header(header).map_err(|e| e.to_string())?;
    let on_chain = hydrate_session(
        s,
        &header.application_address,
        &header.service_id,
        header.session_start_block_height,
    )?;
    let on_chain_header = on_chain.header.unwrap_or_default();
    if on_chain_header.session_id != header.session_id {
        return Err(format!(
            "session id mismatch: on chain {}, got {}",
            on_chain_header.session_id, header.session_id
        ));
    }
    if !on_chain.suppliers.iter().any(|sup| sup.operator_address == supplier) {
        return Err(format!("supplier {supplier} is not in session {}", header.session_id));
    }
    Ok(on_chain_header)
}

fn claim_bytes(claim: &wire::Claim) -> Vec<u8> {
    wire::Claim {
        proof_validation_status: 0,
        ..claim.clone()
    }
    .encode_to_vec()
}

/// The windows of the session ending at `end`, from the shared params at `end` (§3; poktroll
/// `validateClaimWindow`/`validateProofWindow`, the proof seed and settlement all read `ParamsAtHeight(end)`).
fn windows_of(s: &ChainState, end: i64) -> Result<SessionWindows, String> {
    SessionWindows::new(&s.shared_at(end), end).map_err(|e| e.to_string())
}

/// The uPOKT a claim of `sum` compute units of the session header is worth (§6.3.1): difficulty and shared
/// params at the session start (poktroll `GetClaimeduPOKT` with `GetRelayMiningDifficultyAtHeight` and
/// `GetParamsAtHeight` of the start, in claim creation, proof requirement and settlement alike).
fn claimed_upokt_of(s: &ChainState, header: &SessionHeader, sum: u64) -> Option<num_bigint::BigUint> {
    let start = header.session_start_block_height;
    let target = s.target_at(&header.service_id, start)?;
    let params = s.shared_at(start);
    lottery::claimed_upokt(
        sum,
        &target,
        params.compute_units_to_tokens_multiplier,
        params.compute_unit_cost_granularity,
    )
}

/// The proof requirement of a stored claim (§6.3; poktroll `ProofRequirementForClaim`): the claim's worth at
/// its session start, the seed block of the params at its end, and the live proof params (the chain keeps no
/// history of them: at proof submission and at settlement it reads the params of that block). `None` until the
/// seed block exists.
pub(super) fn proof_required(s: &ChainState, claim: &wire::Claim) -> Option<bool> {
    let header = claim.session_header.as_ref()?;
    let windows = windows_of(s, header.session_end_block_height).ok()?;
    let seed_hash = s.block_hashes.get(&windows.proof_seed_height())?;
    let (sum, _) = root_sum_count(&claim.root_hash)?;
    let claimed = claimed_upokt_of(s, header, sum)?;
    let reason = lottery::proof_requirement(&claim_bytes(claim), seed_hash, &claimed, &s.proof);
    Some(reason != lottery::ProofRequirementReason::NotRequired)
}

fn create_claim(s: &mut ChainState, msg: &wire::MsgCreateClaim, height: i64) -> Result<(), String> {
    let header = msg.session_header.as_ref().ok_or("claim without session header")?;
    let (sum, count) = root_sum_count(&msg.root_hash)
        .ok_or_else(|| format!("root hash must be 48 bytes, got {}", msg.root_hash.len()))?;
    if sum == 0 || count == 0 {
        return Err("claim root has zero sum or count".into());
    }
    check_session(s, header, &msg.supplier_operator_address)?;
    // From here poktroll's `CreateClaim` works with the message's header, not the hydrated one: it is what the
    // claim stores ("use the session header from the message, not the queried session"), its end height places
    // the claim window and its start height picks the compute units per relay (§6.1).
    let windows = windows_of(s, header.session_end_block_height)?;
    if !windows.claim_in_window(height) {
        return Err(format!(
            "claim at height {height} outside the claim window [{}, {}]",
            windows.claim_open, windows.claim_close
        ));
    }
    // Compute units per relay at the session start (poktroll `getServiceComputeUnitsPerRelay`): every relay of
    // the session was weighted with it, whatever the service's value is now.
    let cupr = s
        .compute_units_at(&header.service_id, header.session_start_block_height)
        .ok_or("unknown service")?;
    if Some(sum) != count.checked_mul(cupr) {
        return Err(format!(
            "root sum {sum} != count {count} × compute units per relay {cupr}"
        ));
    }
    let claim = wire::Claim {
        supplier_operator_address: msg.supplier_operator_address.clone(),
        session_header: Some(header.clone()),
        root_hash: msg.root_hash.clone(),
        proof_validation_status: 0,
    };
    s.claims.insert(
        (header.session_id.clone(), msg.supplier_operator_address.clone()),
        ClaimEntry {
            claim,
            proof_required: None,
            proof_pending: None,
            settlement: None,
        },
    );
    Ok(())
}

/// Tx-time proof checks (§5.4 steps 1–12).
fn submit_proof(s: &mut ChainState, msg: &wire::MsgSubmitProof, height: i64) -> Result<(), String> {
    let supplier = &msg.supplier_operator_address;
    if !address::is_valid_address(supplier) {
        return Err("invalid supplier operator address".into());
    }
    let header = msg.session_header.as_ref().ok_or("proof without session header")?;
    if msg.proof.is_empty() {
        return Err("empty proof".into());
    }
    let on_chain = check_session(s, header, supplier)?;
    let windows = windows_of(s, on_chain.session_end_block_height)?;
    if !windows.proof_in_window(height) {
        return Err(format!(
            "proof at height {height} outside the proof window [{}, {}]",
            windows.proof_open, windows.proof_close
        ));
    }
    let compact = crate::protocol::gob::decode_closest_proof(&msg.proof).map_err(|e| format!("proof decode: {e}"))?;
    let proof = crate::smst::ClosestProof::decompact(&compact).map_err(|e| e.to_string())?;
    let value = &proof.closest_value_hash;
    let relay_bytes = value
        .get(..value.len().saturating_sub(16))
        .ok_or("closest value too short")?;
    let decoded = relay::decode_relay(relay_bytes, relay::MAX_RELAY_MESSAGE_BYTES).map_err(|e| e.to_string())?;
    let req = decoded.req.as_ref().ok_or("relay without request")?;
    let res = decoded.res.as_ref().ok_or("relay without response")?;
    let req_meta = req.meta.as_ref().ok_or("request without meta")?;
    let req_header = req_meta
        .session_header
        .as_ref()
        .ok_or("request without session header")?;
    session::validate_header(req_header).map_err(|e| format!("request header: {e}"))?;
    if req_meta.signature.is_empty() || req_meta.supplier_operator_address.is_empty() {
        return Err("request without signature or supplier".into());
    }
    if &req_meta.supplier_operator_address != supplier {
        return Err("relay request names another supplier".into());
    }
    let res_meta = res.meta.as_ref().ok_or("response without meta")?;
    let res_header = res_meta
        .session_header
        .as_ref()
        .ok_or("response without session header")?;
    session::validate_header(res_header).map_err(|e| format!("response header: {e}"))?;
    if res_meta.supplier_operator_signature.is_empty() {
        return Err("response without supplier signature".into());
    }
    if *req_header != on_chain || *res_header != on_chain {
        return Err("relay session headers differ from the on-chain session".into());
    }
    // (9) the target at the session start (poktroll `GetRelayMiningDifficultyAtHeight(start)`).
    let target = s
        .target_at(&on_chain.service_id, on_chain.session_start_block_height)
        .ok_or("unknown service")?;
    if !difficulty::is_volume_applicable(&relay::relay_hash(relay_bytes), &target) {
        return Err("relay hash does not meet the difficulty target".into());
    }
    let key = (on_chain.session_id.clone(), supplier.clone());
    let entry = s.claims.get(&key).ok_or("no claim for this session and supplier")?;
    // (10) the claim's stored header (the one its message carried) against the on-chain header (poktroll
    // `validateSessionClaim`, `x/proof/keeper/proof_validation.go`).
    claim_matches_session(&entry.claim, &on_chain)?;
    let fee: u128 = s
        .proof
        .proof_submission_fee
        .as_ref()
        .and_then(|c| c.amount.parse().ok())
        .unwrap_or(0);
    let balance = s.accounts.get(supplier).map(|a| a.balance).unwrap_or(0);
    if balance <= fee {
        return Err(format!(
            "supplier balance {balance} must exceed the proof submission fee {fee}"
        ));
    }
    let required = proof_required(s, &entry.claim).ok_or("proof seed block does not exist yet")?;
    if !required {
        return Err("proof not required for this claim".into());
    }
    if let Some(account) = s.accounts.get_mut(supplier) {
        account.balance -= fee;
    }
    if let Some(entry) = s.claims.get_mut(&key) {
        entry.proof_required = Some(true);
        entry.proof_pending = Some(msg.clone());
    }
    Ok(())
}

/// §5.4 step 10 (poktroll `validateSessionClaim`): the claim's header has the on-chain session's start and end
/// heights, application and service, with poktroll's texts.
fn claim_matches_session(claim: &wire::Claim, on_chain: &SessionHeader) -> Result<(), String> {
    let stored = claim.session_header.clone().unwrap_or_default();
    if stored.session_start_block_height != on_chain.session_start_block_height {
        return Err(format!(
            "claim session start height {} does not match proof session start height {}: invalid session start height",
            stored.session_start_block_height, on_chain.session_start_block_height
        ));
    }
    if stored.session_end_block_height != on_chain.session_end_block_height {
        return Err(format!(
            "claim session end height {} does not match proof session end height {}: invalid session end height",
            stored.session_end_block_height, on_chain.session_end_block_height
        ));
    }
    if stored.application_address != on_chain.application_address {
        return Err(format!(
            "claim application address {:?} does not match proof application address {:?}: invalid address",
            stored.application_address, on_chain.application_address
        ));
    }
    if stored.service_id != on_chain.service_id {
        return Err(format!(
            "claim service ID {:?} does not match proof service ID {:?}: invalid service in supplier",
            stored.service_id, on_chain.service_id
        ));
    }
    Ok(())
}

/// End-block proof checks (§5.4 steps 13–17): ring and supplier signatures, closest path, closest proof.
fn validate_proof_end_block(s: &ChainState, entry: &ClaimEntry, msg: &wire::MsgSubmitProof) -> Result<(), String> {
    let supplier = &msg.supplier_operator_address;
    let supplier_key = s
        .accounts
        .get(supplier)
        .and_then(|a| a.pubkey)
        .ok_or("supplier has no public key")?;
    let header = entry.claim.session_header.as_ref().ok_or("claim without header")?;
    let compact = crate::protocol::gob::decode_closest_proof(&msg.proof).map_err(|e| e.to_string())?;
    let proof = crate::smst::ClosestProof::decompact(&compact).map_err(|e| e.to_string())?;
    let value = &proof.closest_value_hash;
    let relay_bytes = &value[..value.len().saturating_sub(16)];
    let decoded = relay::decode_relay(relay_bytes, relay::MAX_RELAY_MESSAGE_BYTES).map_err(|e| e.to_string())?;
    let req = decoded.req.unwrap_or_default();
    let res = decoded.res.unwrap_or_default();
    // (14) ring signature of the request, ring at the session end height.
    let app = s
        .applications
        .get(&header.application_address)
        .ok_or("application not found")?;
    let pending: std::collections::BTreeMap<u64, Vec<String>> = app
        .pending_undelegations
        .iter()
        .map(|(k, v)| (*k, v.gateway_addresses.clone()))
        .collect();
    let target_end = header.session_end_block_height.max(0) as u64;
    // Every member's public key: a member without one on chain fails the whole ring (poktroll
    // `pkg/crypto/rings` `addressesToPubKeys` returns the account query's error), so the proof is INVALID.
    let expected: Vec<[u8; 33]> =
        ring::expected_ring_addresses(&app.address, &app.delegatee_gateway_addresses, &pending, target_end)
            .iter()
            .map(|a| {
                if *a == ring::placeholder_address() {
                    Ok(ring::placeholder_public_key())
                } else {
                    s.accounts
                        .get(a)
                        .and_then(|acc| acc.pubkey)
                        .ok_or_else(|| format!("ring signature: ring member {a} has no public key on chain"))
                }
            })
            .collect::<Result<_, String>>()?;
    let signature = req.meta.as_ref().map(|m| m.signature.clone()).unwrap_or_default();
    let sig = ring::verify_relay_ring_signature(&signature, &relay::request_signable_hash(&req))
        .map_err(|e| format!("ring signature: {e}"))?;
    ring::verify_membership(sig.ring(), &expected).map_err(|e| format!("ring signature: {e}"))?;
    // (15) supplier signature of the response.
    let supplier_signature = res
        .meta
        .as_ref()
        .map(|m| m.supplier_operator_signature.clone())
        .unwrap_or_default();
    supplier_sig::verify(&supplier_key, &relay::response_signable_hash(&res), &supplier_signature)
        .map_err(|e| format!("supplier signature: {e}"))?;
    // (16) path from the seed block, (17) closest proof against the claim root.
    let windows = windows_of(s, header.session_end_block_height)?;
    let seed = s
        .block_hashes
        .get(&windows.proof_seed_height())
        .ok_or("seed block missing")?;
    let path = session::proof_path(seed, &header.session_id);
    crate::smst::verify_proof_for_claim(&msg.proof, &entry.claim.root_hash, &path)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// End block: validate pending proofs, then settle the claims whose settlement height (`SettlementSessionEnd`,
/// the proof window's close) this block is: each settled claim moves from `claims` to `settled` and its outcome
/// becomes a finalize-block event of this block.
pub(super) fn end_block(s: &mut ChainState, height: i64) {
    let keys: Vec<(String, String)> = s.claims.keys().cloned().collect();
    for key in keys {
        let Some(entry) = s.claims.get(&key).cloned() else {
            continue;
        };
        if let Some(msg) = &entry.proof_pending {
            let outcome = validate_proof_end_block(s, &entry, msg);
            let status = if outcome.is_ok() {
                wire::ClaimProofStatus::Validated
            } else {
                wire::ClaimProofStatus::Invalid
            };
            if let Err(reason) = outcome {
                s.records.push(MsgRecord {
                    height,
                    kind: "proof",
                    supplier: key.1.clone(),
                    session_id: key.0.clone(),
                    rejected: Some(format!("end block: {reason}")),
                });
            }
            if let Some(e) = s.claims.get_mut(&key) {
                e.claim.proof_validation_status = status as i32;
                e.proof_pending = None;
            }
        }
        let Some(entry) = s.claims.get(&key).cloned() else {
            continue;
        };
        if entry.settlement.is_some() {
            continue;
        }
        let Some(header) = entry.claim.session_header.as_ref() else {
            continue;
        };
        let Ok(windows) = windows_of(s, header.session_end_block_height) else {
            continue;
        };
        // Settled at the end of block `SettlementSessionEnd` (§3: `end + 1 + (co+cc+po+pc)`, which is the proof
        // window's close), after that block's proofs were validated above.
        if height < windows.settlement {
            continue;
        }
        // The requirement is decided again with this block's proof params (poktroll's settlement calls
        // `ProofRequirementForClaim` itself): a proof required at submission may not be any more, and the other
        // way round.
        let required = proof_required(s, &entry.claim)
            .or(entry.proof_required)
            .unwrap_or(false);
        let validated = entry.claim.proof_validation_status == wire::ClaimProofStatus::Validated as i32;
        let sum = root_sum_count(&entry.claim.root_hash).map(|(sum, _)| sum);
        let claimed = sum
            .and_then(|sum| claimed_upokt_of(s, header, sum))
            .and_then(|v| num_traits::ToPrimitive::to_u128(&v))
            .unwrap_or(0);
        let outcome = if required && !validated {
            Settlement::Expired(
                if entry.claim.proof_validation_status == wire::ClaimProofStatus::Invalid as i32 {
                    "proof invalid".into()
                } else {
                    "required proof missing".into()
                },
            )
        } else {
            Settlement::Settled(claimed)
        };
        // As poktroll: the outcome is reported in the block's finalize-block events and the claim leaves the
        // state (`RemoveClaim`); a `Claim` query answers "not found" from now on.
        let event = super::events::settlement_event(&entry.claim, required, claimed, &outcome);
        s.finalize_events.entry(height).or_default().push(event);
        if let Some(mut e) = s.claims.remove(&key) {
            e.settlement = Some(outcome.clone());
            e.proof_required = Some(required);
            s.settled.insert(key.clone(), e);
        }
        s.settlements.push((key.0.clone(), key.1.clone(), outcome));
    }
}

/// Which state a tx is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// CheckTx: sequences and unordered nonces count txs already admitted to the mempool.
    Check,
    /// Simulate: as CheckTx, but unordered nonces are not checked (the SDK skips them in simulate mode).
    Simulate,
    /// DeliverTx: committed sequences and unordered nonces.
    Deliver,
}

/// The sequence the next ordered tx of `signer` must carry in `mode`.
pub(super) fn expected_sequence(s: &ChainState, signer: &str, mode: Mode) -> u64 {
    let committed = s.accounts.get(signer).map_or(0, |a| a.sequence);
    match mode {
        Mode::Check | Mode::Simulate => s.check_sequences.get(signer).copied().unwrap_or(committed),
        Mode::Deliver => committed,
    }
}

/// The SDK's ABCI code and codespace of an ante-handler failure text from [`check_tx`].
fn abci_code(log: &str) -> (u32, &'static str) {
    if log.starts_with("account sequence mismatch") {
        (32, "sdk") // ErrWrongSequence
    } else if log.starts_with(UNORDERED_NONCE_USED) {
        (18, "sdk") // ErrInvalidRequest
    } else if log.starts_with("block height: ") && log.ends_with(": tx timeout height") {
        (30, "sdk") // ErrTxTimeoutHeight
    } else if log.starts_with("tx decode") || log.starts_with("tx body decode") || log.starts_with("auth info decode") {
        (2, "sdk") // ErrTxDecode
    } else if log.starts_with("insufficient fees;") {
        (13, "sdk") // ErrInsufficientFee
    } else if log.starts_with("insufficient funds") {
        (5, "sdk") // ErrInsufficientFunds
    } else if log.starts_with("account ") && log.ends_with(" not found") {
        (9, "sdk") // ErrUnknownAddress
    } else if log.starts_with("unsupported message") {
        (6, "sdk") // ErrUnknownRequest
    } else {
        (4, "sdk") // ErrUnauthorized
    }
}

/// Checks a tx as a node's `runTx` does before its messages run, in `mode`: the tx decoder's signer addresses and
/// the messages' `ValidateBasic` ([`super::validate_basic::before_ante`]), then the ante handler ([`ante`]).
/// Returns the signer address, the decoded body and the upokt fee, or the refusal with its code.
pub(super) fn check_tx(s: &ChainState, tx_bytes: &[u8], mode: Mode) -> Result<(String, TxBody, u128), Refusal> {
    // A tx that does not decode is refused by the ante step's own decoding, with its code.
    if let Some(body) = TxRaw::decode(tx_bytes)
        .ok()
        .and_then(|raw| TxBody::decode(raw.body_bytes.as_slice()).ok())
    {
        super::validate_basic::before_ante(&body)?;
    }
    ante(s, tx_bytes, mode).map_err(|log| {
        let (code, codespace) = abci_code(&log);
        Refusal {
            code,
            codespace,
            log,
            before_ante: false,
        }
    })
}

/// Authenticates a tx (the ante handler's checks): returns the signer address and decoded body, or the reason.
fn ante(s: &ChainState, tx_bytes: &[u8], mode: Mode) -> Result<(String, TxBody, u128), String> {
    let raw = TxRaw::decode(tx_bytes).map_err(|e| format!("tx decode: {e}"))?;
    let body = TxBody::decode(raw.body_bytes.as_slice()).map_err(|e| format!("tx body decode: {e}"))?;
    let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).map_err(|e| format!("auth info decode: {e}"))?;
    let signer_info = auth.signer_infos.first().ok_or("tx without signer")?;
    let pubkey_any = signer_info.public_key.as_ref().ok_or("signer without public key")?;
    let pubkey = crate::chain::tx::Secp256k1PubKey::decode(pubkey_any.value.as_slice()).map_err(|e| e.to_string())?;
    let signer = address::address_from_public_key(&pubkey.key);
    // cosmos-sdk `TxTimeoutHeightDecorator` (before the fee checks): a tx whose `timeout_height` is below the
    // height it runs at is refused, code 30 `ErrTxTimeoutHeight`; at CheckTx and in Simulate that height is the
    // last committed block's (the check state's header), in a block the block's (`s.height` is both here).
    let at = u64::try_from(s.height).unwrap_or(0);
    if body.timeout_height > 0 && at > body.timeout_height {
        return Err(format!(
            "block height: {at}, timeout height: {}: tx timeout height",
            body.timeout_height
        ));
    }
    if mode == Mode::Check {
        // The node's minimum gas price, only at CheckTx (the SDK's `DeductFeeDecorator` runs its fee checker only
        // outside simulate mode, and a block's DeliverTx has no minimum), before the fee payer and signature
        // checks, as in the SDK's ante chain.
        let fee = auth.fee.as_ref();
        let coins = fee.map(|f| f.amount.as_slice()).unwrap_or_default();
        let gas_limit = fee.map_or(0, |f| f.gas_limit);
        if let Some(refusal) = super::fees::insufficient_fee(&s.minimum_gas_prices, coins, gas_limit) {
            return Err(refusal);
        }
    }
    let account = s
        .accounts
        .get(&signer)
        .ok_or_else(|| format!("account {signer} not found"))?;
    if body.unordered {
        let timeout = body.timeout_timestamp.ok_or("unordered tx without timeout_timestamp")?;
        let now = s.genesis_time + s.height * s.genesis.block_time_ms.max(1) as i64 / 1000;
        if timeout.seconds <= now || timeout.seconds > now + crate::chain::tx::MAX_UNORDERED_TIMEOUT_SECS + 5 {
            return Err(format!(
                "unordered tx timeout {} not within 10 minutes after block time {now}",
                timeout.seconds
            ));
        }
        if signer_info.sequence != 0 {
            return Err("unordered tx must have sequence 0".into());
        }
        // cosmos-sdk v0.53 `verifyUnorderedNonce`: one nonce per (signer, timeout); Simulate does not check it.
        let nonce = ((timeout.seconds, timeout.nanos), signer.clone());
        let used = match mode {
            Mode::Simulate => false,
            Mode::Check => s.unordered_nonces.contains(&nonce) || s.check_unordered_nonces.contains(&nonce),
            Mode::Deliver => s.unordered_nonces.contains(&nonce),
        };
        if used {
            return Err(UNORDERED_NONCE_USED.into());
        }
    } else {
        let expected = expected_sequence(s, &signer, mode);
        if signer_info.sequence != expected {
            return Err(format!(
                "account sequence mismatch, expected {expected}, got {}: incorrect account sequence",
                signer_info.sequence
            ));
        }
    }
    let doc = SignDoc {
        body_bytes: raw.body_bytes.clone(),
        auth_info_bytes: raw.auth_info_bytes.clone(),
        chain_id: s.genesis.chain_id.clone(),
        account_number: account.number,
    };
    let signature = raw.signatures.first().ok_or("tx without signature")?;
    let key = address::verifying_key_from_compressed(&pubkey.key).map_err(|e| e.to_string())?;
    let sig = k256::ecdsa::Signature::from_slice(signature).map_err(|_| "malformed tx signature")?;
    key.verify(&doc.encode_to_vec(), &sig)
        .map_err(|_| "signature verification failed")?;
    let fee: u128 = auth
        .fee
        .as_ref()
        .map(|f| {
            f.amount
                .iter()
                .filter(|c| c.denom == "upokt")
                .filter_map(|c| c.amount.parse::<u128>().ok())
                .sum()
        })
        .unwrap_or(0);
    if account.balance < fee {
        return Err(format!("insufficient funds for fee {fee}"));
    }
    for msg in &body.messages {
        let ok = match msg.type_url.as_str() {
            wire::MSG_CREATE_CLAIM_TYPE_URL => wire::MsgCreateClaim::decode(msg.value.as_slice())
                .map(|m| m.supplier_operator_address == signer)
                .unwrap_or(false),
            wire::MSG_SUBMIT_PROOF_TYPE_URL => wire::MsgSubmitProof::decode(msg.value.as_slice())
                .map(|m| m.supplier_operator_address == signer)
                .unwrap_or(false),
            other => return Err(format!("unsupported message {other}")),
        };
        if !ok {
            return Err("message signer is not the tx signer or message is malformed".into());
        }
    }
    Ok((signer, body, fee))
}

/// The SDK's text for an unordered tx whose (signer, timeout) nonce is taken (`TryAddUnorderedNonce`).
const UNORDERED_NONCE_USED: &str = "failed to add unordered nonce: already used timeout: invalid request";

/// Records the unordered nonce of a tx [`check_tx`] accepted in `mode` (CheckTx: until the next block; DeliverTx:
/// until its timeout passes).
pub(super) fn record_unordered_nonce(s: &mut ChainState, signer: &str, body: &TxBody, mode: Mode) {
    let Some(timeout) = body.timeout_timestamp.filter(|_| body.unordered) else {
        return;
    };
    let nonce = ((timeout.seconds, timeout.nanos), signer.to_string());
    match mode {
        Mode::Check => s.check_unordered_nonces.insert(nonce),
        Mode::Deliver => s.unordered_nonces.insert(nonce),
        Mode::Simulate => false,
    };
}

/// Drops the committed unordered nonces whose timeout is before `block_time` (the SDK's pre-block
/// `RemoveExpiredUnorderedNonces`): a tx with such a timeout is refused anyway, and memory stays bounded.
pub(super) fn expire_unordered_nonces(s: &mut ChainState, block_time: (i64, i32)) {
    s.unordered_nonces = s.unordered_nonces.split_off(&(block_time, String::new()));
}

/// Runs one claim or proof message at `height`: (kind, supplier, session id, outcome), the supplier being
/// `signer` when the message does not decode.
fn run_message(
    s: &mut ChainState,
    msg: &wire::Any,
    height: i64,
    signer: &str,
) -> (&'static str, String, String, Result<(), String>) {
    let session = |h: &Option<SessionHeader>| h.as_ref().map(|h| h.session_id.clone()).unwrap_or_default();
    match msg.type_url.as_str() {
        wire::MSG_CREATE_CLAIM_TYPE_URL => match wire::MsgCreateClaim::decode(msg.value.as_slice()) {
            Ok(m) => (
                "claim",
                m.supplier_operator_address.clone(),
                session(&m.session_header),
                create_claim(s, &m, height),
            ),
            Err(e) => ("claim", signer.to_string(), String::new(), Err(e.to_string())),
        },
        wire::MSG_SUBMIT_PROOF_TYPE_URL => match wire::MsgSubmitProof::decode(msg.value.as_slice()) {
            Ok(m) => (
                "proof",
                m.supplier_operator_address.clone(),
                session(&m.session_header),
                submit_proof(s, &m, height),
            ),
            Err(e) => ("proof", signer.to_string(), String::new(), Err(e.to_string())),
        },
        other => (
            "proof",
            signer.to_string(),
            String::new(),
            Err(format!("unsupported message {other}")),
        ),
    }
}

/// Gas of deducting a non-zero fee: the bank send from the payer to the fee collector (account and balance
/// reads and writes, ~10k gas with the SDK's KV gas costs). cosmos-sdk's `DeductFeeDecorator` skips the send for
/// a zero fee, in Simulate too, so a draft simulated with a zero fee is estimated without it.
pub const FEE_DEDUCTION_GAS: u64 = 10_000;

/// Gas a tx uses, the same in Simulate and in a block (the simulator's model: a base, per message, per byte of
/// the tx, and the fee transfer when the fee is not zero).
pub(super) fn gas_used(tx_len: usize, messages: usize, fee: u128) -> u64 {
    let fee_gas = if fee == 0 { 0 } else { FEE_DEDUCTION_GAS };
    50_000 + 20_000 * messages as u64 + tx_len as u64 * 10 + fee_gas
}

/// The gas limit a tx signed for (0 when it does not decode: `check_tx` refused it already).
fn gas_limit_of(tx_bytes: &[u8]) -> u64 {
    TxRaw::decode(tx_bytes)
        .ok()
        .and_then(|raw| AuthInfo::decode(raw.auth_info_bytes.as_slice()).ok())
        .and_then(|auth| auth.fee)
        .map_or(0, |fee| fee.gas_limit)
}

/// Simulate (gas estimation): runs the tx's messages as DeliverTx would, on the state and height of the last
/// committed block (the SDK simulates on its check state, whose header is the last committed block's, so a
/// message checked against the current height sees `H`, not the `H + 1` it would be included at), then undoes
/// everything. A refused message refuses the whole simulation, as on a node, with the SDK's `runMsgs` text
/// naming it ("failed to execute message; message index: N: ...").
pub(super) fn simulate_messages(s: &mut ChainState, body: &TxBody) -> Result<(), String> {
    let claims = s.claims.clone();
    let accounts = s.accounts.clone();
    let records = s.records.len();
    let height = s.height;
    let mut result = Ok(());
    for (index, msg) in body.messages.iter().enumerate() {
        if let Err(e) = run_message(s, msg, height, "").3 {
            result = Err(format!("{MESSAGE_FAILED}{index}: {e}"));
            break;
        }
    }
    s.claims = claims;
    s.accounts = accounts;
    s.records.truncate(records);
    result
}

/// How cosmos-sdk's `runMsgs` wraps a message's error (`failed to execute message; message index: %d`).
pub const MESSAGE_FAILED: &str = "failed to execute message; message index: ";

/// DeliverTx: authenticate, charge the fee, run every message; a failing message fails the whole tx (state
/// rolled back) and every message of it is recorded with the reason.
pub(super) fn deliver_tx(s: &mut ChainState, tx_bytes: &[u8], height: i64) -> TxResult {
    // Refused before the ante handler (no fee) or by it (no fee either: the fee is deducted by its last step).
    let (signer, body, fee) = match check_tx(s, tx_bytes, Mode::Deliver) {
        Ok(v) => v,
        Err(refusal) => {
            return TxResult {
                height,
                code: refusal.code,
                codespace: refusal.codespace.into(),
                log: refusal.log,
                ..TxResult::default()
            };
        }
    };
    if let Some(account) = s.accounts.get_mut(&signer) {
        account.balance -= fee;
        if !body.unordered {
            account.sequence += 1;
        }
    }
    record_unordered_nonce(s, &signer, &body, Mode::Deliver);
    // The fee is paid whatever the messages do; a gas limit below what the tx uses fails it after that.
    let (gas_wanted, gas_used) = (
        gas_limit_of(tx_bytes),
        gas_used(tx_bytes.len(), body.messages.len(), fee),
    );
    let out_of_gas = (gas_wanted < gas_used).then(|| {
        format!("out of gas in location: WriteFlat; gasWanted: {gas_wanted}, gasUsed: {gas_used}: out of gas")
    });
    let claims_before = s.claims.clone();
    let balance_before = s.accounts.get(&signer).map(|a| a.balance);
    let mut outcomes = Vec::new();
    let mut failure = None;
    for msg in &body.messages {
        let (kind, supplier, session_id, result) = run_message(s, msg, height, &signer);
        if let Err(reason) = &result {
            failure.get_or_insert_with(|| reason.clone());
        }
        outcomes.push((kind, supplier, session_id, result));
    }
    let code = if out_of_gas.is_some() {
        (11, "sdk")
    } else {
        (1105, "proof")
    };
    if let Some(reason) = out_of_gas.or(failure) {
        s.claims = claims_before;
        if let (Some(account), Some(balance)) = (s.accounts.get_mut(&signer), balance_before) {
            account.balance = balance;
        }
        for (kind, supplier, session_id, result) in outcomes {
            let rejected = Some(result.err().unwrap_or_else(|| format!("tx failed: {reason}")));
            s.records.push(MsgRecord {
                height,
                kind,
                supplier,
                session_id,
                rejected,
            });
        }
        return TxResult {
            height,
            code: code.0,
            codespace: code.1.into(),
            log: reason,
            ..TxResult::default()
        };
    }
    for (kind, supplier, session_id, _) in outcomes {
        s.records.push(MsgRecord {
            height,
            kind,
            supplier,
            session_id,
            rejected: None,
        });
    }
    TxResult {
        height,
        ..TxResult::default()
    }
}
