//! [`Command::LookupOnChain`](crate::miner::lifecycle::Command::LookupOnChain): what the chain holds for a
//! session, answered to the engine as [`Event::OnChain`] / [`Event::ClaimOnChain`], or [`Event::Settled`] once
//! the claim was settled.
//!
//! Why settlements: poktroll settles a claim at the end of block `SettlementSessionEnd` (the proof window's
//! close, §3) and deletes it, so from that block on a `Claim` query says "not found" for a paid claim as for a
//! lost one. A proof included in that very block (a re-send near the close, a failover), or a session looked at
//! again after a restart, would read as lost: a false revenue-loss alarm (lessons.md). So when the claim is
//! gone at or after the settlement height, the outcome is read from that block's events over CometBFT
//! (`block_results`, [`crate::chain::settlement`]). Without a CometBFT client, or when the node cannot answer
//! for a few blocks (e.g. it discards ABCI responses), the lookup falls back to "not found" and says so at WARN.
//! Not for a session decided "no proof required" (`Settled`, its settlement not seen): "not found" is all it
//! knew already, so a block that cannot be read is no answer (asked again; the engine gives the settlement up as
//! unknown after its bound, `lifecycle::SETTLEMENT_WAIT_BLOCKS`), and a block without the claim's event, or no
//! CometBFT client to read it with, ends it as unknown ([`Event::SettlementUnknown`]), never as paid.

use super::{Miner, MinerError};
use crate::chain::comet::CometError;
use crate::chain::query::ChainError;
use crate::chain::settlement::{BlockSettlements, ClaimSettlement};
use crate::miner::lifecycle::{Event, SessionKey, State, Step};
use crate::protocol::wire;
use crate::smst::hash::root_sum_count;

/// Blocks after the settlement height during which a failed `block_results` read is retried (the lookup fails
/// and comes again at the next block) before the lookup goes on without it.
pub(super) const SETTLEMENT_READ_BLOCKS: i64 = 3;

/// Blocks after the settlement height during which a CometBFT node that cannot answer for the settlement block yet
/// is waited for: one that does not have the block ("must be less than or equal to the current blockchain height":
/// its RPC is often other infrastructure than the gRPC node the miner follows, and can lag it), or that does not
/// answer at all (down, timing out). Neither says anything about the block, so neither uses up
/// [`SETTLEMENT_READ_BLOCKS`], which is for the node's own refusals (one that discards ABCI responses answers every
/// height with an error): a proof landing at the proof window's close would otherwise be judged without its
/// settlement, not included, while the chain paid (a false loss). Bounded, so a node gone for good still lets the
/// session be judged (after 100 blocks: more than an hour and a half of 60 s blocks). The engine waits as long for
/// the settlement of a session decided "no proof required" before it gives it up as unknown.
pub(super) const SETTLEMENT_LAG_BLOCKS: i64 = crate::miner::lifecycle::SETTLEMENT_WAIT_BLOCKS;

/// How many blocks after the settlement height a failed read of it is retried: [`SETTLEMENT_LAG_BLOCKS`] while the
/// node does not have the block yet or does not answer (transport, timeout, a proxy's 5xx), else
/// [`SETTLEMENT_READ_BLOCKS`].
pub(super) fn read_budget(error: &CometError) -> i64 {
    let waiting = error.is_height_not_available()
        || matches!(error, CometError::Transport { .. } | CometError::Timeout { .. })
        || matches!(error, CometError::Http { status, .. } if *status >= 500);
    match waiting {
        true => SETTLEMENT_LAG_BLOCKS,
        false => SETTLEMENT_READ_BLOCKS,
    }
}

/// What a session's settlement read gave ([`Miner::settlement_of`]).
enum Settlement {
    /// Read (or not readable for good, or not due): the session's settlement, if the block has one.
    Read(Option<Box<ClaimSettlement>>),
    /// The CometBFT node cannot answer for the block yet, or (a session decided "no proof required", whose
    /// settlement is all the lookup is for) cannot answer at all: no answer this block.
    NotYet,
    /// The block was read and holds no event of the claim of a session decided "no proof required", or there is no
    /// CometBFT client to read it with: asking again cannot tell what the chain did ([`Event::SettlementUnknown`]).
    Missing,
}

/// The settlements of one block, kept for the other sessions settled in it (one read per block, not per session),
/// shared by the lookup and the settlement metrics (module `settled`).
#[derive(Debug, Default)]
pub(super) struct SettlementCache {
    height: i64,
    block: BlockSettlements,
    /// The last failed read: the miner's height when it failed, the height read when the error is that height's
    /// own (`None`: the node failed, any height), and its error. No node is asked again within the same block
    /// (a hung node costs its timeout once per block, not once per read: the lookup and the settlement count of
    /// one block read the same heights); a node's answer that one height cannot be read (pruned, say) fails
    /// only that height, so an old block a pruning node no longer serves does not make newer ones unreadable.
    failed: Option<FailedRead>,
}

/// A failed `block_results` read, remembered for the rest of the block ([`SettlementCache::failed`]).
#[derive(Debug)]
struct FailedRead {
    now: i64,
    height: Option<i64>,
    error: CometError,
}

impl FailedRead {
    fn new(now: i64, at: i64, error: CometError) -> Self {
        // The node's own answer (a JSON-RPC error, a reply that cannot be read) is about the height asked; no
        // answer (transport, timeout, an HTTP error of a proxy) is about the node.
        let height = matches!(error, CometError::Rpc { .. } | CometError::BadResponse { .. }).then_some(at);
        Self { now, height, error }
    }

    /// The remembered error, if it answers a read of `at` at the miner's height `now`.
    fn answers(&self, now: i64, at: i64) -> Option<&CometError> {
        (self.now == now && self.height.is_none_or(|h| h == at)).then_some(&self.error)
    }
}

impl Miner {
    /// Reads the chain for `key` and feeds the answer to the engine.
    pub(super) async fn lookup(&mut self, key: SessionKey) -> Result<Step, MinerError> {
        let answer = self.chain.claim_at_tip(&key.session_id, &key.supplier).await?;
        // A claim read below the tip (a node behind answered with the claim it holds: `ChainClient::claim_at`)
        // says of its proof what the chain said at that older height: a proof validated since reads "not
        // validated" there. Past the proof window's close that is no answer for a session waiting on its proof:
        // the chain settles and deletes the claim at the end of block `proof_close`, so a node still holding it is
        // from before, and two such answers expired the session as `proof_not_included` (a false loss of a paid
        // claim). So the lookup fails as the node's being behind (retryable) and the engine asks again at the next
        // block, where the settlement decides. Inside the window the answer is taken: at worst the engine re-sends
        // the kept proof tx (its same bytes: no second fee), and a node behind the tip every block (a gRPC endpoint
        // a block behind the CometBFT one the height comes from) must not keep a dropped proof from its re-send.
        // The claim's existence is read as it is.
        if let (Some(claim), Some((height, served))) = (&answer.claim, answer.behind()) {
            let past_close = self
                .engine
                .session(&key)
                .is_some_and(|r| r.state == State::Proving && self.engine.height() > r.schedule.proof_close);
            if past_close && claim.proof_validation_status != wire::ClaimProofStatus::Validated as i32 {
                return Err(ChainError::Behind {
                    query: "claim (its proof validation status)",
                    height,
                    served,
                }
                .into());
            }
        }
        let claim = answer.claim;
        let settled = match claim {
            Some(_) => None,
            None => match self.settlement_of(&key).await? {
                Settlement::Read(settled) => settled.map(|s| *s),
                // No answer: the engine asks again at the next block.
                Settlement::NotYet => return Ok(Step::default()),
                Settlement::Missing => return Ok(self.engine.handle(Event::SettlementUnknown { key })),
            },
        };
        // The root's sum and count: what the claim on chain pays for.
        let claimed_totals = match (&claim, &settled) {
            (Some(c), _) => root_sum_count(&c.root_hash).map(|(sum, count)| (count, sum)),
            (None, Some(s)) => s.relays.zip(s.compute_units),
            (None, None) => None,
        };
        let claim_exists = claim.is_some() || settled.is_some();
        let mut step = Step::default();
        // What the claim covers first: a loss at settlement counts the claim's root, not the trie.
        if let Some((relays, compute_units)) = claimed_totals {
            step.merge(self.engine.handle(Event::ClaimOnChain {
                key: key.clone(),
                relays,
                compute_units,
            }));
        }
        let answer = match settled {
            Some(s) => Event::Settled {
                key: key.clone(),
                outcome: s.outcome,
            },
            None => Event::OnChain {
                key: key.clone(),
                claim_exists,
                proof_validated: claim
                    .is_some_and(|c| c.proof_validation_status == wire::ClaimProofStatus::Validated as i32),
            },
        };
        // A claim confirmed or a proof validated is reported by the engine's step (`Command::is_report`), once
        // the record that moved the session is stored (module `confirmed`).
        step.merge(self.engine.handle(answer));
        Ok(step)
    }

    /// The settlement of `key`'s claim, when the chain is past the session's settlement height and its events
    /// say what happened; `None` before that, without a CometBFT client, or when no event matches; `NotYet` while
    /// the CometBFT node is waited for ([`SETTLEMENT_LAG_BLOCKS`]).
    ///
    /// A session decided "no proof required" (`Settled`, its settlement not seen) is looked up for its settlement
    /// alone: its claim gone says nothing the decision did not, and only the settlement tells a claim the chain
    /// paid from one it expired. So for it a block that cannot be read is never judged without its events (it
    /// stays `NotYet`: the engine asks again, and gives the settlement up as unknown once its bound passed), and a
    /// block read without an event of its claim is `Missing`.
    async fn settlement_of(&mut self, key: &SessionKey) -> Result<Settlement, MinerError> {
        let Some(record) = self.engine.session(key) else {
            return Ok(Settlement::Read(None));
        };
        let settlement_only = record.state == State::Settled && !record.settlement_seen;
        let at = record.schedule.settlement;
        let (application, service) = (record.application_address.clone(), record.service_id.clone());
        let session_end = record.schedule.session_end;
        let height = self.engine.height();
        if height < at {
            return Ok(Settlement::Read(None));
        }
        match self.read_settlements(at).await {
            Ok(true) => {}
            // No CometBFT client: nothing but the settlement tells a claim the chain paid from one it expired (the
            // chain decides the requirement again at settlement, §6.3), so the session's settlement is unknown,
            // never taken as paid from its claim's being gone.
            Ok(false) if settlement_only => return Ok(Settlement::Missing),
            Ok(false) => return Ok(Settlement::Read(None)),
            Err(e) if height <= at + SETTLEMENT_READ_BLOCKS => return Err(MinerError::Comet(e)),
            // The engine bounds the wait and reports a settlement given up (`Command::RecordSettlementUnknown`):
            // no failed block work nor WARN per block meanwhile. Only while the node may still come to answer
            // (`read_budget`): a node refusing the height itself (its block results pruned or discarded) answers
            // the same at every block, so the settlement is given up as unknown at once (no claim query and
            // record write per block for up to SETTLEMENT_LAG_BLOCKS).
            Err(e) if settlement_only && height > at + read_budget(&e) => {
                tracing::debug!(
                    supplier = key.supplier,
                    session = key.session_id,
                    height = at,
                    error = %e,
                    "the CometBFT node refuses the settlement block of a session decided \"no proof required\"; \
                     its settlement is unknown"
                );
                return Ok(Settlement::Missing);
            }
            Err(e) if settlement_only => {
                tracing::debug!(
                    supplier = key.supplier,
                    session = key.session_id,
                    height = at,
                    error = %e,
                    "cannot read the settlement block's events of a session decided \"no proof required\"; asked again \
                     at the next block"
                );
                return Ok(Settlement::NotYet);
            }
            // Waited for without failing the block's work (no WARN per block, no processing lag): said once.
            Err(e) if height <= at + read_budget(&e) => {
                if height == at + SETTLEMENT_READ_BLOCKS + 1 {
                    tracing::warn!(
                        supplier = key.supplier,
                        session = key.session_id,
                        height = at,
                        error = %e,
                        "the CometBFT node cannot answer for the settlement block yet (behind the gRPC node, or \
                         unreachable): waiting for it up to {SETTLEMENT_LAG_BLOCKS} blocks before judging the \
                         session without it"
                    );
                }
                return Ok(Settlement::NotYet);
            }
            Err(e) => {
                tracing::warn!(
                    supplier = key.supplier,
                    session = key.session_id,
                    height = at,
                    error = %e,
                    "cannot read the settlement block's events; the session's claim is gone from the chain \
                     and is judged without them"
                );
                return Ok(Settlement::Read(None));
            }
        }
        let settled = self
            .settlements
            .block
            .claims
            .iter()
            .find(|s| {
                s.is_for(&key.supplier, &application, &service, session_end)
                    && s.session_id.as_ref().is_none_or(|id| *id == key.session_id)
            })
            .cloned()
            .map(Box::new);
        Ok(match settled {
            None if settlement_only => Settlement::Missing,
            settled => Settlement::Read(settled),
        })
    }

    /// Reads block `at`'s settlement events into the cache ([`Miner::settlement_block`]), unless it holds them
    /// already: `false` without a CometBFT client (nothing read).
    pub(super) async fn read_settlements(&mut self, at: i64) -> Result<bool, CometError> {
        if self.settlements.height == at {
            return Ok(true);
        }
        let Some(comet) = &self.comet else {
            return Ok(false);
        };
        let now = self.engine.height();
        if let Some(e) = self.settlements.failed.as_ref().and_then(|f| f.answers(now, at)) {
            return Err(e.clone());
        }
        let results = match comet.block_results(at).await {
            Ok(results) => results,
            Err(e) => {
                self.settlements.failed = Some(FailedRead::new(now, at, e.clone()));
                return Err(e);
            }
        };
        let (block, errors) = BlockSettlements::read(&results.finalize_block_events);
        // The block's events are the whole network's: a shape this reader does not know (another release) makes
        // every supplier's events unreadable, so one WARN per block, the rest at DEBUG.
        if let Some(first) = errors.first() {
            tracing::warn!(
                height = at,
                unreadable = errors.len(),
                error = %first,
                "unreadable settlement events in this block (any supplier's; the others at DEBUG)"
            );
        }
        for e in errors.iter().skip(1) {
            tracing::debug!(height = at, error = %e, "unreadable settlement event");
        }
        self.settlements = SettlementCache {
            height: at,
            block,
            failed: None,
        };
        Ok(true)
    }

    /// The settlements of the block [`Miner::read_settlements`] read last.
    pub(super) fn settlement_block(&self) -> &BlockSettlements {
        &self.settlements.block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A node that has not the block yet, or does not answer, is waited for; its own refusals (a node discarding
    /// ABCI responses, a pruned height) use up the few blocks of [`SETTLEMENT_READ_BLOCKS`].
    #[test]
    fn what_is_waited_for() {
        let rpc = |data: &str| CometError::Rpc {
            method: "block_results".into(),
            code: -32603,
            message: "Internal error".into(),
            data: data.into(),
        };
        let waited = [
            rpc("height 20 must be less than or equal to the current blockchain height 14"),
            CometError::Transport {
                method: "block_results".into(),
                message: "connection refused".into(),
            },
            CometError::Timeout {
                method: "block_results".into(),
                after: Duration::from_secs(5),
            },
            CometError::Http {
                method: "block_results".into(),
                status: 502,
                body: "bad gateway".into(),
            },
        ];
        for e in &waited {
            assert_eq!(read_budget(e), SETTLEMENT_LAG_BLOCKS, "{e}");
        }
        for e in [
            rpc("height 3 is not available, lowest height is 10"),
            rpc("block results are not stored (discard_abci_responses)"),
        ] {
            assert_eq!(read_budget(&e), SETTLEMENT_READ_BLOCKS, "{e}");
        }
    }
}
