//! A live Go relay miner on the same Redis: relay-miner does not campaign while there is one.
//!
//! Why: every Go miner replica consumes the relay streams of the suppliers it leases
//! (`{base}:miner:claim:{supplier}`) in the consumer group `ha-miners` and claims their sessions, whatever our
//! lease says; a relay-miner leader beside it would read the same group (relays split between two tries, both
//! claims short), and claim and prove the same sessions again (a second fee each). So a campaign first checks,
//! in its own script (module `leader`, atomically with the campaign, no extra round trip), what a live Go miner
//! keeps up (`spec/go-redis-layout.md`):
//! - `{base}:miner:global_leader` with a TTL and without our token key `{base}:miner:global_leader:token` next
//!   to it: the Go global leader lock (`SET EX 30 s`, renewed every 10 s, deleted on a graceful stop). A
//!   relay-miner process campaigning in election `global` writes the token key with the lease, so it never
//!   reads as a Go miner; a key without TTL cannot be a live Go lease and is not taken for one.
//! - a member `{id}` of `{base}:miner:active` whose heartbeat `{base}:miner:instance:{id}` lives (the Go
//!   supplier claimer sets it with the claim TTL, 90 s, every 10 s, and deletes it on a graceful stop): every Go
//!   replica, leader or standby. Stale members (a crashed Go miner) have no live heartbeat and are ignored.
//!
//! Not used to refuse a campaign: `XINFO CONSUMERS` of the group. A consumer stays in the group after its
//! process ended, and its idle time does not tell a live Go miner from one stopped a minute ago (a read blocked
//! with `BLOCK 0` ages like a dead consumer). It does tell which relays another consumer took: see "Relays read
//! by a foreign consumer" below.
//!
//! While a campaign is refused for this reason it is counted in `ha_miner_leader_acquisition_failures_total
//! {reason="go_miner_active"}` (one per campaign, i.e. per miner tick), logged at ERROR naming the keys found
//! (the first refusal at once, then every 10 s), and the miner's readiness fails with [`NotReady::GoMinerActive`]
//! (not the relayer's: module `health`, "Who is not ready"). The first
//! campaign that finds no live Go miner clears it (INFO log).
//!
//! # A Go miner started while relay-miner leads
//! The campaign check cannot see a Go miner started after our miner won its lease (an operator starting the old
//! fleet again, a rollback, a Deployment scaled up). So every lease renewal runs the same check, in the same
//! script as the renewal (no extra round trip; every `lease / 4`, 7.5 s at the default 30 s lease, and before
//! every claim or proof submission): a live Go miner there renews the lease as before and is reported apart
//! (script answer 2): counted in `ha_storage_redis_go_miner_beside_leader_renewals_total`, the gauge
//! `ha_storage_redis_go_miner_beside_leader` set to 1, logged at ERROR naming the keys found (at once, then every
//! 10 s), and the miner's readiness fails with [`NotReady::GoMinerBesideLeader`] (`redis_go_miner_beside_leader`;
//! `/ready` 503 in a miner-only process, listed in a `run` process's `/ready` 200 and at `/ready?component=miner`). The first
//! renewal that finds none (or that is refused: this miner no longer leads) clears it.
//!
//! What the Go miner does meanwhile (pocket-relay-miner, `transport/redis/consumer.go`, read for behaviour): each
//! replica reads the streams of the suppliers it leases with `XREADGROUP GROUP ha-miners miner-{host}-{pid}
//! BLOCK 0 ... >`, so every new relay goes to whichever consumer asks first, and its blocked read is answered
//! the moment a relay is appended, before our miner's next tick: it takes most new relays. Entries already
//! delivered to our consumer stay ours (its `XAUTOCLAIM` of entries idle 30-60 s runs only when a read comes
//! back empty, which `BLOCK 0` never does). It acknowledges with `XACKDEL` (Redis 8.2+; on older servers the
//! command fails and its entries stay pending for it). It claims and proves the sessions of those relays from
//! its own SMSTs, which we do not read, as it does not read ours.
//!
//! Why our miner keeps leading rather than stepping down: stepping down does not undo the split, it only
//! abandons what we hold. The sessions in our tries (relays ingested and acknowledged, gone from the stream) and
//! our claims sent and awaiting their proofs exist nowhere else: the Go miner cannot claim or prove them, so
//! every one of them would be lost, and a claim whose required proof is missing is also penalised by the chain
//! (`proof_missing_penalty`). Keeping the lease, our sessions in progress are still claimed and proved, with
//! the relays we got; the cost is the Go miner's share of the relays and its second claim of the sessions it
//! got relays of (a second fee; a claim sent again within the window replaces the earlier one, so only the proof
//! of the last claimant's tree counts for such a session) until an operator stops one of the two. Sessions the
//! Go miner got no relay of (those whose relays all came before it started) stay ours alone. Which one to stop
//! is the operator's decision: they know which fleet they meant to run, and a Go miner just started holds
//! little, so stopping it loses least. Hence the alarm, loud and specific, and nothing automatic.
//! The sessions the Go miner claims are its own to prove: stop it only once they settled, or accept losing them.
//!
//! # Relays read by a foreign consumer
//! Every relay-miner process reads the relay streams as one consumer (`miner`), so any other consumer of the
//! group (`XINFO CONSUMERS`: a Go miner's `miner-{host}-{pid}`, or an older relay-miner under another name)
//! took relays our tries will not get. Each read round of a supplier (`read_pending`) lists the group's
//! consumers right after its `MULTI` (best effort: a server or ACL refusing XINFO only leaves them uncounted)
//! and counts the entries pending for consumers not named like the reader as relays at risk: the gauges `ha_storage_redis_relay_log_foreign_pending` (summed over the
//! streams read) and `ha_storage_redis_relay_log_foreign_consumers` (those holding any), and an ERROR log naming
//! them (at most every 10 s). At risk, not lost: a foreign consumer that died leaves them pending, and `claim_idle_timeout_ms` takes
//! them over; a live Go miner mines them itself. What this cannot count: entries a foreign consumer read and
//! acknowledged with `XACKDEL` are gone from the group's lists (only its in-flight entries show), so on Redis
//! 8.2+ the gauge understates what a live Go miner took. Those are counted apart, from the group's
//! `entries-read` (Redis 7+) at each read round: `ha_storage_redis_relay_log_taken_by_foreign_total`, every entry
//! delivered to another consumer since the last round, acknowledged or not (module `log::taken`, with its
//! limits); the renewal check above is what sees the Go miner itself.

use redis::Value;

use super::{NotReady, RedisBackend, lock};

/// What the campaign script answers when it finds a live Go miner.
pub(crate) const GO_MINER_LIVE: i64 = -2;

/// What the renewal script answers when it renewed the lease and found a live Go miner.
pub(crate) const RENEWED_BESIDE_GO_MINER: i64 = 2;

/// A Lua function whether a Go miner is live: `leader` = Go's global leader key, `token` = its token key (ours),
/// `active` = Go's active set, `prefix` = Go's instance key prefix. Reads the heartbeat keys by name built from
/// the set's members, as the session-record script does for its state sets (standalone Redis only, like every
/// multi-key script here).
pub(crate) const GO_MINER_LIVE_FN: &str = r"
local function go_miner_live(leader, token, active, prefix)
  if redis.call('PTTL', leader) > 0 and redis.call('EXISTS', token) == 0 then return true end
  for _, id in ipairs(redis.call('SMEMBERS', active)) do
    if redis.call('PTTL', prefix .. id) > 0 then return true end
  end
  return false
end
";

/// The check the campaign script runs first: `KEYS[5..7]` and `ARGV[5]` are [`GO_MINER_LIVE_FN`]'s arguments.
pub(crate) const GO_MINER_CHECK: &str = r"
if go_miner_live(KEYS[5], KEYS[6], KEYS[7], ARGV[5]) then return -2 end
";

/// A Go instance heartbeat found alive: (key, ms to live).
type Heartbeat = (String, i64);

impl RedisBackend {
    /// Describes the live Go miner a campaign found: which keys, held by whom, for how long. Read after the
    /// campaign script refused (a few commands; only while a Go miner is live).
    async fn describe_go_miner(&self) -> Result<String, redis::RedisError> {
        let keys = self.keys();
        let leader_key = keys.lease(super::keys::GLOBAL_ELECTION);
        let (holder, ttl_ms, ours, members): (Option<String>, i64, bool, Vec<String>) = redis::pipe()
            .cmd("GET")
            .arg(&leader_key)
            .cmd("PTTL")
            .arg(&leader_key)
            .cmd("EXISTS")
            .arg(keys.lease_token(super::keys::GLOBAL_ELECTION))
            .cmd("SMEMBERS")
            .arg(keys.go_active_set())
            .query_async(&mut self.conn())
            .await?;
        let mut found = Vec::new();
        if let Some(holder) = holder.filter(|_| ttl_ms > 0 && !ours) {
            found.push(format!("{leader_key} held by {holder:?} (TTL {ttl_ms} ms when read)"));
        }
        if !members.is_empty() {
            let mut p = redis::pipe();
            for m in &members {
                p.cmd("PTTL").arg(format!("{}{m}", keys.go_instance_prefix()));
            }
            let ttls: Vec<Value> = p.query_async(&mut self.conn()).await?;
            let live: Vec<Heartbeat> = members
                .iter()
                .zip(ttls)
                .filter_map(|(m, ttl)| match ttl {
                    Value::Int(ms) if ms > 0 => Some((format!("{}{m}", keys.go_instance_prefix()), ms)),
                    _ => None,
                })
                .collect();
            for (key, ms) in live {
                found.push(format!("Go instance heartbeat {key} (TTL {ms} ms when read)"));
            }
        }
        if found.is_empty() {
            // Gone between the campaign and this read.
            found.push(format!(
                "{leader_key} or a {}{{id}} heartbeat",
                keys.go_instance_prefix()
            ));
        }
        Ok(found.join(", "))
    }

    /// A campaign refused because a Go miner is live: counted, logged at ERROR (throttled), and readiness fails
    /// until a campaign finds none. Returns the campaign's answer: not elected. The description of what was
    /// found is read again with each log (every 10 s).
    pub(crate) async fn go_miner_refusal(&self, election: &str, candidate: &str) -> Option<u64> {
        let log = self.inner.stats.record_go_miner_refusal(super::stats::unix_ms());
        // Described again when logged (every 10 s), not at every campaign (every miner tick).
        if !log && let Some(found) = self.go_miner_active() {
            tracing::debug!(election, candidate, found, "campaign refused: a Go relay miner is live");
            return None;
        }
        let found = self.describe_go_miner_for_log().await;
        if log {
            tracing::error!(
                election,
                candidate,
                found,
                group = self.keys().group(),
                "a Go relay miner is live on this Redis: this miner does not campaign while it is (both would \
                 consume the relay streams' group and claim the same sessions: relays split, fees paid twice). \
                 Stop the Go miners once the sessions they claimed are settled (they alone can prove them); \
                 this miner campaigns by itself once their keys expire"
            );
        }
        *lock(&self.inner.go_miner) = Some(found);
        None
    }

    /// `describe_go_miner` for a log line: what could not be read is said instead.
    async fn describe_go_miner_for_log(&self) -> String {
        match self.describe_go_miner().await {
            Ok(found) => found,
            Err(e) => {
                let e = self.err("reading the Go miner's keys", e);
                format!("its keys could not be read for details: {e}")
            }
        }
    }

    /// A campaign found no live Go miner: clears [`RedisBackend::go_miner_active`] (logged when it was set).
    pub(crate) fn no_go_miner(&self, election: &str, candidate: &str) {
        if let Some(was) = lock(&self.inner.go_miner).take() {
            self.inner.stats.record_go_miner_gone();
            tracing::info!(
                election,
                candidate,
                was,
                "no live Go relay miner on this Redis any more; campaigning"
            );
        }
    }

    /// The live Go miner the last campaign found (the keys it found), while campaigns are refused for it.
    pub fn go_miner_active(&self) -> Option<String> {
        lock(&self.inner.go_miner).clone()
    }

    /// [`RedisBackend::miner_readiness`]'s part: [`NotReady::GoMinerBesideLeader`] while this process leads beside a live Go miner, else
    /// [`NotReady::GoMinerActive`] while campaigns are refused for one.
    pub(crate) fn go_miner_readiness(&self) -> Result<(), NotReady> {
        if let Some(found) = self.go_miner_beside_leader() {
            return Err(NotReady::GoMinerBesideLeader(found));
        }
        match self.go_miner_active() {
            Some(found) => Err(NotReady::GoMinerActive(found)),
            None => Ok(()),
        }
    }

    /// A renewal of `candidate`'s lease found a live Go miner (module docs, "A Go miner started while relay-miner
    /// leads"): the lease was renewed; counted, the gauge set, logged at ERROR (at once, then every 10 s), and
    /// the miner's readiness fails until a renewal finds none.
    pub(crate) async fn go_miner_beside_leader_found(&self, election: &str, candidate: &str) {
        let log = self.inner.stats.record_go_miner_beside_leader(super::stats::unix_ms());
        if !log && self.go_miner_beside_leader().is_some() {
            tracing::debug!(election, candidate, "lease renewed beside a live Go relay miner");
            return;
        }
        let found = self.describe_go_miner_for_log().await;
        if log {
            tracing::error!(
                election,
                candidate,
                found,
                group = self.keys().group(),
                "a Go relay miner is live on this Redis while this miner leads: it reads the relay streams' \
                 group too (new relays split between its tries and ours: both claims short) and claims the \
                 sessions it got relays of a second time (two fees; only the last claim's proof counts). This \
                 miner keeps leading so the sessions it holds are still claimed and proved (stepping down would \
                 lose them all: the Go miner cannot see them). Stop the Go miner (the sessions it claimed are \
                 its own to prove), or stop this one once its sessions settled"
            );
        }
        *lock(&self.inner.go_miner_beside) = Some(found);
    }

    /// A renewal found no live Go miner, or `candidate` no longer leads (`why`): clears
    /// [`RedisBackend::go_miner_beside_leader`] (logged when it was set).
    pub(crate) fn go_miner_beside_leader_gone(&self, election: &str, candidate: &str, why: &str) {
        if let Some(was) = lock(&self.inner.go_miner_beside).take() {
            self.inner.stats.record_go_miner_beside_leader_gone();
            tracing::info!(
                election,
                candidate,
                was,
                why,
                "no longer leading beside a live Go relay miner"
            );
        }
    }

    /// Forgets the relays at risk counted by this process' reads (`foreign_consumers`), once it no longer leads:
    /// only the leader reads the group, so a follower would otherwise show its last count for good.
    pub(crate) fn forget_all_foreign_consumers(&self) {
        lock(&self.inner.foreign).clear();
        self.inner.stats.record_foreign_consumers(0, 0, false);
    }

    /// The live Go miner (the keys found) the last renewal of this process' lease found beside it, while it
    /// leads.
    pub fn go_miner_beside_leader(&self) -> Option<String> {
        lock(&self.inner.go_miner_beside).clone()
    }

    /// A read round's list of the consumers of `stream`'s group (`XINFO CONSUMERS`): the entries pending for
    /// consumers other than `reader` are relays at risk (module docs, "Relays read by a foreign consumer"),
    /// summed over the streams into the stats' gauges; logged at ERROR while there are any (at most every
    /// 10 s).
    pub(crate) fn foreign_consumers(&self, stream: &str, reader: &str, consumers: &[GroupConsumer]) {
        // A consumer stays in the group once its entries are acknowledged or taken over (a Go miner long gone):
        // only those holding entries are counted.
        let foreign: Vec<&GroupConsumer> = consumers.iter().filter(|c| c.name != reader && c.pending > 0).collect();
        let pending: u64 = foreign.iter().map(|c| c.pending).sum();
        let (total_pending, total_consumers) = {
            let mut by_stream = lock(&self.inner.foreign);
            if foreign.is_empty() {
                by_stream.remove(stream);
            } else {
                by_stream.insert(
                    stream.to_owned(),
                    (pending, u64::try_from(foreign.len()).unwrap_or(u64::MAX)),
                );
            }
            by_stream.values().fold((0, 0), |(p, c), (sp, sc)| (p + sp, c + sc))
        };
        let log = self
            .inner
            .stats
            .record_foreign_consumers(total_pending, total_consumers, pending > 0);
        if log {
            let named: Vec<String> = foreign
                .iter()
                .map(|c| format!("{} ({} pending, idle {} ms)", c.name, c.pending, c.idle_ms))
                .collect();
            tracing::error!(
                stream,
                group = self.keys().group(),
                reader,
                consumers = named.join(", "),
                at_risk = pending,
                at_risk_total = total_pending,
                "relays of this stream were read by another consumer of the group (a Go miner, or a miner under \
                 another consumer name): those pending for it go into its tries, not ours (taken over only if it \
                 stays idle past claim_idle_timeout_ms); stop the other miner"
            );
        }
    }

    /// Forgets `stream`'s foreign consumers (its group is gone with them).
    pub(crate) fn forget_foreign_consumers(&self, stream: &str) {
        let mut by_stream = lock(&self.inner.foreign);
        if by_stream.remove(stream).is_some() {
            let (p, c) = by_stream.values().fold((0, 0), |(p, c), (sp, sc)| (p + sp, c + sc));
            drop(by_stream);
            self.inner.stats.record_foreign_consumers(p, c, false);
        }
    }
}

/// One consumer of a relay stream's group, as `XINFO CONSUMERS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupConsumer {
    /// Its name (`miner` for every relay-miner process; `miner-{host}-{pid}` for a Go miner).
    pub(crate) name: String,
    /// Entries delivered to it and not acknowledged.
    pub(crate) pending: u64,
    /// Milliseconds since its last attempted interaction (a blocked read counts from its start).
    pub(crate) idle_ms: u64,
}
