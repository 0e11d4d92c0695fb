//! What the chain checks: tx authentication (SIGN_MODE_DIRECT, unordered or ordered), `MsgCreateClaim` (§6.1),
//! `MsgSubmitProof` at tx time (§5.4 steps 1–12) and at end block (steps 13–17), and session hydration (§3).
//! Settlement (required proof missing or invalid ⇒ expired and slashed, §6.2) runs in module `settle` at end
//! block, with these checks.

use prost::Message as _;

pub(super) use super::ante::{
    Mode, check_tx, expected_sequence, expire_unordered_nonces, gas_used, record_unordered_nonce,
};
use super::{ChainState, ClaimEntry, MsgRecord, TxResult};
use crate::chain::tx::TxBody;
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
pub(super) fn windows_of(s: &ChainState, end: i64) -> Result<SessionWindows, String> {
    SessionWindows::new(&s.shared_at(end), end).map_err(|e| e.to_string())
}

/// The uPOKT a claim of `sum` compute units of the session header is worth (§6.3.1): difficulty and shared
/// params at the session start (poktroll `GetClaimeduPOKT` with `GetRelayMiningDifficultyAtHeight` and
/// `GetParamsAtHeight` of the start, in claim creation, proof requirement and settlement alike).
pub(super) fn claimed_upokt_of(s: &ChainState, header: &SessionHeader, sum: u64) -> Option<num_bigint::BigUint> {
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

/// poktroll `msgServer.CreateClaim` (`x/proof/keeper/msg_server_create_claim.go`), with the gRPC code its
/// `status.Error` carries for each refusal.
fn create_claim(s: &mut ChainState, msg: &wire::MsgCreateClaim, height: i64) -> Result<(), MsgError> {
    use MsgError as E;
    // `msg.ValidateBasic()` (refused before the ante handler already; kept for a message run on its own).
    let header = msg
        .session_header
        .as_ref()
        .ok_or("claim without session header")
        .map_err(E::invalid_argument)?;
    let (sum, count) = root_sum_count(&msg.root_hash)
        .ok_or_else(|| format!("root hash must be 48 bytes, got {}", msg.root_hash.len()))
        .map_err(E::invalid_argument)?;
    if sum == 0 || count == 0 {
        return Err(E::invalid_argument("claim root has zero sum or count"));
    }
    check_session(s, header, &msg.supplier_operator_address).map_err(E::invalid_argument)?;
    // From here poktroll's `CreateClaim` works with the message's header, not the hydrated one: it is what the
    // claim stores ("use the session header from the message, not the queried session"), its end height places
    // the claim window and its start height picks the compute units per relay (§6.1).
    // `validateClaimWindow`: FailedPrecondition.
    let windows = windows_of(s, header.session_end_block_height).map_err(E::failed_precondition)?;
    if !windows.claim_in_window(height) {
        return Err(E::failed_precondition(format!(
            "claim at height {height} outside the claim window [{}, {}]",
            windows.claim_open, windows.claim_close
        )));
    }
    // Compute units per relay at the session start (poktroll `getServiceComputeUnitsPerRelay`): every relay of
    // the session was weighted with it, whatever the service's value is now.
    let cupr = s
        .compute_units_at(&header.service_id, header.session_start_block_height)
        .ok_or("unknown service")
        .map_err(E::not_found)?;
    if Some(sum) != count.checked_mul(cupr) {
        return Err(E::invalid_argument(format!(
            "root sum {sum} != count {count} × compute units per relay {cupr}"
        )));
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

/// poktroll `msgServer.SubmitProof` (`x/proof/keeper/msg_server_submit_proof.go`): its `ValidateBasic` as
/// `codes.InvalidArgument`, a proof requirement it cannot compute as `codes.Internal`, every other refusal
/// (`EnsureWellFormedProof`, the claim, the submission fee, a proof not required) as `codes.FailedPrecondition`.
fn submit_proof(s: &mut ChainState, msg: &wire::MsgSubmitProof, height: i64) -> Result<(), MsgError> {
    if !address::is_valid_address(&msg.supplier_operator_address) {
        return Err(MsgError::invalid_argument("invalid supplier operator address"));
    }
    if msg.session_header.is_none() {
        return Err(MsgError::invalid_argument("proof without session header"));
    }
    if msg.proof.is_empty() {
        return Err(MsgError::invalid_argument("empty proof"));
    }
    submit_proof_checks(s, msg, height).map_err(|e| match e {
        ProofRefusal::Internal(text) => MsgError::internal(text),
        ProofRefusal::Precondition(text) => MsgError::failed_precondition(text),
    })
}

/// How [`submit_proof_checks`] refuses.
enum ProofRefusal {
    /// `codes.FailedPrecondition`.
    Precondition(String),
    /// `codes.Internal` (the proof requirement cannot be computed).
    Internal(String),
}

impl From<String> for ProofRefusal {
    fn from(text: String) -> Self {
        Self::Precondition(text)
    }
}

impl From<&str> for ProofRefusal {
    fn from(text: &str) -> Self {
        Self::Precondition(text.into())
    }
}

/// Tx-time proof checks (§5.4 steps 1–12).
fn submit_proof_checks(s: &mut ChainState, msg: &wire::MsgSubmitProof, height: i64) -> Result<(), ProofRefusal> {
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
        )
        .into());
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
        return Err(format!("supplier balance {balance} must exceed the proof submission fee {fee}").into());
    }
    let required = proof_required(s, &entry.claim)
        .ok_or_else(|| ProofRefusal::Internal("proof seed block does not exist yet".into()))?;
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
///
/// The stored proof keeps the session header its message carried (poktroll `newProofFromMsg`,
/// `x/proof/keeper/msg_server_submit_proof.go`), which at tx time was only held to the on-chain session by its
/// session id and start height (`queryAndValidateSessionHeader`); `EnsureValidProofSignaturesAndClosestPath`
/// (`x/proof/keeper/proof_validation.go`) then derives the closest path from *that* header:
/// `validateClosestPath` seeds it with the block before `GetEarliestSupplierProofCommitHeight(header end)` and the
/// header's session id. So a header whose end height is off (same session id) passes tx time and fails here.
pub(super) fn validate_proof_end_block(
    s: &ChainState,
    entry: &ClaimEntry,
    msg: &wire::MsgSubmitProof,
) -> Result<(), String> {
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
    // (16) path from the seed block of the proof message's header (poktroll `validateClosestPath`: params and
    // proof window open height of the session containing that header's end height, seed one block before it;
    // a block not yet committed has no hash, and no path matches), (17) closest proof against the claim root.
    let proof_header = msg.session_header.as_ref().ok_or("proof without session header")?;
    let windows = windows_of(s, proof_header.session_end_block_height)?;
    let seed = s
        .block_hashes
        .get(&windows.proof_seed_height())
        .ok_or("seed block missing")?;
    let path = session::proof_path(seed, &proof_header.session_id);
    crate::smst::verify_proof_for_claim(&msg.proof, &entry.claim.root_hash, &path)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A message handler's refusal as poktroll's msg servers return it: `status.Error(code, text)`, a gRPC status
/// error, not a registered (ABCI-coded) one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MsgError {
    /// The gRPC code.
    pub code: tonic::Code,
    /// The status message (the chain's reason).
    pub text: String,
}

impl MsgError {
    fn new(code: tonic::Code, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    fn invalid_argument(text: impl Into<String>) -> Self {
        Self::new(tonic::Code::InvalidArgument, text)
    }

    fn failed_precondition(text: impl Into<String>) -> Self {
        Self::new(tonic::Code::FailedPrecondition, text)
    }

    fn not_found(text: impl Into<String>) -> Self {
        Self::new(tonic::Code::NotFound, text)
    }

    fn internal(text: impl Into<String>) -> Self {
        Self::new(tonic::Code::Internal, text)
    }

    /// grpc-go's `status.Error(...).Error()`: `rpc error: code = <Code> desc = <message>`, the code as
    /// `codes.Code.String()` names it.
    pub fn error_string(&self) -> String {
        let code = match self.code {
            tonic::Code::InvalidArgument => "InvalidArgument",
            tonic::Code::FailedPrecondition => "FailedPrecondition",
            tonic::Code::NotFound => "NotFound",
            tonic::Code::Internal => "Internal",
            _ => "Unknown",
        };
        format!("rpc error: code = {code} desc = {}", self.text)
    }
}

/// Runs one claim or proof message at `height`: (kind, supplier, session id, outcome), the supplier being
/// `signer` when the message does not decode.
fn run_message(
    s: &mut ChainState,
    msg: &wire::Any,
    height: i64,
    signer: &str,
) -> (&'static str, String, String, Result<(), MsgError>) {
    let session = |h: &Option<SessionHeader>| h.as_ref().map(|h| h.session_id.clone()).unwrap_or_default();
    match msg.type_url.as_str() {
        wire::MSG_CREATE_CLAIM_TYPE_URL => match wire::MsgCreateClaim::decode(msg.value.as_slice()) {
            Ok(m) => (
                "claim",
                m.supplier_operator_address.clone(),
                session(&m.session_header),
                create_claim(s, &m, height),
            ),
            Err(e) => (
                "claim",
                signer.to_string(),
                String::new(),
                Err(MsgError::invalid_argument(e.to_string())),
            ),
        },
        wire::MSG_SUBMIT_PROOF_TYPE_URL => match wire::MsgSubmitProof::decode(msg.value.as_slice()) {
            Ok(m) => (
                "proof",
                m.supplier_operator_address.clone(),
                session(&m.session_header),
                submit_proof(s, &m, height),
            ),
            Err(e) => (
                "proof",
                signer.to_string(),
                String::new(),
                Err(MsgError::invalid_argument(e.to_string())),
            ),
        },
        other => (
            "proof",
            signer.to_string(),
            String::new(),
            Err(MsgError::invalid_argument(format!("unsupported message {other}"))),
        ),
    }
}

/// Simulate (gas estimation): runs the tx's messages as DeliverTx would, on the state and height of the last
/// committed block (the SDK simulates on its check state, whose header is the last committed block's, so a
/// message checked against the current height sees `H`, not the `H + 1` it would be included at), then undoes
/// everything. A refused message refuses the whole simulation, as on a node: `Err` with the index of the
/// message and its refusal.
pub(super) fn simulate_messages(s: &mut ChainState, body: &TxBody) -> Result<(), (usize, MsgError)> {
    let claims = s.claims.clone();
    let accounts = s.accounts.clone();
    let records = s.records.len();
    let height = s.height;
    let mut result = Ok(());
    for (index, msg) in body.messages.iter().enumerate() {
        if let Err(e) = run_message(s, msg, height, "").3 {
            result = Err((index, e));
            break;
        }
    }
    s.claims = claims;
    s.accounts = accounts;
    s.records.truncate(records);
    result
}

/// How cosmos-sdk's `runMsgs` wraps a message's error (`errorsmod.Wrapf(err, "failed to execute message; message
/// index: %d", i)`).
pub const MESSAGE_FAILED: &str = "failed to execute message; message index: ";

/// The status message of a Simulate whose message `index` was refused with `error`, `gas_used` metered: the
/// `runMsgs` wrap of the handler's gRPC status error under `%v` (its stack attached by that wrap, so the frame is
/// baseapp's), then the tx service's gas suffix ([`super::validate_basic::simulate_failure`]).
pub(super) fn simulate_message_failure(index: usize, error: &MsgError, gas_used: u64) -> String {
    super::validate_basic::simulate_failure(
        &format!(
            "{MESSAGE_FAILED}{index}: {}{}",
            error.error_string(),
            super::validate_basic::frame::BASEAPP
        ),
        gas_used,
    )
}

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
        super::ante::gas_limit_of(tx_bytes),
        gas_used(tx_bytes.len(), body.messages.len(), fee),
    );
    let out_of_gas = (gas_wanted < gas_used).then(|| {
        format!("out of gas in location: WriteFlat; gasWanted: {gas_wanted}, gasUsed: {gas_used}: out of gas")
    });
    let claims_before = s.claims.clone();
    let balance_before = s.accounts.get(&signer).map(|a| a.balance);
    let mut outcomes = Vec::new();
    let mut failure = None;
    for (index, msg) in body.messages.iter().enumerate() {
        let (kind, supplier, session_id, result) = run_message(s, msg, height, &signer);
        if let Err(error) = &result {
            failure.get_or_insert_with(|| (index, error.clone()));
        }
        outcomes.push((kind, supplier, session_id, result.map_err(|e| e.text)));
    }
    // The tx result (`ExecTxResult`) as cosmos-sdk v0.53 `deliverTx` → `ResponseExecTxResultWithEvents` →
    // cosmossdk.io/errors v1 `ABCIInfo(err, app.trace)` writes it: running out of gas is the registered
    // `ErrOutOfGas` (sdk 11, its text); a message failure is `runMsgs`' "failed to execute message; message index:
    // N: ..." around the handler's error, and poktroll's claim and proof handlers return gRPC status errors
    // (`status.Error(codes.X, ...)`), which carry no ABCI code: `ABCIInfo` gives them code 1 in codespace
    // `undefined`, and without `--trace` its `defaultErrEncoder` redacts the text of such an error to "internal"
    // (`Redact` → `errInternal`). So a real node records no reason for a failed claim or proof; the simulator's
    // reason stays in [`MsgRecord::rejected`].
    let result = match (&out_of_gas, &failure) {
        (Some(reason), _) => Some((11, "sdk", reason.clone(), reason.clone())),
        (None, Some((index, error))) => Some((
            1,
            "undefined",
            "internal".to_string(),
            format!("{MESSAGE_FAILED}{index}: {}", error.error_string()),
        )),
        (None, None) => None,
    };
    if let Some((code, codespace, log, reason)) = result {
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
            code,
            codespace: codespace.into(),
            log,
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
