//! The watchdog's decisions, as pure functions of what it observed and what the voters reported: whether this
//! node's miner counts as hung (what counts as its progress, and how long it may go without), why a leader hands
//! off, and to which voter.
//!
//! Kept apart from the loop (`super`) so each rule is tested on reports in, target out.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use raft::AppHealth;

use super::stall_after;
use crate::miner::driver::MinerStats;

/// Why a raft leader hands its leadership off (the `reason` label of `ha_miner_leadership_hand_offs_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Its chain endpoint reads no progress.
    ChainStalled,
    /// Its miner's loop stopped completing iterations (an await that never returns, a deadlock) while its chain
    /// reads go on.
    MinerHung,
    /// Live sessions of suppliers whose key it lacks: it cannot sign their claims and proofs.
    Keyless,
}

impl Reason {
    /// The metric label and log field.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ChainStalled => "chain_stalled",
            Self::MinerHung => "miner_hung",
            Self::Keyless => "keyless",
        }
    }
}

/// An iteration of the miner's loop that has not completed after this long means a hung miner, however fast the
/// chain: one iteration sends every tx a block made due, each a Simulate and a broadcast bounded by the chain
/// query timeout, retried message by message when a node refuses a batch. At the default 5 s timeout this is 5
/// minutes: 60 calls timing out in a row.
pub const MIN_HUNG: Duration = Duration::from_secs(300);
/// Chain query timeouts that must pass without progress before the miner counts as hung (see [`MIN_HUNG`]).
pub const HUNG_QUERIES: u32 = 60;

/// The miner counts as hung when its loop made no progress for longer than this: 3 block times as measured
/// ([`stall_after`]; none before a measure, where the floor is more than 3 default block times), and never less
/// than `floor` ([`MIN_HUNG`]; shorter in tests) nor [`HUNG_QUERIES`] chain query timeouts.
///
/// The bound does not grow with the suppliers and sessions the miner serves: progress is counted per phase and
/// command, and per supplier or session inside the phases that go through many (`MinerStats::steps_done`, each
/// piece a few chain or storage calls bounded by their timeouts), so a working miner moves on within seconds
/// however much it serves, while a hung one is handed off within its sessions' windows (a few blocks long).
pub(crate) fn hung_after(block_time: Option<Duration>, query_timeout: Duration, floor: Duration) -> Duration {
    block_time
        .map_or(Duration::ZERO, |b| stall_after(Some(b)))
        .max(floor)
        .max(query_timeout.saturating_mul(HUNG_QUERIES))
}

/// When the miner last made progress, as this watchdog saw it (its own clock: a wall clock step neither fakes nor
/// hides a hang): its loop's heartbeat changed (beaten at the start of every iteration, leading or not), or the
/// work it counts did ([`done`]; a slow iteration over many suppliers moves it on while its heartbeat waits).
/// Neither changing means an iteration that does nothing and has not completed.
#[derive(Debug)]
pub(crate) struct Pulse {
    last: Option<(f64, u64)>,
    changed_at: Instant,
}

impl Pulse {
    /// Before the first look (`now`: the watchdog's start, which counts as progress).
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            last: None,
            changed_at: now,
        }
    }

    /// The heartbeat's value and the count of work done ([`done`]) read at `now`.
    pub(crate) fn observe(&mut self, beat: f64, done: u64, now: Instant) {
        if self.last != Some((beat, done)) {
            self.last = Some((beat, done));
            self.changed_at = now;
        }
    }

    /// How long since the miner last made progress.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.changed_at)
    }
}

/// A count that changes whenever the miner did a piece of work: the sum of its [`MinerStats`] counters (relays
/// ingested or skipped, claims and proofs sent, claims confirmed, proof requirements decided, sessions settled,
/// lost, discarded or pruned, fenced writes, and `steps_done`: phases, commands, and each supplier or session
/// inside the long phases). Only the miner writes them, so a change is the miner moving on.
pub(crate) fn done(stats: &MinerStats) -> u64 {
    [
        &stats.relays_ingested,
        &stats.relays_unreadable,
        &stats.relays_too_large,
        &stats.relays_after_prune,
        &stats.relays_reweighted,
        &stats.relays_late,
        &stats.claims_sent,
        &stats.proofs_sent,
        &stats.claims_confirmed,
        &stats.proofs_required,
        &stats.proofs_not_required_after_all,
        &stats.settlements_unknown,
        &stats.sessions_lost,
        &stats.sessions_discarded,
        &stats.sessions_done,
        &stats.fenced_writes,
        &stats.steps_done,
    ]
    .into_iter()
    .fold(0_u64, |sum, c| sum.wrapping_add(c.load(Ordering::Relaxed)))
}

/// The voter to hand off to when this leader's chain reads stalled: not stalled and ahead of `height`; the
/// highest, ties to the lowest id.
pub(crate) fn pick_ahead(height: i64, peers: &[(u64, Option<AppHealth>)]) -> Option<u64> {
    peers
        .iter()
        .filter_map(|(id, h)| h.as_ref().map(|h| (*id, h)))
        .filter(|(_, h)| !h.stalled && h.chain_height > height)
        .max_by(|(a, ha), (b, hb)| ha.chain_height.cmp(&hb.chain_height).then(b.cmp(a)))
        .map(|(id, _)| id)
}

/// Whether a voter can take over from a leader at `height` whose own chain reads are fine: its chain reads
/// progress and its miner runs (not stalled), and it is at most one block behind.
fn progressing(height: i64, h: &AppHealth) -> bool {
    !h.stalled && h.chain_height >= height.saturating_sub(1)
}

/// The voter to hand off to when this leader's miner is hung (its chain reads are fine, so nobody is ahead):
/// one [`progressing`]; the highest, ties to the lowest id.
pub(crate) fn pick_progressing(height: i64, peers: &[(u64, Option<AppHealth>)]) -> Option<u64> {
    peers
        .iter()
        .filter_map(|(id, h)| h.as_ref().map(|h| (*id, h)))
        .filter(|(_, h)| progressing(height, h))
        .max_by(|(a, ha), (b, hb)| ha.chain_height.cmp(&hb.chain_height).then(b.cmp(a)))
        .map(|(id, _)| id)
}

/// The voter to hand off to when this leader lacks the keys of `lacking` (suppliers with live sessions) and
/// holds those of `own`: a [`progressing`] voter that reported its keys (an unknown keyring never counts), holds
/// **every** key of `own` and at least one of `lacking`, so **more** of the keys in play (`own` ∪ `lacking`) than
/// this leader does. Among those: the most keys in play, then the most of `lacking`, then the highest, then the
/// lowest id.
///
/// Why every key of `own`: the leader's own sessions may be claimed already, their proofs still owed. A target
/// lacking one of those keys could not sign those proofs: a required proof missed is a slash, where the keyless
/// sessions the hand-off was for were only revenue not earned. So a hand-off never trades a key the leader holds
/// for one it lacks.
///
/// Why "more of the keys in play" and not "every key the leader lacks": a voter holding the lacking key but not
/// one the leader holds would lead keyless in turn, and hand the leadership back a minute later (the leader
/// holds what it lacks), and so on. With this rule each hand-off moves the leadership to a strictly larger
/// keyring, so it never comes back to a node it left while the keyrings stay as they are; and a leader lacking
/// a key that another node holds along with all of its own (the usual case: one node's keys file is behind)
/// hands off at once. The cost: the keys of suppliers with no live session count too, so a leader holding many
/// idle keys keeps the leadership from a voter holding only the live supplier's key (the keys files disagree
/// widely then; the ERROR logs and `ha_miner_keyless_sessions` say which key to add where).
pub(crate) fn pick_keyed(
    height: i64,
    own: &BTreeSet<String>,
    lacking: &BTreeSet<String>,
    peers: &[(u64, Option<AppHealth>)],
) -> Option<u64> {
    if lacking.is_empty() {
        return None;
    }
    let in_play = |address: &String| own.contains(address) || lacking.contains(address);
    peers
        .iter()
        .filter_map(|(id, h)| h.as_ref().map(|h| (*id, h)))
        .filter(|(_, h)| progressing(height, h))
        .filter_map(|(id, h)| {
            let keys: BTreeSet<&String> = h.suppliers.as_ref()?.iter().collect();
            if !own.iter().all(|a| keys.contains(a)) {
                return None;
            }
            let held = keys.iter().filter(|a| in_play(a)).count();
            let fixed = keys.iter().filter(|a| lacking.contains(**a)).count();
            (held > own.len()).then_some((id, held, fixed, h.chain_height))
        })
        .max_by(|a, b| (a.1, a.2, a.3).cmp(&(b.1, b.2, b.3)).then(b.0.cmp(&a.0)))
        .map(|(id, ..)| id)
}

/// Why this node, leading, should hand off now, if it should: its miner hung, else its chain reads stalled,
/// else it lacks keys of suppliers with live sessions.
pub(crate) fn reason(miner_hung: bool, chain_stalled: bool, lacking: &BTreeSet<String>) -> Option<Reason> {
    if miner_hung {
        Some(Reason::MinerHung)
    } else if chain_stalled {
        Some(Reason::ChainStalled)
    } else if !lacking.is_empty() {
        Some(Reason::Keyless)
    } else {
        None
    }
}

/// The voter to hand off to for `reason`.
pub(crate) fn pick(
    reason: Reason,
    height: i64,
    own: &BTreeSet<String>,
    lacking: &BTreeSet<String>,
    peers: &[(u64, Option<AppHealth>)],
) -> Option<u64> {
    match reason {
        Reason::ChainStalled => pick_ahead(height, peers),
        Reason::MinerHung => pick_progressing(height, peers),
        Reason::Keyless => pick_keyed(height, own, lacking, peers),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn health(height: i64, stalled: bool) -> Option<AppHealth> {
        keyed(height, stalled, None)
    }

    fn keyed(height: i64, stalled: bool, suppliers: Option<&[&str]>) -> Option<AppHealth> {
        Some(AppHealth {
            chain_height: height,
            progressed_ms_ago: Some(10),
            block_time_ms: Some(1000),
            stalled,
            suppliers: suppliers.map(|s| s.iter().map(|a| (*a).to_string()).collect()),
        })
    }

    fn set(addresses: &[&str]) -> BTreeSet<String> {
        addresses.iter().map(|a| (*a).to_string()).collect()
    }

    #[test]
    fn the_target_progresses_and_is_ahead() {
        // A chain halted for everyone: nobody is ahead, nothing moves.
        assert_eq!(pick_ahead(50, &[(2, health(50, true)), (3, health(50, false))]), None);
        // Stalled or unknown peers are never picked, however high.
        assert_eq!(pick_ahead(50, &[(2, health(90, true)), (3, None)]), None);
        assert_eq!(
            pick_ahead(50, &[(2, health(53, false)), (3, health(55, false))]),
            Some(3)
        );
        assert_eq!(
            pick_ahead(50, &[(3, health(55, false)), (2, health(55, false))]),
            Some(2)
        );
        assert_eq!(pick_ahead(0, &[(2, health(1, false))]), Some(2));
    }

    #[test]
    fn a_hung_miner_hands_to_a_running_voter_at_most_one_block_behind() {
        // Its chain reads are fine: the others are at its height (not ahead), and that is enough.
        assert_eq!(pick_progressing(50, &[(2, health(50, false))]), Some(2));
        assert_eq!(pick_progressing(50, &[(2, health(49, false))]), Some(2));
        assert_eq!(
            pick_progressing(50, &[(2, health(48, false))]),
            None,
            "two blocks behind"
        );
        // A voter whose miner is hung too, or whose chain reads stalled, publishes `stalled`.
        assert_eq!(pick_progressing(50, &[(2, health(51, true)), (3, None)]), None);
        assert_eq!(
            pick_progressing(
                50,
                &[(3, health(50, false)), (2, health(50, false)), (4, health(49, false))]
            ),
            Some(2)
        );
        assert_eq!(
            pick(Reason::MinerHung, 50, &set(&[]), &set(&[]), &[(2, health(50, false))]),
            Some(2),
            "not `pick_ahead`, which finds nobody ahead of a leader whose chain reads are fine"
        );
        assert_eq!(
            pick(
                Reason::ChainStalled,
                50,
                &set(&[]),
                &set(&[]),
                &[(2, health(50, false))]
            ),
            None
        );
    }

    #[test]
    fn the_miner_is_hung_after_a_bound_no_working_iteration_reaches() {
        let query = Duration::from_secs(5);
        assert_eq!(hung_after(Some(Duration::from_secs(1)), query, MIN_HUNG), MIN_HUNG);
        assert_eq!(
            hung_after(None, query, MIN_HUNG),
            MIN_HUNG,
            "3 × the default 60 s block time is less"
        );
        assert_eq!(
            hung_after(None, Duration::from_millis(1), Duration::from_secs(2)),
            Duration::from_secs(2),
            "no block time measured: the floor"
        );
        assert_eq!(
            hung_after(Some(Duration::from_secs(1)), Duration::from_secs(1), MIN_HUNG),
            MIN_HUNG,
            "never less, however short the query timeout"
        );
        assert_eq!(
            hung_after(Some(Duration::from_secs(150)), query, MIN_HUNG),
            Duration::from_secs(450),
            "3 block times"
        );
        assert_eq!(
            hung_after(Some(Duration::from_secs(1)), Duration::from_secs(10), MIN_HUNG),
            Duration::from_secs(600),
            "60 query timeouts"
        );
        assert_eq!(
            hung_after(Some(Duration::from_secs(1)), Duration::MAX, MIN_HUNG),
            Duration::MAX
        );
    }

    #[test]
    fn any_counted_work_changes_the_count() {
        let stats = MinerStats::default();
        let before = done(&stats);
        stats.claims_sent.fetch_add(1, Ordering::Relaxed);
        let after = done(&stats);
        assert_ne!(before, after);
        stats.relays_ingested.fetch_add(5, Ordering::Relaxed);
        assert_eq!(done(&stats), after + 5);
        stats.steps_done.fetch_add(1, Ordering::Relaxed);
        assert_eq!(done(&stats), after + 6, "a phase's piece of work");
    }

    #[test]
    fn the_pulse_ages_from_its_last_change() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = Pulse::new(t0);
        assert_eq!(p.age(at(4)), Duration::from_secs(4), "never beat: since the start");
        p.observe(1000.0, 7, at(5));
        p.observe(1000.0, 7, at(9));
        assert_eq!(
            p.age(at(10)),
            Duration::from_secs(5),
            "the same beat read again is no beat"
        );
        // A beat whose wall time went back (the clock stepped) is a beat all the same.
        p.observe(400.0, 7, at(11));
        assert_eq!(p.age(at(12)), Duration::from_secs(1));
        // Work done inside an iteration that has not completed (no new beat) is progress.
        p.observe(400.0, 9, at(20));
        assert_eq!(p.age(at(21)), Duration::from_secs(1), "work done, same beat");
        p.observe(400.0, 9, at(30));
        assert_eq!(p.age(at(31)), Duration::from_secs(11));
    }

    #[test]
    fn a_hung_miner_comes_first_then_a_stalled_chain_then_missing_keys() {
        let lacking = set(&["pokt1b"]);
        assert_eq!(reason(true, true, &lacking), Some(Reason::MinerHung));
        assert_eq!(reason(false, true, &lacking), Some(Reason::ChainStalled));
        assert_eq!(reason(false, false, &lacking), Some(Reason::Keyless));
        assert_eq!(reason(false, false, &set(&[])), None);
        assert_eq!(Reason::Keyless.label(), "keyless");
        assert_eq!(Reason::MinerHung.label(), "miner_hung");
    }

    #[test]
    fn a_keyless_leader_hands_to_a_progressing_voter_holding_more_of_the_keys() {
        let own = set(&["pokt1a"]);
        let lacking = set(&["pokt1b"]);
        let all: &[&str] = &["pokt1a", "pokt1b"];
        // The usual case: the others' keys file has the key this one lacks.
        assert_eq!(
            pick_keyed(50, &own, &lacking, &[(2, keyed(50, false, Some(all)))]),
            Some(2)
        );
        assert_eq!(
            pick_keyed(50, &own, &lacking, &[(2, keyed(49, false, Some(all)))]),
            Some(2)
        );
        // Not a voter that is stalled, behind by two blocks, or whose keyring is unknown (an older build).
        assert_eq!(
            pick_keyed(
                50,
                &own,
                &lacking,
                &[
                    (2, keyed(50, true, Some(all))),
                    (3, keyed(48, false, Some(all))),
                    (4, keyed(50, false, None)),
                    (5, None),
                ]
            ),
            None
        );
        // Nobody holds more: the same keys, or the lacking key traded for one the leader holds (it would lead
        // keyless in turn and hand back).
        assert_eq!(
            pick_keyed(
                50,
                &own,
                &lacking,
                &[
                    (2, keyed(50, false, Some(&["pokt1a"]))),
                    (3, keyed(50, false, Some(&["pokt1b"])))
                ]
            ),
            None
        );
        // Keys of suppliers not in play count for nothing.
        assert_eq!(
            pick_keyed(
                50,
                &own,
                &lacking,
                &[(2, keyed(50, false, Some(&["pokt1a", "pokt1z"])))]
            ),
            None
        );
        // Nothing lacking: no target, whoever holds more.
        assert_eq!(
            pick_keyed(50, &own, &set(&[]), &[(2, keyed(50, false, Some(all)))]),
            None
        );
    }

    #[test]
    fn a_keyless_leader_picks_the_most_keys_then_the_most_lacking_then_the_highest_then_the_lowest_id() {
        let own = set(&["pokt1a", "pokt1b"]);
        let lacking = set(&["pokt1c", "pokt1d"]);
        let peers = [
            (2, keyed(60, false, Some(&["pokt1a", "pokt1b", "pokt1c"]))),
            (3, keyed(50, false, Some(&["pokt1a", "pokt1b", "pokt1c", "pokt1d"]))),
        ];
        assert_eq!(pick_keyed(50, &own, &lacking, &peers), Some(3), "most keys in play");
        // A voter lacking a key the leader holds is never picked, however many of the lacking it holds: the
        // leader's claimed sessions would miss their proofs there (a slash).
        let peers = [
            (2, keyed(50, false, Some(&["pokt1a", "pokt1b", "pokt1c"]))),
            (3, keyed(50, false, Some(&["pokt1a", "pokt1c", "pokt1d"]))),
        ];
        assert_eq!(
            pick_keyed(50, &own, &lacking, &peers),
            Some(2),
            "every key of the leader's, then the lacking"
        );
        let peers = [(3, keyed(50, false, Some(&["pokt1a", "pokt1c", "pokt1d"])))];
        assert_eq!(
            pick_keyed(50, &own, &lacking, &peers),
            None,
            "none holds the leader's keys"
        );
        let peers = [
            (2, keyed(50, false, Some(&["pokt1a", "pokt1b", "pokt1c"]))),
            (3, keyed(51, false, Some(&["pokt1a", "pokt1b", "pokt1d"]))),
        ];
        assert_eq!(pick_keyed(50, &own, &lacking, &peers), Some(3), "the highest");
        let peers = [
            (3, keyed(50, false, Some(&["pokt1a", "pokt1b", "pokt1d"]))),
            (2, keyed(50, false, Some(&["pokt1a", "pokt1b", "pokt1c"]))),
        ];
        assert_eq!(pick_keyed(50, &own, &lacking, &peers), Some(2), "the lowest id");
        // A leader holding none of the keys in play: any voter holding one does better.
        let own = set(&[]);
        let peers = [
            (2, keyed(50, false, Some(&["pokt1c"]))),
            (3, keyed(50, false, Some(&["pokt1d"]))),
        ];
        assert_eq!(pick_keyed(50, &own, &lacking, &peers), Some(2), "one more than none");
    }

    /// Each hand-off goes to a strictly larger keyring: no sequence of keyless hand-offs comes back to a node.
    #[test]
    fn keyless_hand_offs_never_cycle() {
        let keyrings: [(u64, &[&str]); 3] = [(1, &["a", "b"]), (2, &["b", "c"]), (3, &["a", "c"])];
        let live = set(&["a", "b", "c"]);
        let peers_of = |me: u64| -> Vec<(u64, Option<AppHealth>)> {
            keyrings
                .iter()
                .filter(|(id, _)| *id != me)
                .map(|(id, keys)| (*id, keyed(50, false, Some(keys))))
                .collect()
        };
        for (me, keys) in keyrings {
            let own = set(keys);
            let lacking: BTreeSet<String> = live.difference(&own).cloned().collect();
            assert_eq!(
                pick_keyed(50, &own, &lacking, &peers_of(me)),
                None,
                "node {me}: each lacks one"
            );
        }
    }
}
