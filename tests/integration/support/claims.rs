//! The money assertions on the simulator's records after a run: every served relay is in an accepted claim,
//! each session is claimed once and proven once (when proofs are required), zero rejections, every claimed
//! session settles with a reward.

use std::collections::BTreeMap;

use relay_miner::sim::chain::{Settlement, SimChain};

/// Relays per (supplier, session).
pub type Served = BTreeMap<(String, String), u64>;

/// The (supplier, session) → (root sum, root count) of every accepted claim on the simulator (the root's
/// big-endian compute-unit sum at bytes 32..40 and relay count at 40..48, spec §4).
pub fn claimed_roots(chain: &SimChain) -> BTreeMap<(String, String), (u64, u64)> {
    // `state()` holds the simulator's lock: copy what is needed and release it.
    // Settled claims left the chain's state (as poktroll removes them); the simulator keeps them apart.
    let state = chain.state();
    state
        .claims
        .iter()
        .chain(state.settled.iter())
        .map(|((session, supplier), entry)| {
            let root = &entry.claim.root_hash;
            let sum = u64::from_be_bytes(root[32..40].try_into().unwrap());
            let count = u64::from_be_bytes(root[40..48].try_into().unwrap());
            ((supplier.clone(), session.clone()), (sum, count))
        })
        .collect()
}

/// The (supplier, session) → claimed relay count of every accepted claim on the simulator.
pub fn claimed_counts(chain: &SimChain) -> Served {
    claimed_roots(chain)
        .into_iter()
        .map(|(k, (_, count))| (k, count))
        .collect()
}

/// Which proofs the run expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proofs {
    /// Proof probability 1: every claimed session is proven exactly once.
    EveryClaim,
    /// Proof probability 0: no proof at all.
    None,
}

/// Asserts the money rules against what the load saw served, and returns the claimed counts:
/// - zero rejections by the simulator; no claim or proof submitted twice for one session;
/// - every served (supplier, session) claimed with at least the served count, and the relays claimed beyond
///   those served (in served sessions or others) at most `unanswered`: requests without an answer (a relay can
///   be committed while its node dies before answering); `unanswered = 0` means claimed == served exactly;
/// - proofs as `proofs` says; every claimed session settled with a reward.
pub fn assert_claims(chain: &SimChain, served: &Served, unanswered: u64, proofs: Proofs) -> Served {
    let records = chain.records();
    let rejected: Vec<_> = records.iter().filter(|r| r.rejected.is_some()).collect();
    assert!(rejected.is_empty(), "simulator rejected: {rejected:?}");
    let mut per_session: BTreeMap<(String, String, &str), u64> = BTreeMap::new();
    for r in &records {
        *per_session
            .entry((r.supplier.clone(), r.session_id.clone(), r.kind))
            .or_default() += 1;
    }
    let duplicates: Vec<String> = per_session
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((supplier, session, kind), n)| {
            let heights: Vec<i64> = records
                .iter()
                .filter(|r| &r.supplier == supplier && &r.session_id == session && r.kind == *kind)
                .map(|r| r.height)
                .collect();
            format!("{kind} ×{n} of {supplier} {session} at heights {heights:?}")
        })
        .collect();
    assert!(
        duplicates.is_empty(),
        "submitted more than once:\n{}",
        duplicates.join("\n")
    );
    let claimed = claimed_counts(chain);
    let mut extra = 0;
    for (key, served) in served {
        let claimed = claimed.get(key).copied().unwrap_or(0);
        assert!(
            claimed >= *served,
            "{key:?}: {served} relays served, only {claimed} claimed (claims: {claimed:?})"
        );
        extra += claimed - served;
    }
    extra += claimed
        .iter()
        .filter(|(k, _)| !served.contains_key(*k))
        .map(|(_, c)| c)
        .sum::<u64>();
    assert!(
        extra <= unanswered,
        "{extra} relays claimed beyond those served, but only {unanswered} requests went unanswered \
         (served {served:?}, claimed {claimed:?})"
    );
    for (supplier, session) in claimed.keys() {
        let proofs_sent = per_session
            .get(&(supplier.clone(), session.clone(), "proof"))
            .copied()
            .unwrap_or(0);
        let expected = match proofs {
            Proofs::EveryClaim => 1,
            Proofs::None => 0,
        };
        assert_eq!(proofs_sent, expected, "{supplier} {session}: proof count");
    }
    let settlements = chain.settlements();
    for (session, supplier, outcome) in &settlements {
        assert!(
            matches!(outcome, Settlement::Settled(v) if *v > 0),
            "{supplier} {session}: {outcome:?}"
        );
    }
    assert_eq!(settlements.len(), claimed.len(), "every claimed session settles");
    claimed
}
