//! Txs kept in storage from right before they leave until their outcome is known, so a failover (raft or Redis
//! leadership moving) or a restart between a broadcast and what follows it does not make the next leader sign a
//! second tx while the first may still land (a second fee; a duplicate claim, or a proof that fails and pays).
//!
//! Where: in the session record of the first session the tx carries (its *holder*), as a field the engine does
//! not know (`in_flight_txs`, next to the engine's fields in the record's JSON; records without it read as
//! holding none, and older binaries ignore it). So keeping a tx is one fenced record write before the broadcast
//! ([`Miner::store_before_sending`](super::super::Miner)), through the same contract call as every record (on
//! Redis an `allow-oom` script: a tx still leaves at `maxmemory`), and it is dropped by a record write that happens
//! anyway: the outcome's, or the one that moves the holder out of its sending state (claimed, proved, expired),
//! or its prune. Storage holds at most one tx per (kind, live session), the txs in flight.
//!
//! A new leader or a restarted process restores them with the records and takes each as a tx of unknown outcome
//! (module `unknown`): found out about (looked up by hash, the same bytes broadcast again) before any new tx is
//! built for its sessions. A tx stored and never broadcast (a crash in between) is then broadcast once, or
//! expires and is replaced.
//!
//! The leader's own re-send (the engine sends again when the chain does not show the message two blocks after a
//! send the node took, code 0) goes the same way: its kept tx is looked up by hash and its same bytes broadcast
//! again (code 19: the node still has it), and only a tx the node refuses now, or one stuck in its mempool that no
//! block includes (module `resolve`: replaced at `transaction.max_gas_price` once 4 blocks old or at the window's
//! deadline), is replaced. Signing a new tx there
//! instead made a tx held up two or more blocks (full blocks at a window's open) land beside its replacement, the
//! chain taking the second as an update and charging its fee (and a second proof submission fee). The same bytes
//! can still land because an unordered tx's timeout covers its window at the chain's pace (module `ttl`), and an
//! ordered tx's `timeout_height` is the window's close.
//!
//! What this does not do, on purpose: a tx whose same bytes a node now refuses (mempool full, a fee raised, a
//! sequence moved) is replaced at the next block though it may still sit in another node's mempool. That can pay
//! a second fee if the first tx lands after all; holding the session until the first tx expires instead would,
//! when it never lands, leave too few blocks in the window for the replacement, and lose the session's reward (a
//! claim) or be slashed (a proof). A fee is the smaller loss.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::unknown::{Expiry, SentTx};
use crate::chain::tx::Timestamp;
use crate::miner::driver::fees::SessionGas;
use crate::miner::lifecycle::{SessionKey, SessionRecord, State, TxKind};

/// A tx as stored in its holder's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::miner::driver) struct StoredTx {
    /// Claim or proof.
    pub kind: StoredKind,
    /// Its CometBFT hash (what `GetTx` finds it by).
    pub hash: String,
    /// The encoded `TxRaw`, base64 (standard alphabet).
    pub tx: String,
    /// When it can no longer be included.
    pub expiry: StoredExpiry,
    /// The sessions (of the holder's supplier) whose messages it carries, the holder first.
    pub sessions: Vec<String>,
    /// [`SentTx::first_broadcast_height`]: absent in records an older version wrote (read as unknown, so such a
    /// tx is never replaced for being stuck), and left out when unknown, so an older binary reads the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broadcast_height: Option<i64>,
}

/// [`TxKind`] in a stored tx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::miner::driver) enum StoredKind {
    /// `MsgCreateClaim`s.
    Claim,
    /// `MsgSubmitProof`s.
    Proof,
}

impl From<TxKind> for StoredKind {
    fn from(kind: TxKind) -> Self {
        match kind {
            TxKind::Claim => Self::Claim,
            TxKind::Proof => Self::Proof,
        }
    }
}

impl From<StoredKind> for TxKind {
    fn from(kind: StoredKind) -> Self {
        match kind {
            StoredKind::Claim => Self::Claim,
            StoredKind::Proof => Self::Proof,
        }
    }
}

/// [`Expiry`] in a stored tx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::miner::driver) enum StoredExpiry {
    /// An unordered tx's `timeout_timestamp`.
    Timeout {
        /// Seconds since the Unix epoch.
        seconds: i64,
        /// Nanoseconds within the second.
        nanos: i32,
    },
    /// An ordered tx's `timeout_height` (0: none).
    TimeoutHeight(u64),
}

impl From<Expiry> for StoredExpiry {
    fn from(expiry: Expiry) -> Self {
        match expiry {
            Expiry::Time(t) => Self::Timeout {
                seconds: t.seconds,
                nanos: t.nanos,
            },
            Expiry::Height(h) => Self::TimeoutHeight(h),
        }
    }
}

impl From<StoredExpiry> for Expiry {
    fn from(expiry: StoredExpiry) -> Self {
        match expiry {
            StoredExpiry::Timeout { seconds, nanos } => Self::Time(Timestamp { seconds, nanos }),
            StoredExpiry::TimeoutHeight(h) => Self::Height(h),
        }
    }
}

/// A session record as the driver writes it: the engine's record and the txs it holds.
#[derive(Serialize)]
pub(in crate::miner::driver) struct RecordOut<'a> {
    #[serde(flatten)]
    pub record: &'a SessionRecord,
    #[serde(skip_serializing_if = "<[StoredTx]>::is_empty")]
    pub in_flight_txs: &'a [StoredTx],
    /// The session's gas doublings and price at the cap (module `fees`).
    #[serde(skip_serializing_if = "SessionGas::is_unset")]
    pub gas: SessionGas,
}

/// A session record as the driver reads it.
#[derive(Deserialize)]
pub(in crate::miner::driver) struct RecordIn {
    #[serde(flatten)]
    pub record: SessionRecord,
    #[serde(default)]
    pub in_flight_txs: Vec<StoredTx>,
    #[serde(default)]
    pub gas: SessionGas,
}

/// A kept tx in memory.
#[derive(Debug, Clone)]
struct Kept {
    keys: Vec<SessionKey>,
    tx: SentTx,
}

/// The kept txs, by (kind, holder): what each holder's record is to hold.
#[derive(Debug, Default)]
pub(in crate::miner::driver) struct KeptTxs {
    by_holder: BTreeMap<(TxKind, SessionKey), Kept>,
}

/// The state in which a session sends `kind`: a kept tx of that kind matters only while its holder is in it.
fn sending_state(kind: TxKind) -> State {
    match kind {
        TxKind::Claim => State::Claiming,
        TxKind::Proof => State::Proving,
    }
}

impl KeptTxs {
    /// The stored form of `tx` carrying `keys`' messages of `kind` (`keys` not empty; the first is the holder).
    pub(in crate::miner::driver) fn stored(kind: TxKind, keys: &[SessionKey], tx: &SentTx) -> StoredTx {
        StoredTx {
            kind: kind.into(),
            hash: tx.hash.clone(),
            tx: base64::engine::general_purpose::STANDARD.encode(&tx.bytes),
            expiry: tx.expiry.into(),
            sessions: keys.iter().map(|k| k.session_id.clone()).collect(),
            first_broadcast_height: tx.first_broadcast_height,
        }
    }

    /// Keeps `tx`, stored in the record of `keys[0]`, for `keys`' messages of `kind`. Txs of the same kind kept
    /// for any of `keys` are superseded and dropped; returns their holders, whose records must be written again.
    /// (A tx of unknown outcome, and a tx the node took when the engine re-sends, is found out about before a new
    /// one is built: see the module docs.)
    pub(in crate::miner::driver) fn keep(&mut self, kind: TxKind, keys: &[SessionKey], tx: SentTx) -> Vec<SessionKey> {
        let Some(holder) = keys.first() else {
            return Vec::new();
        };
        let superseded: Vec<SessionKey> = self
            .by_holder
            .iter()
            .filter(|((k, h), kept)| *k == kind && h != holder && kept.keys.iter().any(|key| keys.contains(key)))
            .map(|((_, h), _)| h.clone())
            .collect();
        for h in &superseded {
            self.by_holder.remove(&(kind, h.clone()));
        }
        self.by_holder.insert(
            (kind, holder.clone()),
            Kept {
                keys: keys.to_vec(),
                tx,
            },
        );
        superseded
    }

    /// The kept tx of `kind` that carries `key`'s message (a tx the node took, or one of unknown outcome).
    pub(in crate::miner::driver) fn carrying(&self, kind: TxKind, key: &SessionKey) -> Option<SentTx> {
        self.by_holder
            .iter()
            .find(|((k, _), kept)| *k == kind && kept.keys.contains(key))
            .map(|(_, kept)| kept.tx.clone())
    }

    /// The kept txs of `kind` of `supplier`'s sessions, each with the sessions it carries (the funds checks count
    /// those that may still land: module `afford`).
    pub(in crate::miner::driver) fn of_supplier<'a>(
        &'a self,
        kind: TxKind,
        supplier: &'a str,
    ) -> impl Iterator<Item = (&'a [SessionKey], &'a SentTx)> + 'a {
        self.by_holder
            .iter()
            .filter(move |((k, holder), _)| *k == kind && holder.supplier == supplier)
            .map(|(_, kept)| (kept.keys.as_slice(), &kept.tx))
    }

    /// Drops the tx of `kind` held by `holder` (it did not leave, or its outcome is known).
    pub(in crate::miner::driver) fn drop_held(&mut self, kind: TxKind, holder: &SessionKey) -> bool {
        self.by_holder.remove(&(kind, holder.clone())).is_some()
    }

    /// Drops the tx `hash` (its outcome is known); returns its holder.
    pub(in crate::miner::driver) fn drop_tx(&mut self, hash: &str) -> Vec<SessionKey> {
        let holders: Vec<(TxKind, SessionKey)> = self
            .by_holder
            .iter()
            .filter(|(_, kept)| kept.tx.hash == hash)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &holders {
            self.by_holder.remove(k);
        }
        holders.into_iter().map(|(_, h)| h).collect()
    }

    /// The hashes of the txs `holder`'s record is to hold, given its current state (`None`: the session is gone):
    /// txs of a kind it no longer sends are dropped here (their outcome is known: claimed, proved, expired).
    pub(in crate::miner::driver) fn held_hashes(&mut self, holder: &SessionKey, state: Option<State>) -> Vec<String> {
        let mut held = Vec::new();
        for kind in [TxKind::Claim, TxKind::Proof] {
            let k = (kind, holder.clone());
            if state != Some(sending_state(kind)) {
                self.by_holder.remove(&k);
                continue;
            }
            if let Some(kept) = self.by_holder.get(&k) {
                held.push(kept.tx.hash.clone());
            }
        }
        held
    }

    /// The txs `holder`'s record holds, in their stored form (after [`Self::held_hashes`]).
    pub(in crate::miner::driver) fn held_by(&self, holder: &SessionKey) -> Vec<StoredTx> {
        [TxKind::Claim, TxKind::Proof]
            .into_iter()
            .filter_map(|k| {
                self.by_holder
                    .get(&(k, holder.clone()))
                    .map(|kept| Self::stored(k, &kept.keys, &kept.tx))
            })
            .collect()
    }

    /// The stored txs of `holder` other than its tx of `kind`, as they are kept now.
    pub(in crate::miner::driver) fn held_besides(&self, holder: &SessionKey, kind: TxKind) -> Vec<StoredTx> {
        [TxKind::Claim, TxKind::Proof]
            .into_iter()
            .filter(|k| *k != kind)
            .filter_map(|k| {
                self.by_holder
                    .get(&(k, holder.clone()))
                    .map(|kept| Self::stored(k, &kept.keys, &kept.tx))
            })
            .collect()
    }

    /// Restores a tx stored in `holder`'s record; returns it with the keys it carries, to be found out about
    /// (module `unknown`). `None` for an entry that does not decode (logged by the caller).
    pub(in crate::miner::driver) fn restore(
        &mut self,
        holder: &SessionKey,
        stored: &StoredTx,
    ) -> Option<(TxKind, Vec<SessionKey>, SentTx)> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(&stored.tx).ok()?;
        if crate::chain::tx::tx_hash(&bytes) != stored.hash {
            return None;
        }
        let kind = TxKind::from(stored.kind);
        let keys: Vec<SessionKey> = stored
            .sessions
            .iter()
            .map(|id| SessionKey {
                supplier: holder.supplier.clone(),
                session_id: id.clone(),
            })
            .collect();
        if keys.first() != Some(holder) {
            return None;
        }
        let tx = SentTx {
            hash: stored.hash.clone(),
            bytes,
            expiry: stored.expiry.into(),
            first_broadcast_height: stored.first_broadcast_height,
        };
        self.by_holder.insert(
            (kind, holder.clone()),
            Kept {
                keys: keys.clone(),
                tx: tx.clone(),
            },
        );
        Some((kind, keys, tx))
    }

    /// Forgets every kept tx (a leadership change: they are restored from the records).
    pub(in crate::miner::driver) fn clear(&mut self) {
        self.by_holder.clear();
    }

    /// Number of kept txs.
    #[cfg(test)]
    pub(in crate::miner::driver) fn len(&self) -> usize {
        self.by_holder.len()
    }
}

/// The hashes of `txs` (what a record was last stored with).
pub(in crate::miner::driver) fn hashes(txs: &[StoredTx]) -> Vec<String> {
    txs.iter().map(|t| t.hash.clone()).collect()
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

    fn tx(byte: u8, expiry: Expiry) -> SentTx {
        let bytes = vec![byte; 3];
        SentTx {
            hash: crate::chain::tx::tx_hash(&bytes),
            bytes,
            expiry,
            first_broadcast_height: Some(40),
        }
    }

    #[test]
    fn a_stored_tx_restores_as_it_was_kept() {
        let mut kept = KeptTxs::default();
        for expiry in [Expiry::Time(Timestamp { seconds: 7, nanos: 9 }), Expiry::Height(12)] {
            let sent = tx(1, expiry);
            let stored = KeptTxs::stored(TxKind::Proof, &[key("a"), key("b")], &sent);
            let json = serde_json::to_string(&stored).unwrap();
            let back: StoredTx = serde_json::from_str(&json).unwrap();
            let (kind, keys, restored) = kept.restore(&key("a"), &back).unwrap();
            assert_eq!((kind, keys, restored), (TxKind::Proof, vec![key("a"), key("b")], sent));
            assert!(kept.restore(&key("b"), &back).is_none(), "held by its first session");
        }
        let mut tampered = KeptTxs::stored(TxKind::Claim, &[key("a")], &tx(2, Expiry::Height(0)));
        tampered.hash = "00".into();
        assert!(kept.restore(&key("a"), &tampered).is_none());
    }

    /// A tx an older version stored has no first broadcast height: it reads as unknown (never replaced as stuck),
    /// and a tx whose height is unknown is stored without the field, as the older version wrote it.
    #[test]
    fn a_tx_stored_without_its_first_broadcast_height_reads_as_unknown() {
        let sent = tx(1, Expiry::Height(12));
        let mut old = serde_json::to_value(KeptTxs::stored(TxKind::Claim, &[key("a")], &sent)).unwrap();
        assert_eq!(old["first_broadcast_height"], serde_json::json!(40));
        old.as_object_mut().unwrap().remove("first_broadcast_height");
        let back: StoredTx = serde_json::from_value(old.clone()).unwrap();
        let (_, _, restored) = KeptTxs::default().restore(&key("a"), &back).unwrap();
        assert_eq!(restored.first_broadcast_height, None);
        assert_eq!(
            serde_json::to_value(KeptTxs::stored(TxKind::Claim, &[key("a")], &restored)).unwrap(),
            old
        );
    }

    #[test]
    fn a_new_tx_supersedes_the_kept_ones_of_its_sessions_and_a_done_holder_drops_its_tx() {
        let mut kept = KeptTxs::default();
        assert!(
            kept.keep(TxKind::Claim, &[key("a"), key("b")], tx(1, Expiry::Height(0)))
                .is_empty()
        );
        kept.keep(TxKind::Proof, &[key("c")], tx(2, Expiry::Height(0)));
        assert_eq!(
            kept.keep(TxKind::Claim, &[key("b")], tx(3, Expiry::Height(0))),
            vec![key("a")]
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(
            kept.held_hashes(&key("b"), Some(State::Claiming)),
            vec![tx(3, Expiry::Height(0)).hash]
        );
        assert_eq!(kept.held_by(&key("b")).len(), 1);
        assert!(kept.held_hashes(&key("b"), Some(State::Claimed)).is_empty());
        assert!(kept.held_by(&key("b")).is_empty());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept.drop_tx(&tx(2, Expiry::Height(0)).hash), vec![key("c")]);
        assert_eq!(kept.len(), 0);
    }

    #[test]
    fn a_record_without_txs_reads_and_writes_as_the_engines_record() {
        let record: SessionRecord = serde_json::from_value(serde_json::json!({
            "key": {"supplier": "pokt1s", "session_id": "a"},
            "service_id": "anvil",
            "application_address": "pokt1app",
            "schedule": {"session_start": 1, "session_end": 4, "claim_open": 5, "claim_close": 8,
                         "proof_open": 9, "proof_close": 12, "settlement": 13},
            "state": "Claiming",
            "relays": 1, "compute_units": 10,
            "claim_sent_at": [5], "proof_sent_at": [],
            "proof_required": null, "queried_at": null, "pruned": false
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let plain = serde_json::to_vec(&record).unwrap();
        let out = serde_json::to_vec(&RecordOut {
            record: &record,
            in_flight_txs: &[],
            gas: SessionGas::default(),
        })
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&plain).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        );
        let held = [KeptTxs::stored(
            TxKind::Claim,
            std::slice::from_ref(&record.key),
            &tx(1, Expiry::Height(8)),
        )];
        let with = serde_json::to_vec(&RecordOut {
            record: &record,
            in_flight_txs: &held,
            gas: SessionGas::default(),
        })
        .unwrap();
        let back: RecordIn = serde_json::from_slice(&with).unwrap();
        assert_eq!(back.record, record);
        assert_eq!(back.in_flight_txs, held);
        let old: SessionRecord = serde_json::from_slice(&with).unwrap();
        assert_eq!(old, record, "a reader of the engine's record ignores the txs");
    }
}
