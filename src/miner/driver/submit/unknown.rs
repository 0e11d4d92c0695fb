//! Txs whose broadcast got no answer (our gRPC timeout, a transport error): the node may have taken them into its
//! mempool. Their signed bytes are kept, by the sessions they carry, so the next attempt at those sessions first
//! finds out what happened (the tx looked up by hash, then the same bytes broadcast again, which a node takes at
//! most once) instead of signing a new tx: a new tx has a new timeout and a new hash, so if the first one was in a
//! mempool both would land, the second failing or duplicating its messages and paying its fee anyway. Only once
//! the kept tx can no longer be included (its timeout passed) and is not on chain is a new one built.
//!
//! This map is the leader's memory; module `kept` stores every tx before it leaves, so a new leader or a restarted
//! process fills it again from the session records.

use std::collections::HashMap;
use std::sync::Arc;

use crate::chain::tx::Timestamp;
use crate::miner::lifecycle::{SessionKey, TxKind};

/// The last block that can include a signed tx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::miner::driver) enum Expiry {
    /// An unordered tx: its `timeout_timestamp`. A block whose time is after it refuses the tx (cosmos-sdk
    /// `TxTimeoutHeightDecorator`, `ErrTxTimeout`).
    Time(Timestamp),
    /// An ordered tx: its `timeout_height` (0: none). A block above it refuses the tx (`ErrTxTimeoutHeight`).
    Height(u64),
}

impl Expiry {
    /// Whether no block after the latest one (`height`, at `time`) can include the tx: blocks only go up in
    /// height and time. An ordered tx without a timeout height never expires on its own.
    pub(in crate::miner::driver) fn passed(self, height: i64, time: Timestamp) -> bool {
        match self {
            Self::Time(timeout) => (time.seconds, time.nanos) > (timeout.seconds, timeout.nanos),
            Self::Height(0) => false,
            Self::Height(timeout) => u64::try_from(height).is_ok_and(|h| h >= timeout),
        }
    }

    /// Whether the tx's expiry is known from the height alone (no block time needed).
    pub(in crate::miner::driver) fn by_height(self) -> bool {
        matches!(self, Self::Height(_))
    }
}

/// A signed tx as it was handed to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::miner::driver) struct SentTx {
    /// CometBFT hash (uppercase hex SHA-256 of `bytes`): what `GetTx` finds it by.
    pub hash: String,
    /// The encoded `TxRaw`, broadcast again as is.
    pub bytes: Vec<u8>,
    /// When it can no longer be included.
    pub expiry: Expiry,
    /// The chain's latest height known when it was first handed to a node (`None`: kept by an older version,
    /// which did not store it). A kept tx the node still has (code 19) two or more blocks after it is replaced
    /// (module `resolve`: nobody includes it).
    pub first_broadcast_height: Option<i64>,
}

/// The txs whose outcome is unknown, by the (kind, session) messages they carry: one tx may carry several
/// sessions' messages (a batch), and is then shared by their entries.
#[derive(Debug, Default)]
pub(in crate::miner::driver) struct UnknownTxs {
    by_session: HashMap<(TxKind, SessionKey), Arc<SentTx>>,
}

impl UnknownTxs {
    /// Keeps `tx`, whose broadcast got no answer, for the sessions whose messages it carries.
    pub(in crate::miner::driver) fn insert(&mut self, kind: TxKind, keys: &[SessionKey], tx: SentTx) {
        let tx = Arc::new(tx);
        for key in keys {
            self.by_session.insert((kind, key.clone()), Arc::clone(&tx));
        }
    }

    /// The tx of unknown outcome that carries `key`'s message of `kind`, if any.
    pub(in crate::miner::driver) fn get(&self, kind: TxKind, key: &SessionKey) -> Option<Arc<SentTx>> {
        self.by_session.get(&(kind, key.clone())).cloned()
    }

    /// Forgets the entries of `keys`' messages of `kind` (their attempt found out what happened to the tx). The
    /// entries of other sessions the same tx carries stay: their own attempts find out for themselves.
    pub(in crate::miner::driver) fn forget_all(&mut self, kind: TxKind, keys: &[SessionKey]) {
        for key in keys {
            self.forget(kind, key);
        }
    }

    /// Forgets the entry of `key`'s message of `kind`.
    pub(in crate::miner::driver) fn forget(&mut self, kind: TxKind, key: &SessionKey) {
        self.by_session.remove(&(kind, key.clone()));
    }

    /// Keeps only the entries `keep` says yes to (sessions that can still send that kind of message).
    pub(in crate::miner::driver) fn retain(&mut self, mut keep: impl FnMut(TxKind, &SessionKey) -> bool) {
        self.by_session.retain(|(kind, key), _| keep(*kind, key));
    }

    /// Number of (kind, session) entries.
    #[cfg(test)]
    pub(in crate::miner::driver) fn len(&self) -> usize {
        self.by_session.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(id: &str) -> SessionKey {
        SessionKey {
            supplier: "pokt1s".into(),
            session_id: id.into(),
        }
    }

    #[test]
    fn an_unordered_tx_expires_once_a_block_is_later_than_its_timeout() {
        let timeout = Timestamp { seconds: 100, nanos: 5 };
        let expiry = Expiry::Time(timeout);
        assert!(!expiry.passed(9, Timestamp { seconds: 90, nanos: 0 }));
        assert!(!expiry.passed(9, timeout), "a block at the timeout still includes it");
        assert!(expiry.passed(9, Timestamp { seconds: 100, nanos: 6 }));
        assert!(!expiry.by_height());
    }

    #[test]
    fn an_ordered_tx_expires_at_its_timeout_height_and_never_without_one() {
        let at = Timestamp::default();
        assert!(!Expiry::Height(10).passed(9, at), "block 10 can still include it");
        assert!(Expiry::Height(10).passed(10, at), "the next block is 11");
        assert!(!Expiry::Height(0).passed(i64::MAX, at));
        assert!(Expiry::Height(0).by_height());
    }

    #[test]
    fn a_batch_is_kept_per_session_and_forgotten_per_session() {
        let mut unknown = UnknownTxs::default();
        let tx = SentTx {
            hash: "AB".into(),
            bytes: vec![1],
            expiry: Expiry::Height(0),
            first_broadcast_height: None,
        };
        unknown.insert(TxKind::Claim, &[key("a"), key("b")], tx.clone());
        assert_eq!(unknown.get(TxKind::Claim, &key("b")).as_deref(), Some(&tx));
        assert!(unknown.get(TxKind::Proof, &key("b")).is_none());
        unknown.forget(TxKind::Claim, &key("a"));
        assert_eq!(unknown.len(), 1);
        unknown.insert(TxKind::Proof, &[key("c")], tx.clone());
        unknown.retain(|kind, _| kind == TxKind::Claim);
        assert_eq!(unknown.len(), 1);
        unknown.insert(TxKind::Claim, &[key("a"), key("b"), key("d")], tx.clone());
        unknown.forget_all(TxKind::Claim, &[key("a"), key("d")]);
        assert_eq!(unknown.len(), 1, "the sibling's entry stays");
        assert_eq!(unknown.get(TxKind::Claim, &key("b")).as_deref(), Some(&tx));
    }
}
