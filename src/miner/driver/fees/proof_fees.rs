//! The tx fee the funds check reserves per proof (module `afford`): the median of a supplier's last
//! [`PROOF_TX_FEES_KEPT`] proof txs' fees per proof, kept here and in storage (KV `miner:proof_tx_fee:<supplier>`).
//!
//! Why several: the last fee alone let one outlier (a re-send signed at `transaction.max_gas_price` after a tx was
//! stuck, 4× the gas after running out of it) set what every claim of the supplier reserves for its proof for as
//! long as the stored value lived (6 h without a new proof tx): claims a funded supplier could prove were held back.
//! Why read again: a process reads storage once and then goes by what it signed; after another leader stored newer
//! fees (a failover and back), it kept reserving its own old ones. Storage is read again at every leadership gain
//! and at most every [`PROOF_TX_FEES_REREAD`] (a storage read, no chain I/O).
//!
//! Stored as ASCII decimal fees separated by commas, oldest first: a value an older version stored (one decimal
//! fee) reads as a list of one; an older version reading a list finds no number and estimates the fee until its
//! own next proof tx.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many of a supplier's last fees per proof the estimate is the median of.
pub(in crate::miner::driver) const PROOF_TX_FEES_KEPT: usize = 5;

/// How long fees read from storage are used before storage is read again (module docs).
pub(in crate::miner::driver) const PROOF_TX_FEES_REREAD: Duration = Duration::from_secs(5 * 60);

/// A supplier's last fees per proof.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fees {
    /// As storage held them when last read or written, oldest first.
    stored: Vec<u128>,
    /// Signed by this process since, oldest first (at most [`PROOF_TX_FEES_KEPT`]): not stored yet.
    unstored: Vec<u128>,
    /// When storage was last read or written; `None`: never, or to be read again (a leadership gained).
    synced_at: Option<Instant>,
}

impl Fees {
    /// The last [`PROOF_TX_FEES_KEPT`] fees, oldest first: the stored ones, then those signed since.
    fn recent(&self) -> Vec<u128> {
        let all: Vec<u128> = self.stored.iter().chain(&self.unstored).copied().collect();
        all[all.len().saturating_sub(PROOF_TX_FEES_KEPT)..].to_vec()
    }
}

/// Every supplier's last fees per proof, shared by the submissions (signing notes them behind `&self`).
#[derive(Debug, Default)]
pub(in crate::miner::driver) struct ProofTxFees {
    by_supplier: Mutex<HashMap<String, Fees>>,
}

impl ProofTxFees {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Fees>> {
        // Only plain values are written under the lock: a poisoned one still holds a usable state.
        self.by_supplier.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a proof tx of `supplier` signed at `per_proof` per proof.
    pub(in crate::miner::driver) fn signed(&self, supplier: &str, per_proof: u128) {
        let mut fees = self.lock();
        let unstored = &mut fees.entry(supplier.to_string()).or_default().unstored;
        unstored.push(per_proof);
        let surplus = unstored.len().saturating_sub(PROOF_TX_FEES_KEPT);
        unstored.drain(..surplus);
    }

    /// The median of `supplier`'s last fees per proof; `None` while none is known.
    pub(in crate::miner::driver) fn estimate(&self, supplier: &str) -> Option<u128> {
        median(&self.lock().get(supplier)?.recent())
    }

    /// Whether `supplier`'s stored fees are to be read (again): never read, read [`PROOF_TX_FEES_REREAD`] ago or
    /// more, or a leadership gained since ([`Self::read_again`]).
    pub(in crate::miner::driver) fn due(&self, supplier: &str) -> bool {
        self.lock()
            .get(supplier)
            .and_then(|f| f.synced_at)
            .is_none_or(|at| at.elapsed() >= PROOF_TX_FEES_REREAD)
    }

    /// Notes what storage holds for `supplier` (oldest first; empty: nothing). Fees signed since the last write
    /// stay, after them.
    pub(in crate::miner::driver) fn read(&self, supplier: &str, stored: Vec<u128>) {
        let mut fees = self.lock();
        let entry = fees.entry(supplier.to_string()).or_default();
        entry.stored = stored;
        entry.synced_at = Some(Instant::now());
    }

    /// What to store for `supplier` when fees were signed since the last write: its last fees, and how many of
    /// them are the ones not stored yet.
    pub(in crate::miner::driver) fn to_store(&self, supplier: &str) -> Option<(Vec<u128>, usize)> {
        let fees = self.lock();
        let entry = fees.get(supplier).filter(|f| !f.unstored.is_empty())?;
        Some((entry.recent(), entry.unstored.len()))
    }

    /// Notes that storage holds `written` for `supplier`, the first `unstored` fees signed since included.
    pub(in crate::miner::driver) fn stored(&self, supplier: &str, written: Vec<u128>, unstored: usize) {
        let mut fees = self.lock();
        let entry = fees.entry(supplier.to_string()).or_default();
        entry.stored = written;
        let done = unstored.min(entry.unstored.len());
        entry.unstored.drain(..done);
        entry.synced_at = Some(Instant::now());
    }

    /// Has every supplier's stored fees read again before their next use (a leadership gained: another leader
    /// may have stored newer ones).
    pub(in crate::miner::driver) fn read_again(&self) {
        for fees in self.lock().values_mut() {
            fees.synced_at = None;
        }
    }
}

/// The median of `fees` (of the two middle ones, the lower: a single outlier never sets it); `None` when empty.
pub(in crate::miner::driver) fn median(fees: &[u128]) -> Option<u128> {
    let mut sorted = fees.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

/// `fees` as stored (module docs).
pub(in crate::miner::driver) fn encode(fees: &[u128]) -> Vec<u8> {
    fees.iter()
        .map(u128::to_string)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// The fees stored as `bytes` (module docs); none when they do not read as such.
pub(in crate::miner::driver) fn decode(bytes: &[u8]) -> Vec<u128> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.split(',').map(|fee| fee.trim().parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The estimate is the median of the last fees, so one outlier (a re-send at the cap) does not set it, and what
    /// storage holds comes before what was signed since.
    #[test]
    fn the_estimate_is_the_median_of_the_last_fees() {
        let fees = ProofTxFees::default();
        assert_eq!(fees.estimate("pokt1s"), None, "none signed yet");
        assert!(fees.due("pokt1s"), "never read");
        fees.signed("pokt1s", 300);
        assert_eq!(fees.estimate("pokt1s"), Some(300));
        fees.signed("pokt1s", 1_200);
        assert_eq!(fees.estimate("pokt1s"), Some(300), "of two, the lower");
        fees.signed("pokt1s", 250);
        assert_eq!(fees.estimate("pokt1s"), Some(300), "one outlier among three");
        fees.read("pokt1s", vec![100, 110, 120]);
        assert!(!fees.due("pokt1s"));
        let last = vec![110, 120, 300, 1_200, 250];
        assert_eq!(fees.to_store("pokt1s"), Some((last.clone(), 3)));
        assert_eq!(fees.estimate("pokt1s"), Some(250));
        fees.stored("pokt1s", last, 3);
        assert_eq!(fees.to_store("pokt1s"), None);
        assert_eq!(fees.estimate("pokt1s"), Some(250));
        for _ in 0..7 {
            fees.signed("pokt1s", 90);
        }
        assert_eq!(fees.to_store("pokt1s"), Some((vec![90; 5], 5)), "the last five");
        fees.read_again();
        assert!(fees.due("pokt1s"), "a leadership gained: read again");
        assert_eq!(fees.estimate("pokt1other"), None);
    }

    #[test]
    fn the_median_is_the_lower_middle() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7]), Some(7));
        assert_eq!(median(&[400, 100]), Some(100));
        assert_eq!(median(&[100, 400, 100, 100, 120]), Some(100));
        assert_eq!(median(&[5, 1, 4, 2]), Some(2));
    }

    /// Fees read from storage are read again once [`PROOF_TX_FEES_REREAD`] passed.
    #[test]
    fn stored_fees_are_read_again_after_a_while() {
        let fees = ProofTxFees::default();
        fees.read("pokt1s", vec![100]);
        assert!(!fees.due("pokt1s"));
        let long_ago = Instant::now().checked_sub(PROOF_TX_FEES_REREAD).unwrap();
        fees.lock().get_mut("pokt1s").unwrap().synced_at = Some(long_ago);
        assert!(fees.due("pokt1s"));
    }

    /// A value an older version stored (one fee) reads as a list of one; what does not read is none.
    #[test]
    fn stored_fees_read_back_and_an_older_single_fee_too() {
        assert_eq!(encode(&[100, 2_500]), b"100,2500".to_vec());
        assert_eq!(decode(b"100,2500"), vec![100, 2_500]);
        assert_eq!(decode(b"300"), vec![300]);
        assert_eq!(
            encode(&[300]),
            b"300".to_vec(),
            "one fee is stored as an older version stored it"
        );
        assert_eq!(decode(b"3x0"), Vec::<u128>::new());
        assert_eq!(decode(&[0xff]), Vec::<u128>::new());
    }
}
