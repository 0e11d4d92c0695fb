//! Key names of the Redis backend: the Go relay miner's layout (`spec/go-redis-layout.md`) under a configurable
//! base prefix (default `ha`), so a fleet can move from the Go miner to relay-miner one process at a time.
//!
//! | concept | key | type |
//! |---|---|---|
//! | relay log of a supplier | `{base}:relays:{supplier}`, consumer group `{base}-miners` | stream, field `data` |
//! | trie nodes of (supplier, session) (ours) | `{base}:miner:trie:{supplier}:{session}` | hash, field = hex node key |
//! | session record | `{base}:miner:sessions:{supplier}:{session}` | hash |
//! | session indexes | `{base}:miner:sessions:{supplier}:index`, `…:{supplier}:state:{state}` | sets of session ids |
//! | suppliers whose relay stream relay-miner appended to or found (ours) | `{base}:miner:relay_log:suppliers` | set |
//! | suppliers having session records (ours) | `{base}:miner:sessions:suppliers` | set |
//! | global leader lease | `{base}:miner:global_leader` (value = holder name) | string, PX ttl |
//! | other elections (ours) | `{base}:miner:leader:{election}` | string, PX ttl |
//! | fencing token of the current term (ours) | `{lease key}:token` | string, same PX as the lease |
//! | fencing counter (ours, never expires) | `{lease key}:fencing` | INCR counter |
//! | TTL key-value | `{base}:cache:{key}` | string |
//! | relay meter of (session, supplier), compute units (ours) | `{base}:cache:meter:{session}:{supplier}:consumed` | string, INCRBY |
//! | last sync applied to a meter by one relayer (ours) | `{base}:cache:meter:{session}:{supplier}:consumed:once:{writer}` | string, meter's PX |
//! | readiness probe (ours) | `{base}:miner:ready_probe:{instance}` | string, short PX |
//! | Go miners' instance heartbeats (read only) | `{base}:miner:active` (set of ids), `{base}:miner:instance:{id}` | set, string with TTL |
//!
//! The relay-miner miner campaigns as election `miner` (`{base}:miner:leader:miner`), not at Go's
//! `global_leader`, and holding `global_leader` would not exclude a Go miner anyway: in the Go fleet the global
//! leader only refreshes caches and publishes blocks, while every Go miner replica consumes relay streams and
//! claims for the suppliers it leases at `{base}:miner:claim:{supplier}`. Go and relay-miner miners therefore
//! must not run against the same Redis at once (both would read the `ha-miners` group, split the relays and
//! claim the same sessions). A relay-miner campaign is refused while a Go miner is live (module `go_fleet`): Go's
//! `global_leader` held with a TTL and without our token key next to it, or a Go instance heartbeat alive.
//!
//! Keys marked "ours" have no Go counterpart. The trie is "ours" on purpose: Go keeps its SMST at
//! `{base}:smst:{supplier}:{session}:nodes` as content-addressed nodes (field = hex of a node digest, value = the
//! node, with a sliding TTL, deleted by the Go miner's cleanup), relay-miner as leaf records of its own format
//! (`smst` module of the main crate). Sharing the key mixed the two on a migration: each side's reads would meet
//! the other's nodes, and each side's TTL and deletes would drop the other's trie (a claim then unprovable).
//! Releases before this layout wrote relay-miner's tries at the Go key: [`Keys::go_trie_nodes`] is read once
//! to take such a trie over (module `trie`). Upgrading an HA fleet across that change is not rolling: stop every
//! older relay-miner miner before starting the new ones, since an older miner taking leadership back after a new
//! one moved a trie would find it gone from the Go key and claim or prove a trie missing its relays. The relay meter is "ours" on purpose: Go's
//! `{base}:meter:{session}:{supplier}:consumed` counts uPOKT (per-relay cost truncated, budget divided by
//! pending sessions or scaled by a service factor), ours counts compute units against `stake / suppliers`; a
//! shared counter would mix the two, so Go and Rust relayers meter separately during a migration. Session ids and supplier addresses never contain `:` in
//! practice, which keeps these shapes unambiguous (the Go layout relies on the same).

/// Builds every key from the base prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    base: String,
    group: String,
}

/// The election whose lease lives at the Go fleet's `{base}:miner:global_leader`.
pub const GLOBAL_ELECTION: &str = "global";

impl Keys {
    /// Keys under `base` (e.g. `"ha"`); the consumer group is `{base}-miners` unless `group` is given.
    pub fn new(base: &str, group: Option<&str>) -> Self {
        Self {
            base: base.to_owned(),
            group: group.map_or_else(|| format!("{base}-miners"), str::to_owned),
        }
    }

    /// The base prefix.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The relay stream's consumer group (`ha-miners`).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// `{base}:relays:{supplier}`.
    pub fn relay_stream(&self, supplier: &str) -> String {
        format!("{}:relays:{supplier}", self.base)
    }

    /// `{base}:miner:relay_log:suppliers`: the suppliers whose relay stream this crate appended to or found
    /// (`log::suppliers` module).
    pub fn relay_log_suppliers(&self) -> String {
        format!("{}:miner:relay_log:suppliers", self.base)
    }

    /// `{base}:miner:trie:{supplier}:{session}`: relay-miner's trie of (supplier, session).
    pub fn trie_nodes(&self, supplier: &str, session: &str) -> String {
        format!("{}:miner:trie:{supplier}:{session}", self.base)
    }

    /// `{base}:smst:{supplier}:{session}:nodes`: the Go miner's SMST of (supplier, session), where relay-miner
    /// releases before [`Keys::trie_nodes`] kept theirs too.
    pub fn go_trie_nodes(&self, supplier: &str, session: &str) -> String {
        format!("{}:smst:{supplier}:{session}:nodes", self.base)
    }

    /// `{base}:miner:sessions:{supplier}:{session}`.
    pub fn session(&self, supplier: &str, session: &str) -> String {
        format!("{}:miner:sessions:{supplier}:{session}", self.base)
    }

    /// `{base}:miner:sessions:{supplier}:index`.
    pub fn session_index(&self, supplier: &str) -> String {
        format!("{}:miner:sessions:{supplier}:index", self.base)
    }

    /// `{base}:miner:sessions:{supplier}:state:` (append the state).
    pub fn session_state_prefix(&self, supplier: &str) -> String {
        format!("{}:miner:sessions:{supplier}:state:", self.base)
    }

    /// `{base}:miner:sessions:suppliers`.
    pub fn session_suppliers(&self) -> String {
        format!("{}:miner:sessions:suppliers", self.base)
    }

    /// The lease key of `election`: `{base}:miner:global_leader` for [`GLOBAL_ELECTION`], else
    /// `{base}:miner:leader:{election}`.
    pub fn lease(&self, election: &str) -> String {
        if election == GLOBAL_ELECTION {
            format!("{}:miner:global_leader", self.base)
        } else {
            format!("{}:miner:leader:{election}", self.base)
        }
    }

    /// `{lease}:token`: the fencing token of the current term.
    pub fn lease_token(&self, election: &str) -> String {
        format!("{}:token", self.lease(election))
    }

    /// `{lease}:fencing`: the never-expiring counter tokens are drawn from.
    pub fn lease_counter(&self, election: &str) -> String {
        format!("{}:fencing", self.lease(election))
    }

    /// `{base}:cache:{key}`.
    pub fn kv(&self, key: &str) -> String {
        format!("{}:cache:{key}", self.base)
    }

    /// `{base}:miner:instance_lock:{name}`: the per-process nonce of the process campaigning as `name` (not the
    /// Go miner's `{base}:miner:instance:{id}` heartbeat, whose ids are `host-pid` and so unique per process).
    pub fn instance_lock(&self, name: &str) -> String {
        format!("{}:miner:instance_lock:{name}", self.base)
    }

    /// `{base}:miner:active`: the Go miners' set of instance ids (read only: relay-miner never writes it).
    pub fn go_active_set(&self) -> String {
        format!("{}:miner:active", self.base)
    }

    /// `{base}:miner:instance:`: prefix of a Go miner's heartbeat key `{base}:miner:instance:{id}` (value unix
    /// nanos, TTL the Go miner's claim TTL, 90 s by default, refreshed every 10 s).
    pub fn go_instance_prefix(&self) -> String {
        format!("{}:miner:instance:", self.base)
    }

    /// `{base}:miner:ready_probe:{instance}`.
    pub fn ready_probe(&self, instance: &str) -> String {
        format!("{}:miner:ready_probe:{instance}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_layout_golden() {
        let k = Keys::new("ha", None);
        assert_eq!(k.group(), "ha-miners");
        assert_eq!(k.relay_stream("pokt1sup"), "ha:relays:pokt1sup");
        assert_eq!(k.go_trie_nodes("pokt1sup", "abc"), "ha:smst:pokt1sup:abc:nodes");
        assert_eq!(k.trie_nodes("pokt1sup", "abc"), "ha:miner:trie:pokt1sup:abc");
        assert_eq!(k.session("pokt1sup", "abc"), "ha:miner:sessions:pokt1sup:abc");
        assert_eq!(k.session_index("pokt1sup"), "ha:miner:sessions:pokt1sup:index");
        assert_eq!(
            format!("{}claimed", k.session_state_prefix("pokt1sup")),
            "ha:miner:sessions:pokt1sup:state:claimed"
        );
        assert_eq!(k.lease("global"), "ha:miner:global_leader");
        assert_eq!(k.lease_token("global"), "ha:miner:global_leader:token");
        assert_eq!(k.lease_counter("global"), "ha:miner:global_leader:fencing");
        assert_eq!(k.lease("claim"), "ha:miner:leader:claim");
        assert_eq!(k.kv("application:pokt1app"), "ha:cache:application:pokt1app");
        assert_eq!(k.go_active_set(), "ha:miner:active");
        assert_eq!(
            format!("{}host-42", k.go_instance_prefix()),
            "ha:miner:instance:host-42"
        );
    }

    #[test]
    fn custom_prefix_and_group() {
        let k = Keys::new("t1", Some("grp"));
        assert_eq!(k.base(), "t1");
        assert_eq!(k.group(), "grp");
        assert_eq!(k.relay_stream("s"), "t1:relays:s");
        assert_eq!(Keys::new("x", None).group(), "x-miners");
    }
}
