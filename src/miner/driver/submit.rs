//! Submitting claims and proofs: building the messages from the session tries, confirming the leadership right
//! before the broadcast, dropping what can no longer land inside its window, splitting a supplier's messages
//! into txs of at most `max_tx_bytes`, signing (gas simulated) and broadcasting, and feeding each outcome back
//! to the lifecycle engine (counted per supplier and kind).

use std::sync::atomic::Ordering as AtomicOrdering;

use k256::ecdsa::SigningKey;

use super::{Miner, MinerError, fees};
use crate::chain::sequence::SequenceError;
use crate::chain::tx::{self, Ordering, TxPlan};
use crate::miner::lifecycle::{Event, SessionKey, State, Step, TxKind, TxOutcome};
use crate::protocol::gob;
use crate::protocol::session::{SessionWindows, proof_path};
use crate::protocol::wire;

mod broadcast;
mod funds;
mod kept;
mod recheck;
mod refusal;
mod resolve;
mod ttl;
mod unknown;
#[cfg(test)]
pub(super) use broadcast::simulate_refused_a_message;
pub(super) use kept::{KeptTxs, RecordIn, RecordOut, hashes};
pub(super) use unknown::UnknownTxs;
use unknown::{Expiry, SentTx};

/// Room a tx needs besides its messages: the body's other fields (unordered flag, timeout), the auth info
/// (public key, mode, sequence, fee and gas limit) and the signature, with their framing (~200 bytes; doubled).
const TX_OVERHEAD_BYTES: usize = 512;

/// Splits one supplier's messages, in order, into txs of at most `max_tx_bytes` encoded bytes. CometBFT refuses a
/// tx larger than its `mempool.max_tx_bytes` at CheckTx (default 1 MiB, code 21 "tx too large") and the SDK's
/// gRPC server a message over 10 MiB; proofs carry relay payloads, so a supplier's proofs due together can
/// exceed both. A message too large for any tx goes alone (logged: the node will likely refuse it).
pub(super) fn split_by_size<K>(messages: Vec<(K, wire::Any)>, max_tx_bytes: usize) -> Vec<Vec<(K, wire::Any)>> {
    let budget = max_tx_bytes.saturating_sub(TX_OVERHEAD_BYTES);
    let mut txs: Vec<Vec<(K, wire::Any)>> = Vec::new();
    let mut used = 0;
    for (key, message) in messages {
        let size = size_in_tx(&message);
        if size > budget {
            tracing::error!(
                type_url = message.type_url,
                size,
                max_tx_bytes,
                "one message is larger than transaction.max_tx_bytes allows; sent in a tx of its own"
            );
        }
        match txs.last_mut() {
            Some(tx) if used + size <= budget => tx.push((key, message)),
            _ => {
                txs.push(vec![(key, message)]);
                used = 0;
            }
        }
        used += size;
    }
    txs
}

/// The bytes `message` takes in a tx: `TxBody.messages` (field 1) tag, length, the encoded `Any`.
fn size_in_tx(message: &wire::Any) -> usize {
    use prost::Message as _;
    let len = message.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// The `MsgSubmitProof` of `proof`, fitting a tx of `max_tx_bytes` whenever the proven relay does.
///
/// `SiblingData` (the encoding of the proven leaf's deepest sibling) is what poktroll's prover sends, and it is kept
/// when the message fits. When that sibling is a leaf its encoding holds a second relay whole, so two large relays
/// side by side in the trie would make a proof no node takes (each alone passed the miner's size check, `ingest`),
/// the proof would go missing and the supplier be slashed. Then it is left out: the chain checks `SiblingData` only
/// when present (spec §5.4 step 17), and the rest of the proof verifies the same.
pub(super) fn proof_message(
    supplier: &str,
    header: Option<wire::SessionHeader>,
    proof: &crate::smst::ClosestProof,
    max_tx_bytes: usize,
) -> wire::Any {
    let message = |proof: &crate::smst::ClosestProof| {
        wire::Any::pack(
            wire::MSG_SUBMIT_PROOF_TYPE_URL,
            &wire::MsgSubmitProof {
                supplier_operator_address: supplier.to_string(),
                session_header: header.clone(),
                proof: gob::encode_closest_proof(&proof.compact()),
            },
        )
    };
    let full = message(proof);
    if proof.sibling_data.is_none() || size_in_tx(&full) <= max_tx_bytes.saturating_sub(TX_OVERHEAD_BYTES) {
        return full;
    }
    let lean = crate::smst::ClosestProof {
        sibling_data: None,
        ..proof.clone()
    };
    message(&lean)
}

/// What [`Miner::sign_with_gas`] signed for a broadcast: the gas limit and fee of the last tx (so a refusal of its
/// fee, code 13, can be turned into a price) and the last tx handed to the node (so one whose broadcast got no
/// answer can be kept, module `unknown`), with the sessions it carries and, once stored in their holder's record
/// before it left (module `kept`), that record's version and the txs it holds. Behind mutexes because the ordered
/// path signs inside the sequencer's future.
#[derive(Debug)]
struct Signed {
    kind: TxKind,
    /// The sessions whose messages the tx carries; the first holds the stored tx.
    keys: Vec<SessionKey>,
    fee: std::sync::Mutex<(u64, u128)>,
    sent: std::sync::Mutex<Option<SentTx>>,
    stored: std::sync::Mutex<Option<(u64, Vec<String>)>>,
}

impl Signed {
    fn new(kind: TxKind, keys: &[SessionKey]) -> Self {
        Self {
            kind,
            keys: keys.to_vec(),
            fee: Default::default(),
            sent: Default::default(),
            stored: Default::default(),
        }
    }

    fn record(&self, gas_limit: u64, fee: u128) {
        *self.fee.lock().unwrap_or_else(|p| p.into_inner()) = (gas_limit, fee);
    }

    fn last(&self) -> (u64, u128) {
        *self.fee.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `tx` as handed to the node right now (set just before the broadcast, after every check that can
    /// stop it and once it is stored).
    fn sending(&self, tx: SentTx) {
        *self.sent.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// The holder's record was written at `version`, holding the txs `hashes`.
    fn stored_at(&self, version: u64, hashes: Vec<String>) {
        *self.stored.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, hashes));
    }

    /// The holder's record as last written for this send, if it was.
    fn stored(&self) -> Option<(u64, Vec<String>)> {
        self.stored.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets the tx recorded by [`Self::sending`] (a new attempt starts).
    fn clear_sent(&self) {
        *self.sent.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The last tx handed to the node, if any.
    fn sent(&self) -> Option<SentTx> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The reason of a send that did not leave because this miner no longer leads (counted as `not_leader`).
const NOT_LEADER: &str = "no longer the leader";

/// How the reason of a send that did not leave because its window's deadline passed starts (counted as
/// `deadline_passed`).
const DEADLINE_PASSED: &str = "the window's deadline passed";

/// The heights that bound one tx, from the windows of the sessions whose messages it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    /// The `timeout_height` of the tx, ordered or unordered ([`Miner::timeout_height`]; 0 = none).
    pub(super) timeout_height: u64,
    /// The last height at which the tx is still sent: the earliest window close minus
    /// `submission_buffer_blocks`, as the engine decides sends (`i64::MAX` when no session is known).
    pub(super) deadline: i64,
}

/// What building one session's message gave.
enum Built {
    /// The message to send.
    Message(wire::Any),
    /// A proof that cannot verify against the claim on chain (another root): never sent.
    Unprovable,
    /// A proof the chain no longer requires, found so right before a broadcast without Simulate
    /// ([`Miner::still_required`]): not sent.
    NotRequired,
}

impl Miner {
    /// Sends the claims or proofs of `keys` (one supplier's sessions due at this height), in as few txs as
    /// `max_tx_bytes` allows, and feeds each session's outcome to the engine. Each session stands alone: one whose
    /// message cannot be built (a chain query failed, its trie cannot be read) is a send that never left
    /// (`NotSent`: repeated at the next block) and does not hold back the others, and a batch a node refuses
    /// (`Refused`) because of one of its messages is sent again without it (module `refusal`), so one bad message
    /// cannot sink the rest of the batch. A session whose last tx got no answer (module `unknown`) gets no new tx
    /// while that one may still land: what happened to it is found out first.
    pub(super) async fn submit(
        &mut self,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
    ) -> Result<Step, MinerError> {
        let mut step = self.submit_due(kind, supplier, keys).await?;
        if kind == TxKind::Proof {
            // The fee per proof of the tx just signed, for the funds check after a restart (module `afford`).
            self.store_proof_tx_fee(supplier).await;
        }
        // Records whose kept txs changed (module `kept`) are written with the step's.
        step.changed.extend(std::mem::take(&mut self.kept_changed));
        step.changed.sort();
        step.changed.dedup();
        Ok(step)
    }

    /// [`Self::submit`] but for the records whose kept txs changed.
    async fn submit_due(&mut self, kind: TxKind, supplier: &str, keys: Vec<SessionKey>) -> Result<Step, MinerError> {
        self.forget_unknown_txs_of_done_sessions();
        // A re-send of a session whose earlier tx of this kind the node took (still kept: it may land) finds out
        // about that tx and broadcasts its same bytes again before any new tx (module `kept`).
        for key in &keys {
            if self.unknown_txs.get(kind, key).is_none()
                && let Some(tx) = self.kept_txs.carrying(kind, key)
            {
                self.unknown_txs.insert(kind, std::slice::from_ref(key), tx);
            }
        }
        let (unknown, keys): (Vec<SessionKey>, Vec<SessionKey>) = keys
            .into_iter()
            .partition(|key| self.unknown_txs.get(kind, key).is_some());
        let mut step = Step::default();
        let mut messages = self.build_all(kind, supplier, keys, &mut step).await;
        let mut keys: Vec<SessionKey> = messages.iter().map(|(key, _)| key.clone()).collect();
        keys.extend(unknown.iter().cloned());
        if keys.is_empty() {
            return Ok(step);
        }
        if !self.still_leader().await {
            let outcome = TxOutcome::NotSent(NOT_LEADER.into());
            return Ok(self.tx_outcome_as(step, kind, supplier, keys, outcome, "not_leader"));
        }
        // The engine decided at its height; confirming the leadership can take blocks (a raft commit waits out a
        // partition). A tx included after its window is refused and costs its fee, so sessions whose deadline
        // passed meanwhile are not sent (the engine takes it as a send that never left).
        let height = match self.chain.tip().await {
            Ok(tip) => tip.height,
            Err(e) => {
                return Ok(self.tx_outcome(step, kind, supplier, keys, TxOutcome::NotSent(e.to_string())));
            }
        };
        let buffer = self.config.engine.submission_buffer_blocks;
        let (late, keys): (Vec<SessionKey>, Vec<SessionKey>) = keys.into_iter().partition(|key| {
            self.engine.session(key).is_some_and(|r| {
                let close = match kind {
                    TxKind::Claim => r.schedule.claim_close,
                    TxKind::Proof => r.schedule.proof_close,
                };
                height > close - buffer
            })
        });
        let unknown: Vec<SessionKey> = unknown.into_iter().filter(|key| keys.contains(key)).collect();
        if !late.is_empty() {
            messages.retain(|(key, _)| !late.contains(key));
            for key in &late {
                self.unknown_txs.forget(kind, key);
            }
            let reason = format!("{DEADLINE_PASSED} (height {height}) while confirming the leadership");
            step = self.tx_outcome_as(
                step,
                kind,
                supplier,
                late,
                TxOutcome::NotSent(reason),
                "deadline_passed",
            );
            if keys.is_empty() {
                return Ok(step);
            }
        }
        let unresolved = self.resolve_unknown(&mut step, kind, supplier, unknown, height).await;
        let again: Vec<SessionKey> = unresolved.expired.into_iter().chain(unresolved.stuck).collect();
        if !again.is_empty() {
            let rebuilt = self.build_all(kind, supplier, again, &mut step).await;
            messages.extend(rebuilt);
        }
        let (step, messages) = self.affordable(kind, supplier, messages, step).await;
        if messages.is_empty() {
            return Ok(step);
        }
        let sessions = messages.len();
        // Sessions signed at the cap (a tx of theirs was stuck in the mempool, module `resolve`) go in txs of their
        // own: the others keep their price.
        let (at_cap, messages): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|(key, _)| self.gas_pricing.at_cap(kind, key));
        let mut txs = split_by_size(at_cap, self.config.max_tx_bytes);
        txs.extend(split_by_size(messages, self.config.max_tx_bytes));
        if txs.len() > 1 {
            tracing::info!(
                supplier,
                ?kind,
                sessions,
                txs = txs.len(),
                max_tx_bytes = self.config.max_tx_bytes,
                "messages split into several txs by size"
            );
        }
        Ok(self.send_all(step, kind, supplier, txs).await)
    }

    /// Builds the messages of `keys`; a session whose message cannot be built (`NotSent`, `build_failed`) or whose
    /// proof cannot verify against the claim on chain (`Rejected`) is fed to the engine here, into `step`.
    async fn build_all(
        &mut self,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
        step: &mut Step,
    ) -> Vec<(SessionKey, wire::Any)> {
        let mut messages = Vec::new();
        let mut unprovable = Vec::new();
        for key in keys {
            let built = self.build(kind, supplier, &key).await;
            self.progressed();
            match built {
                Ok(Built::Message(message)) => messages.push((key, message)),
                Ok(Built::Unprovable) => unprovable.push(key),
                Ok(Built::NotRequired) => {
                    let reason = "the chain no longer requires the proof (checked before a broadcast without Simulate)";
                    *step = self.proof_not_required(std::mem::take(step), supplier, key, reason);
                }
                Err(e) => {
                    // Its work for this block did not complete (module `observe`).
                    self.block_failures.insert(supplier.to_owned());
                    let outcome = TxOutcome::NotSent(format!("cannot build the message: {e}"));
                    *step =
                        self.tx_outcome_as(std::mem::take(step), kind, supplier, vec![key], outcome, "build_failed");
                }
            }
        }
        if !unprovable.is_empty() {
            let refused = self.engine.handle(Event::TxOutcome {
                kind,
                keys: unprovable,
                outcome: TxOutcome::Rejected("the claim on chain has another root than this miner's trie".into()),
            });
            step.merge(refused);
        }
        messages
    }

    /// A proof found no longer required right before it would leave: taken back as a send that never left
    /// (counted `not_required`), then settled without a proof as the requirement check just said (the engine counts
    /// the correction, and proves it if the params change back).
    fn proof_not_required(&mut self, step: Step, supplier: &str, key: SessionKey, reason: &str) -> Step {
        let outcome = TxOutcome::NotSent(reason.into());
        let kind = TxKind::Proof;
        let mut step = self.tx_outcome_as(step, kind, supplier, vec![key.clone()], outcome, "not_required");
        step.merge(self.engine.handle(Event::ProofRequirement { key, required: false }));
        step
    }

    /// Takes in what storing the tx before it left wrote (module `kept`): the holder's record version, and the tx
    /// kept while the node may have it (it took it, or did not answer). A stored tx that did not leave or that the
    /// node refused is dropped, and its holder's record written again without it.
    fn after_broadcast(&mut self, outcome: &Result<(), TxOutcome>, signed: &Signed) {
        let Some(holder) = signed.keys.first() else {
            return;
        };
        let Some((version, held)) = signed.stored() else {
            return;
        };
        self.versions.insert(holder.clone(), version);
        self.stored_txs.insert(holder.clone(), held);
        match (outcome, signed.sent()) {
            (Ok(()) | Err(TxOutcome::Retryable(_)), Some(tx)) => {
                let superseded = self.kept_txs.keep(signed.kind, &signed.keys, tx);
                self.kept_changed.extend(superseded);
            }
            _ => {
                self.kept_txs.drop_held(signed.kind, holder);
                self.kept_changed.insert(holder.clone());
            }
        }
    }

    /// Stores the tx `bytes` about to leave in the record of the first session it carries (module `kept`), so the
    /// next leader or a restarted process finds out what happened to it before it builds another: one fenced
    /// record write, which also confirms that this miner still leads. Not stored, it does not leave (`NotSent`).
    async fn store_before_sending(&self, signed: &Signed, bytes: &[u8], expiry: Expiry) -> Result<(), SequenceError> {
        let not_stored = |e: String| SequenceError::NotSent(format!("the tx could not be stored before it left: {e}"));
        let tx = SentTx {
            hash: tx::tx_hash(bytes),
            bytes: bytes.to_vec(),
            expiry,
            // The tip read to build it (unordered) or the latest height seen (ordered): it leaves right after.
            first_broadcast_height: Some(self.chain.latest_height()),
        };
        let Some(holder) = signed.keys.first() else {
            return Err(not_stored("it carries no session".into()));
        };
        let record = self
            .stored
            .get(holder)
            .or_else(|| self.engine.session(holder))
            .ok_or_else(|| not_stored(format!("no record of session {}", holder.session_id)))?;
        let mut held = self.kept_txs.held_besides(holder, signed.kind);
        held.push(KeptTxs::stored(signed.kind, &signed.keys, &tx));
        let data = serde_json::to_vec(&RecordOut {
            record,
            in_flight_txs: &held,
            gas: self.gas_pricing.session_gas(holder),
        })
        .map_err(|e| not_stored(e.to_string()))?;
        let expected = signed
            .stored()
            .map(|(version, _)| version)
            .or_else(|| self.versions.get(holder).copied())
            .unwrap_or(0);
        let writer = self.writer().map_err(|e| not_stored(e.to_string()))?;
        let state = record.state.as_str();
        let version = match writer
            .sessions
            .put(&holder.supplier, &holder.session_id, state, data.clone(), expected)
            .await
        {
            Ok(version) => version,
            // A write that landed before this term began (as in `Miner::persist`): overwritten, fenced; an older
            // version than this leader wrote is a storage rollback, counted (module `persist`).
            Err(storage::StorageError::Conflict(_)) => {
                let current = writer
                    .sessions
                    .get(&holder.supplier, &holder.session_id)
                    .await
                    .map_err(|e| not_stored(e.to_string()))?
                    .map_or(0, |r| r.version);
                self.storage_rolled_back(holder, current, expected);
                writer
                    .sessions
                    .put(&holder.supplier, &holder.session_id, state, data, current)
                    .await
                    .map_err(|e| not_stored(e.to_string()))?
            }
            Err(e) => return Err(not_stored(e.to_string())),
        };
        signed.stored_at(version, hashes(&held));
        signed.sending(tx);
        Ok(())
    }

    /// The `timeout_height` of a tx carrying `keys`' messages of `kind`: the earliest close of their
    /// windows (claim or proof, spec §3), the last height at which all of them still land. Past it the chain
    /// refuses the tx (`ErrTxTimeoutHeight`, no fee) instead of including it after the window, where every
    /// message fails and the fee is paid, and a stuck tx stops holding the signer's next sequences. 0 (none)
    /// when no session's schedule is known.
    pub(super) fn timeout_height(&self, kind: TxKind, keys: &[SessionKey]) -> u64 {
        keys.iter()
            .filter_map(|key| self.engine.session(key))
            .map(|r| match kind {
                TxKind::Claim => r.schedule.claim_close,
                TxKind::Proof => r.schedule.proof_close,
            })
            .min()
            .and_then(|close| u64::try_from(close).ok())
            .unwrap_or(0)
    }

    /// The [`Bounds`] of a tx carrying `keys`' messages of `kind`. The deadline is checked again right before
    /// each tx leaves ([`Self::send_once`]): a submission of several txs (split by size, or a refused batch re-sent
    /// without its bad message) can take blocks, and a tx the chain includes after its window costs its fee.
    pub(super) fn bounds(&self, kind: TxKind, keys: &[SessionKey]) -> Bounds {
        let buffer = self.config.engine.submission_buffer_blocks;
        let deadline = keys
            .iter()
            .filter_map(|key| self.engine.session(key))
            .map(|r| match kind {
                TxKind::Claim => r.schedule.claim_close,
                TxKind::Proof => r.schedule.proof_close,
            })
            .min()
            .map_or(i64::MAX, |close| close - buffer);
        Bounds {
            timeout_height: self.timeout_height(kind, keys),
            deadline,
        }
    }

    /// Builds one session's claim or proof message.
    async fn build(&mut self, kind: TxKind, supplier: &str, key: &SessionKey) -> Result<Built, MinerError> {
        let (claim, _) = self.claim_of(key).await?;
        let header = claim.session_header.clone();
        if kind == TxKind::Proof && !self.claim_on_chain_is(key, &claim.root_hash).await? {
            return Ok(Built::Unprovable);
        }
        if kind == TxKind::Proof && !self.still_required(key).await? {
            return Ok(Built::NotRequired);
        }
        Ok(Built::Message(match kind {
            TxKind::Claim => wire::Any::pack(
                wire::MSG_CREATE_CLAIM_TYPE_URL,
                &wire::MsgCreateClaim {
                    supplier_operator_address: supplier.to_string(),
                    session_header: header,
                    root_hash: claim.root_hash,
                },
            ),
            TxKind::Proof => {
                let h = header.clone().unwrap_or_default();
                let params = self.chain.shared_params_at(h.session_end_block_height).await?;
                let windows = SessionWindows::new(&params, h.session_end_block_height)
                    .map_err(|e| MinerError::Corrupt(e.to_string()))?;
                let seed = self.chain.block(windows.proof_seed_height()).await?;
                let path = proof_path(&seed.hash, &h.session_id);
                let open = self.open_trie(key).await?;
                let proof = tokio::task::block_in_place(|| open.trie.prove_closest(&path))?;
                proof_message(supplier, header, &proof, self.config.max_tx_bytes)
            }
        }))
    }

    /// Counts a broadcast of `keys`' messages (sent, or the error) and feeds its outcome to the engine.
    ///
    /// `ha_miner_{claims,proofs}_submitted_total` count a session's first send a node took; a re-send (the
    /// session's record holds an earlier send: one that showed no message on chain two blocks later, or a
    /// predecessor's repeated by a new leader) is counted in `ha_miner_{claim,proof}_rebroadcasts_total` by its
    /// outcome instead, so the submitted counters are not inflated by re-sends (as the Go miner counts them).
    fn sent(
        &mut self,
        step: Step,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
        outcome: Result<(), TxOutcome>,
    ) -> Step {
        if let Ok(()) = outcome {
            let counter = if kind == TxKind::Claim {
                &self.stats.claims_sent
            } else {
                &self.stats.proofs_sent
            };
            counter.fetch_add(keys.len() as u64, AtomicOrdering::Relaxed);
        }
        let outcome = match outcome {
            Err(TxOutcome::Refused(reason)) if kind == TxKind::Proof && refusal::proof_not_required(&reason) => {
                Err(TxOutcome::NotRequired(reason))
            }
            outcome => outcome,
        };
        self.count_sends(kind, supplier, &keys, &outcome);
        let outcome = outcome.map_or_else(|outcome| outcome, |()| TxOutcome::Broadcast);
        self.tx_outcome(step, kind, supplier, keys, outcome)
    }

    /// The Prometheus side of [`Self::sent`]: first sends a node took in the submitted counters, re-sends (a
    /// send that never left excepted: `NotSent`) in the rebroadcast counters by outcome.
    fn count_sends(&self, kind: TxKind, supplier: &str, keys: &[SessionKey], outcome: &Result<(), TxOutcome>) {
        let Some(m) = &self.metrics else { return };
        let (submitted, rebroadcasts) = match kind {
            TxKind::Claim => (&m.claims_submitted, &m.claim_rebroadcasts),
            TxKind::Proof => (&m.proofs_submitted, &m.proof_rebroadcasts),
        };
        let result = match outcome {
            Ok(()) => "broadcast",
            Err(TxOutcome::NotSent(_)) => return,
            Err(outcome) => error_reason(outcome),
        };
        for key in keys {
            let Some(record) = self.engine.session(key) else {
                continue;
            };
            // The engine records a send before it asks for it, and takes back those that never left: more than
            // one means an earlier send left.
            let sends = match kind {
                TxKind::Claim => record.claim_sent_at.len(),
                TxKind::Proof => record.proof_sent_at.len(),
            };
            let service = record.service_id.as_str();
            if sends > 1 {
                rebroadcasts.with_label_values(&[supplier, service, result]).inc();
            } else if outcome.is_ok() {
                submitted.with_label_values(&[supplier, service]).inc();
            }
        }
    }

    /// Counts a submission's outcome and feeds it to the engine, merging the engine's answer into `step`. An
    /// outcome other than `Broadcast` is counted in `ha_miner_{claim,proof}_errors_total` with its kind as the
    /// reason (`refused`: a node refused it at Simulate or CheckTx; `rejected`: it cannot be sent; `ha_conflict`;
    /// `retryable`: no node answered).
    fn tx_outcome(
        &mut self,
        step: Step,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
        outcome: TxOutcome,
    ) -> Step {
        let label = error_reason(&outcome);
        self.tx_outcome_as(step, kind, supplier, keys, outcome, label)
    }

    /// [`Self::tx_outcome`] with the error counter's reason given: sends that never left because this node no
    /// longer leads (`not_leader`: routine in a cluster, no node was asked) or because the window's deadline
    /// passed while the leadership was confirmed (`deadline_passed`) are told apart from a node's refusals.
    pub(super) fn tx_outcome_as(
        &mut self,
        mut step: Step,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
        outcome: TxOutcome,
        label: &str,
    ) -> Step {
        if let TxOutcome::Refused(reason)
        | TxOutcome::NotRequired(reason)
        | TxOutcome::Rejected(reason)
        | TxOutcome::Retryable(reason)
        | TxOutcome::NotSent(reason)
        | TxOutcome::HaConflict(reason) = &outcome
        {
            tracing::warn!(
                supplier,
                ?kind,
                reason,
                "submission not sent or not accepted by the node"
            );
            if let Some(m) = &self.metrics {
                let vec = if kind == TxKind::Claim {
                    &m.claim_errors
                } else {
                    &m.proof_errors
                };
                vec.with_label_values(&[supplier, label]).inc();
            }
        }
        let sent = self.engine.handle(Event::TxOutcome { kind, keys, outcome });
        step.merge(sent);
        step
    }

    /// Whether `key`'s proof is still required, when the tx will be signed without Simulate (a fixed
    /// `transaction.gas_limit`); always `true` otherwise.
    ///
    /// poktroll decides the requirement with its live proof params when the proof is submitted (spec §6.3): a
    /// proof found required at the seed block stops being required when governance changes them before it lands.
    /// Simulate refuses such a proof for no fee (`TxOutcome::NotRequired`), but CheckTx runs only the ante
    /// checks: without Simulate it is refused in its block, its fee paid. So the requirement is checked again
    /// (the same check as `Command::CheckProofRequirement`, with the params of this height) right before.
    ///
    /// A check that cannot be made (a chain read failing) sends the proof: a fee paid for a proof the chain may
    /// refuse costs far less than a required proof never sent (slashed), and the proof did not depend on these
    /// reads before.
    async fn still_required(&mut self, key: &SessionKey) -> Result<bool, MinerError> {
        if self.config.gas_limit == 0 {
            return Ok(true);
        }
        match self.proof_required(key).await {
            Ok(required) => Ok(required),
            Err(e) if e.is_fenced() => Err(e),
            Err(e) => {
                tracing::warn!(
                    supplier = key.supplier,
                    session = key.session_id,
                    error = %e,
                    "cannot check again whether the proof is still required before a broadcast without Simulate; \
                     sending it"
                );
                Ok(true)
            }
        }
    }

    /// Whether the session's claim on chain (if any) has the root `root` that a proof from this miner's trie
    /// verifies against. A proof against another root fails on chain (spec §5.4 step 17) and costs its fee: it
    /// is not sent, and the mismatch is logged at ERROR and counted (`ha_miner_proof_errors_total{reason=
    /// "claim_root_mismatch"}`); the engine takes it as a refused proof, so the session expires as
    /// `proof_not_included` when the window closes. The trie is frozen once its claim is built (module `ingest`),
    /// so this guards against what should not happen, e.g. a claim on chain that another instance built.
    async fn claim_on_chain_is(&self, key: &SessionKey, root: &[u8]) -> Result<bool, MinerError> {
        // Unpinned: an answer from a node behind is harmless here (a claim's root never changes; absent lets the
        // proof go), and a refusal would hold the proof back.
        let Some(on_chain) = self.chain.claim_at(&key.session_id, &key.supplier, None).await? else {
            return Ok(true);
        };
        if on_chain.root_hash == root {
            return Ok(true);
        }
        tracing::error!(
            supplier = key.supplier,
            session = key.session_id,
            on_chain = hex::encode(&on_chain.root_hash),
            trie = hex::encode(root),
            "the claim on chain has another root than this miner's trie: a proof from it cannot verify; not sent"
        );
        if let Some(m) = &self.metrics {
            m.proof_errors
                .with_label_values(&[&key.supplier, "claim_root_mismatch"])
                .inc();
        }
        Ok(false)
    }

    /// Signs `messages` as one tx: a draft is simulated for gas, then signed with gas × adjustment and its fee;
    /// with a fixed `gas_limit` (config `transaction.gas_limit` ≠ 0) Simulate is skipped and that limit is used
    /// per message: a tx of n messages asks n × `gas_limit`, plus the gas its size costs (`fees::fixed_gas_limit`),
    /// doubled per message for sessions whose txs ran out of gas. One limit for the whole tx, whatever it carries, let
    /// a batch of claims (several suppliers' sessions ending together) outgrow it: the tx ran out of gas in its
    /// block, its fee paid and every claim in it failed, each then re-sent on its own (a second fee each).
    /// The price is `transaction.gas_price` raised to what the node takes (module `fees`), or the cap for sessions
    /// whose tx was stuck in the mempool (module `resolve`); the gas limit and fee signed are recorded in `signed`,
    /// so a refusal of the fee can be priced from them.
    async fn sign_with_gas(
        &self,
        key: &SigningKey,
        messages: Vec<wire::Any>,
        ordering: Ordering,
        account_number: u64,
        signed: &Signed,
    ) -> Result<Vec<u8>, SequenceError> {
        let price = self
            .gas_pricing
            .price_for(&self.chain, signed.kind, &signed.keys)
            .await?;
        let message_count = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        let mut plan = TxPlan {
            messages,
            memo: String::new(),
            gas_limit: 1_000_000,
            fee_amount: fees::simulation_fee(&price.amount),
            fee_denom: price.denom,
            ordering,
            chain_id: self.config.chain_id.clone(),
            account_number,
        };
        if self.config.gas_limit != 0 {
            // Rules "fixed gas covers the tx" and "out of gas doubles" (`fees::fixed_gas_limit`): the messages'
            // share plus the size gas of the signed draft. The fee grows with the limit and the tx's length only
            // by a few bytes with the fee (the margin): a second draft confirms it, a third is never needed.
            let doublings = self.gas_pricing.gas_doublings(signed.kind, &signed.keys);
            let limit = |len| fees::fixed_gas_limit(self.config.gas_limit, message_count, doublings, len);
            plan.gas_limit = limit(0);
            for _ in 0..3 {
                plan.fee_amount = tx::fee_for_gas(&price.amount, plan.gas_limit)?;
                let needed = limit(tx::build_signed_tx(key, &plan)?.tx_bytes.len());
                if needed <= plan.gas_limit {
                    break;
                }
                plan.gas_limit = needed;
            }
        } else {
            // A non-zero fee, so Simulate charges the fee transfer the block will charge (see `simulation_fee`).
            let draft = tx::build_signed_tx(key, &plan)?;
            let gas = self.chain.simulate(draft.tx_bytes).await?;
            plan.gas_limit = tx::gas_limit_from_simulation(gas, self.config.gas_adjustment);
        }
        plan.fee_amount = tx::fee_for_gas(&price.amount, plan.gas_limit)?;
        signed.record(plan.gas_limit, plan.fee_amount);
        if let Some(first) = signed.keys.first() {
            // The funds check's estimate of a proof tx's fee (module `afford`).
            self.gas_pricing.note_signed(
                signed.kind,
                &first.supplier,
                plan.gas_limit,
                plan.fee_amount,
                message_count,
            );
        }
        Ok(tx::build_signed_tx(key, &plan)?.tx_bytes)
    }

    /// Confirms the leadership once more right before a tx leaves, after the chain reads and the simulation
    /// that build it: the confirmation at the start of a submission holds only for a moment (on raft a node is
    /// the only leader for about an election timeout after a quorum acknowledged it), and building a tx or
    /// re-sending a refused batch (module `refusal`) can take longer. A deposed leader's broadcast costs a fee
    /// and, for a proof against another root, the claim.
    async fn confirm_leadership_before_sending(&self) -> Result<(), SequenceError> {
        if self.leader_right_now().await {
            Ok(())
        } else {
            Err(SequenceError::NotSent(NOT_LEADER.into()))
        }
    }
}

/// The reason of a tx not sent because its deadline passed at `height`.
fn deadline_passed(height: i64) -> String {
    format!("{DEADLINE_PASSED} (height {height}) before the tx left")
}

/// The reason a submission's outcome other than a broadcast a node took is counted under, in
/// `ha_miner_{claim,proof}_errors_total` and as the `result` of a re-send: `not_leader` and `deadline_passed`
/// (never sent), `refused` (a node refused it at Simulate or CheckTx), `not_required` (a proof the chain refused
/// as no longer required, `TxOutcome::NotRequired`, or found so before a broadcast without Simulate),
/// `rejected` (it cannot be sent),
/// `ha_conflict`, `retryable` (no node answered).
fn error_reason(outcome: &TxOutcome) -> &'static str {
    match outcome {
        TxOutcome::NotSent(reason) if reason == NOT_LEADER => "not_leader",
        TxOutcome::NotSent(reason) if reason.starts_with(DEADLINE_PASSED) => "deadline_passed",
        TxOutcome::Refused(_) => "refused",
        TxOutcome::NotRequired(_) => "not_required",
        TxOutcome::Rejected(_) => "rejected",
        TxOutcome::HaConflict(_) => "ha_conflict",
        TxOutcome::Retryable(_) | TxOutcome::NotSent(_) | TxOutcome::Broadcast => "retryable",
    }
}
