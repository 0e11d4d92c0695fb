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
//! Not used: `XINFO CONSUMERS` of the group. Go consumers are named `miner-{host}-{pid}`, close to our default
//! `miner-{hostname}`, and a consumer's idle time does not tell a live Go miner from one stopped a minute ago.
//!
//! While a campaign is refused for this reason it is counted in `ha_miner_leader_acquisition_failures_total
//! {reason="go_miner_active"}` (one per campaign, i.e. per miner tick), logged at ERROR naming the keys found
//! (the first refusal at once, then every 10 s), and readiness fails with [`NotReady::GoMinerActive`]. The first
//! campaign that finds no live Go miner clears it (INFO log). Renewals do not check: a Go miner started beside a
//! leading relay-miner miner is the operator's doing after the fact (the README's migration order prevents it).

use redis::Value;

use super::{NotReady, RedisBackend, lock};

/// What the campaign script answers when it finds a live Go miner.
pub(crate) const GO_MINER_LIVE: i64 = -2;

/// The check the campaign script runs first. KEYS[5] = Go's global leader key, KEYS[6] = its token key (ours),
/// KEYS[7] = Go's active set; ARGV[5] = Go's instance key prefix. Reads the heartbeat keys by name built from
/// the set's members, as the session-record script does for its state sets (standalone Redis only, like every
/// multi-key script here).
pub(crate) const GO_MINER_CHECK: &str = r"
if redis.call('PTTL', KEYS[5]) > 0 and redis.call('EXISTS', KEYS[6]) == 0 then return -2 end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  if redis.call('PTTL', ARGV[5] .. id) > 0 then return -2 end
end
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
        let found = match self.describe_go_miner().await {
            Ok(found) => found,
            Err(e) => {
                let e = self.err("reading the Go miner's keys", e);
                format!("its keys could not be read for details: {e}")
            }
        };
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

    /// Readiness' part: [`NotReady::GoMinerActive`] while campaigns are refused for a live Go miner.
    pub(crate) fn go_miner_readiness(&self) -> Result<(), NotReady> {
        match self.go_miner_active() {
            Some(found) => Err(NotReady::GoMinerActive(found)),
            None => Ok(()),
        }
    }
}
