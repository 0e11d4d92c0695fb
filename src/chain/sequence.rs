//! Per-signer tx state. Ordered txs (unordered off): the signer's account number and sequence, tracked locally
//! so consecutive txs do not each cost an account query, and recovered when the chain disagrees. Unordered txs:
//! the signer's last `timeout_timestamp`, so each of its txs gets its own ([`UnorderedTimeouts`]: the SDK keeps
//! one unordered nonce per (signer, timeout)).
//!
//! One [`Sequencer`] per signer serialises that signer's submissions (build, broadcast, bump) so two tasks never
//! sign with the same sequence. The sequence is bumped when CheckTx admits the tx (code 0): from then on the
//! node's check state expects the next one, whether or not the tx later succeeds in its block. On
//! `account sequence mismatch` (SDK code 32, e.g. another instance signed with the same key, or a tx of ours
//! was dropped) the account is re-read from the chain and the tx is rebuilt and sent once more. The SDK's error
//! text names the sequence the node's check state expects ("expected N, got M"), which also counts txs of
//! ours still in the mempool that the committed account does not show yet; the larger of the two is used.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::query::{ChainClient, ChainError};
use super::tx::{Ordering, Timestamp, TxError, UnorderedTimeouts};
use crate::protocol::wire;

/// The SDK's `ErrWrongSequence` code.
pub const SEQUENCE_MISMATCH_CODE: u32 = 32;

/// What an ordered tx is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSequence {
    /// Account number (part of the SignDoc).
    pub account_number: u64,
    /// The sequence the next ordered tx must carry.
    pub sequence: u64,
}

/// Errors of an ordered submission.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    /// Reading the account (or building the tx from the chain) failed: nothing was broadcast.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The broadcast itself failed, whatever the error: the node may have admitted the tx before it failed (its
    /// outcome is unknown, so it is kept and looked up, not replaced by a new tx with a second fee).
    #[error("broadcast: {0}")]
    Broadcast(ChainError),
    /// The tx could not be built.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The caller chose not to send the tx it built (e.g. it no longer leads); nothing was broadcast.
    #[error("not sent: {0}")]
    NotSent(String),
}

/// Whether a CheckTx/DeliverTx result is the SDK's account sequence mismatch.
pub fn is_sequence_mismatch(code: u32, log: &str) -> bool {
    code == SEQUENCE_MISMATCH_CODE || log.contains("account sequence mismatch")
}

/// The sequence the node expects, from the SDK's text `account sequence mismatch, expected N, got M: ...`.
pub fn expected_sequence_in(log: &str) -> Option<u64> {
    let (_, rest) = log.split_once("expected ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Sequence tracking for one signer; see the module docs.
#[derive(Debug)]
pub struct Sequencer {
    /// The signer's address.
    address: String,
    /// `None` until first read from the chain, and again after an outcome that leaves it unknown (a broadcast
    /// that failed in transport may or may not have reached the mempool). The async mutex is held across a whole
    /// submission: that is what serialises the signer's txs.
    state: tokio::sync::Mutex<Option<AccountSequence>>,
    /// The unordered timeouts handed out to this signer.
    unordered: Mutex<UnorderedTimeouts>,
}

impl Sequencer {
    /// A sequencer for `address`; the account is read from the chain at the first submission.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            state: tokio::sync::Mutex::new(None),
            unordered: Mutex::new(UnorderedTimeouts::new()),
        }
    }

    /// The ordering of this signer's next unordered tx: its own timeout, `block_time` + `ttl_secs` or just
    /// after the previous one handed out (see [`UnorderedTimeouts`]).
    pub fn next_unordered(&self, block_time: Timestamp, ttl_secs: i64) -> Ordering {
        self.unordered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next(block_time, ttl_secs)
    }

    /// The signer's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The locally tracked account number and next sequence, if known (waits for a submission in progress).
    pub async fn current(&self) -> Option<AccountSequence> {
        *self.state.lock().await
    }

    /// Re-reads the account from the chain (e.g. after another process signed with this key).
    pub async fn refresh(&self, chain: &ChainClient) -> Result<AccountSequence, ChainError> {
        let mut state = self.state.lock().await;
        let fresh = self.fetch(chain, None).await?;
        *state = Some(fresh);
        Ok(fresh)
    }

    async fn fetch(&self, chain: &ChainClient, hint: Option<u64>) -> Result<AccountSequence, ChainError> {
        let account = chain.account(&self.address).await?;
        Ok(AccountSequence {
            account_number: account.account_number,
            sequence: account.sequence.max(hint.unwrap_or(0)),
        })
    }

    /// Builds (with the tracked account number and sequence), broadcasts (SYNC: mempool admission) and tracks one
    /// ordered tx. `build` may simulate for gas; it is called again after a sequence mismatch, which is retried
    /// once with the account refreshed from the chain. Returns the broadcast response: code 0 (the sequence is
    /// bumped) or the node's non-zero CheckTx code (the sequence is not consumed; a mismatch that persists after
    /// the retry leaves the sequence unknown, to be re-read next time).
    pub async fn submit<B, Fut>(&self, chain: &ChainClient, mut build: B) -> Result<wire::TxResponse, SequenceError>
    where
        B: FnMut(AccountSequence) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, SequenceError>>,
    {
        let mut state = self.state.lock().await;
        let mut retried = false;
        loop {
            let current = match *state {
                Some(current) => current,
                None => {
                    let fresh = self.fetch(chain, None).await?;
                    *state = Some(fresh);
                    fresh
                }
            };
            let mismatch_log = match build(current).await {
                Ok(tx_bytes) => {
                    let response = match chain.broadcast(tx_bytes).await {
                        Ok(r) => r,
                        Err(e) => {
                            // Maybe admitted, maybe not: the next submission re-reads the account.
                            *state = None;
                            return Err(SequenceError::Broadcast(e));
                        }
                    };
                    if response.code == 0 {
                        *state = Some(AccountSequence {
                            sequence: current.sequence.saturating_add(1),
                            ..current
                        });
                        return Ok(response);
                    }
                    if !is_sequence_mismatch(response.code, &response.raw_log) {
                        return Ok(response);
                    }
                    if retried {
                        *state = None;
                        tracing::warn!(signer = %self.address, log = %response.raw_log, "account sequence mismatch persists after refreshing the account");
                        return Ok(response);
                    }
                    response.raw_log
                }
                // Simulation with a stale sequence fails the same way.
                Err(e) if !retried && e.to_string().contains("account sequence mismatch") => e.to_string(),
                Err(e) => return Err(e),
            };
            retried = true;
            let fresh = match self.fetch(chain, expected_sequence_in(&mismatch_log)).await {
                Ok(f) => f,
                Err(e) => {
                    *state = None;
                    return Err(e.into());
                }
            };
            tracing::warn!(
                signer = %self.address,
                stale = current.sequence,
                refreshed = fresh.sequence,
                log = %mismatch_log,
                "account sequence mismatch: refreshed the account, retrying once"
            );
            *state = Some(fresh);
        }
    }
}

/// One [`Sequencer`] per signer, created on first use.
#[derive(Debug, Default)]
pub struct Sequencers {
    /// By signer address.
    by_signer: Mutex<HashMap<String, Arc<Sequencer>>>,
}

impl Sequencers {
    /// No signers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sequencer of `address` (the same one for every caller).
    pub fn for_signer(&self, address: &str) -> Arc<Sequencer> {
        let mut map = self.by_signer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            map.entry(address.to_string())
                .or_insert_with(|| Arc::new(Sequencer::new(address))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_detection_and_expected_sequence() {
        let log = "account sequence mismatch, expected 7, got 3: incorrect account sequence";
        assert!(is_sequence_mismatch(32, ""));
        assert!(is_sequence_mismatch(4, log));
        assert!(!is_sequence_mismatch(4, "signature verification failed"));
        assert_eq!(expected_sequence_in(log), Some(7));
        assert_eq!(expected_sequence_in("expected , got"), None);
        assert_eq!(expected_sequence_in("nothing"), None);
    }

    #[test]
    fn one_sequencer_per_signer() {
        let s = Sequencers::new();
        let a = s.for_signer("pokt1a");
        assert!(Arc::ptr_eq(&a, &s.for_signer("pokt1a")));
        assert!(!Arc::ptr_eq(&a, &s.for_signer("pokt1b")));
        assert_eq!(a.address(), "pokt1a");
    }

    fn timeout(ordering: Ordering) -> Timestamp {
        match ordering {
            Ordering::Unordered { timeout, .. } => timeout,
            Ordering::Ordered { .. } => panic!("not unordered"),
        }
    }

    #[test]
    fn each_signer_has_its_own_unordered_timeouts() {
        let s = Sequencers::new();
        let block_time = Timestamp { seconds: 100, nanos: 0 };
        let a1 = timeout(s.for_signer("pokt1a").next_unordered(block_time, 60));
        let a2 = timeout(s.for_signer("pokt1a").next_unordered(block_time, 60));
        let b1 = timeout(s.for_signer("pokt1b").next_unordered(block_time, 60));
        assert_eq!(a1, Timestamp { seconds: 160, nanos: 0 });
        assert_eq!(a2, Timestamp { seconds: 160, nanos: 1 });
        assert_eq!(b1, a1, "another signer's nonces are its own");
    }
}
