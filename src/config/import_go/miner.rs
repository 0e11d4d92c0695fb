//! The Go miner's file (`miner/config.go`): transactions, leader election, the balance monitor, and the many
//! knobs of the Go miner's own machinery (worker pools, supplier claiming between replicas, TTLs, batch sizes)
//! that relay-miner's miner does not have. Go's getters read most zero values as a default; those are written as
//! that default, with a note.

use serde_norway::Value;

use super::{Cx, entries, shared, shown};
use crate::config::{MAX_TX_TIMEOUT_SECS, StorageMode};

const INCLUSION: &str = "relay-miner confirms every claim and proof from chain state each block and re-sends a missing one once inside \
     its window; nothing to configure";

/// Walks the Go miner file.
pub(super) fn walk(cx: &mut Cx, root: &Value) {
    let Some(map) = cx.map_of("", root) else { return };
    for (name, key, v) in entries(cx, "", map) {
        match name.as_str() {
            "redis" => shared::redis(cx, &key, v),
            "pocket_node" => shared::pocket_node(cx, &key, v),
            "keys" => shared::keys(cx, &key, v),
            "metrics" => shared::listener(cx, &key, v, "metrics"),
            "logging" => shared::logging(cx, &key, v),
            "pprof" => shared::pprof(cx, &key, v),
            "transaction" => transaction(cx, &key, v),
            "leader_election" => leader_election(cx, &key, v),
            "balance_monitor" => balance_monitor(cx, &key, v),
            "hot_reload_enabled" => cx.copy_bool(&key, v, &["keys", "hot_reload"]),
            "deduplication_ttl_blocks" | "ack_batch_size" => cx.drop_key(&key, "unused by the Go miner too"),
            "batch_size" => cx.drop_key(&key, "the miner sizes its relay-log reads itself; no setting"),
            "cache_ttl" | "session_ttl" => cx.drop_key(
                &key,
                "no TTL on the miner's state here: a session's data is pruned when its lifecycle ends (proved, settled \
                 or expired), not by a timer",
            ),
            "submission_tracking_ttl" => cx.drop_key(
                &key,
                "no submission-tracking records with a TTL here; metrics and logs carry the outcome",
            ),
            "smst_live_root_checkpoint_interval" => cx.drop_key(
                &key,
                "the trie is rebuilt from or persisted with the durable relay log; no checkpoint interval",
            ),
            "supplier_reconcile_interval_seconds" => cx.drop_key(
                &key,
                "suppliers come from the keys file (reloaded with keys.hot_reload) and the chain; no interval",
            ),
            "known_applications" => cx.drop_key(&key, "no cache warm-up here: applications are read on first use"),
            "session_lifecycle" => cx.drop_tree(&key, v, "no setting: session transitions are not a worker pool here"),
            "block_time_seconds" => {
                cx.drop_key(&key, "relay-miner follows the node's blocks; no configured block time")
            }
            "block_health_monitor" => cx.drop_tree(&key, v, "no block-slowness monitor setting here"),
            "settlement_monitor" => cx.drop_tree(&key, v, "no settlement monitor setting here"),
            "default_service_factor" | "service_factors" => service_factor(cx, &key, v),
            "worker_pools" => cx.drop_tree(&key, v, "no worker pools to size here"),
            "supplier_claiming" => cx.drop_tree(
                &key,
                v,
                "no per-supplier claiming between miner replicas: the one miner holding the lease mines every supplier",
            ),
            _ => cx.unknown(&key),
        }
    }
    if !map.contains_key("pocket_node") {
        shared::grpc_insecure_default(cx);
    }
    shared::listener_default(cx, map, "metrics", ":9092");
}

fn transaction(cx: &mut Cx, key: &str, v: &Value) {
    let Some(map) = cx.map_of(key, v) else { return };
    for (name, k, value) in entries(cx, key, map) {
        let to = ["transaction", name.as_str()];
        match name.as_str() {
            "gas_limit" => cx.copy_u64(&k, value, &to),
            "gas_price" => match cx.str_of(&k, value) {
                Some(s) if s.is_empty() => cx.put_agree(
                    &k,
                    &to,
                    "0.00001upokt".into(),
                    Some("Go reads empty as 0.00001upokt".into()),
                ),
                Some(s) => cx.put_agree(&k, &to, s.into(), None),
                None => {}
            },
            "gas_adjustment" => match cx.f64_of(&k, value) {
                Some(f) if f <= 0.0 => {
                    cx.put_agree(&k, &to, 1.7.into(), Some(format!("Go reads {f} as its default 1.7")))
                }
                Some(f) => cx.put_agree(&k, &to, f.into(), None),
                None => {}
            },
            // Go sizes a claim/proof tx's timeout to its window, clamped to [min, max]; `default` is its fallback
            // when no window-based value can be computed. Ours sizes it to the window at the chain's pace, at
            // least tx_timeout_default_seconds, at most 540 s, and 540 s when the pace is unknown: Go's floor is
            // our key.
            "tx_timeout_min_seconds" => {
                cx.u64_zero_is(&k, value, &["transaction", "tx_timeout_default_seconds"], 120);
                if let Some(item) = cx.items.last_mut()
                    && let super::Fate::Mapped { note, .. } = &mut item.fate
                {
                    let floor = "the floor of a claim/proof tx's timeout, which is sized to its window at the \
                                 chain's pace up to 540 s";
                    *note = Some(note.as_ref().map_or(floor.to_string(), |n| format!("{n}; {floor}")));
                }
            }
            "tx_timeout_default_seconds" => cx.drop_key(
                &k,
                "Go's fallback when no window-based timeout can be computed; relay-miner then uses 540 s (the \
                 window's close, the tx's timeout_height, bounds inclusion anyway); its floor is Go's \
                 tx_timeout_min_seconds",
            ),
            "tx_timeout_max_seconds" => match cx.u64_of(&k, value) {
                Some(n) if n > 0 && n < MAX_TX_TIMEOUT_SECS => cx.attention(
                    &k,
                    format!(
                        "{n}: Go capped a tx's timeout at {n} s; relay-miner sizes it to the window at the chain's \
                         pace up to {MAX_TX_TIMEOUT_SECS} s, with no lower cap (the window's close still bounds \
                         inclusion): accept that"
                    ),
                ),
                Some(n) => cx.drop_key(
                    &k,
                    &format!(
                        "{}: relay-miner caps a tx's timeout at {MAX_TX_TIMEOUT_SECS} s (the node refuses 10 min \
                         less its clock margin)",
                        if n == 0 {
                            "0 (Go's default 590)".to_string()
                        } else {
                            n.to_string()
                        }
                    ),
                ),
                None => {}
            },
            "tx_timeout_clock_skew_buffer_seconds" => cx.drop_key(
                &k,
                "tx timeouts are anchored on the chain's latest block time here, not the local clock",
            ),
            "disable_claim_batching" | "disable_proof_batching" => match value.as_bool() {
                Some(false) => cx.drop_key(&k, "relay-miner always batches a supplier's claims and proofs"),
                _ => cx.attention(
                    &k,
                    format!(
                        "`{}`: relay-miner always batches a supplier's claims and proofs due together, in txs of at \
                         most transaction.max_tx_bytes; it cannot send one tx per session",
                        shown(&k, value)
                    ),
                ),
            },
            "disable_pre_proof_claim_verification" => cx.drop_key(&k, "no such switch here"),
            "disable_inclusion_reconciler"
            | "inclusion_reconciler_max_concurrent"
            | "max_rebroadcasts"
            | "rebroadcast_safety_blocks"
            | "inclusion_reconciler_per_group_timeout_ms" => cx.drop_key(&k, INCLUSION),
            _ => cx.unknown(&k),
        }
    }
}

fn leader_election(cx: &mut Cx, key: &str, v: &Value) {
    if cx.storage != StorageMode::Redis {
        cx.drop_tree(key, v, "the output's storage mode is not redis: no Redis lease");
        return;
    }
    let Some(map) = cx.map_of(key, v) else { return };
    for (name, k, value) in entries(cx, key, map) {
        match name.as_str() {
            "leader_ttl_seconds" => cx.u64_zero_is(&k, value, &["storage", "redis", "leader_ttl_seconds"], 30),
            "heartbeat_rate_seconds" => {
                cx.u64_zero_is(&k, value, &["storage", "redis", "heartbeat_rate_seconds"], 10);
                if let Some(item) = cx.items.last_mut()
                    && let super::Fate::Mapped { note, .. } = &mut item.fate
                {
                    let deprecated = "ignored here: the lease is renewed every leader_ttl_seconds / 4";
                    *note = Some(
                        note.as_ref()
                            .map_or(deprecated.to_string(), |n| format!("{n}; {deprecated}")),
                    );
                }
            }
            _ => cx.unknown(&k),
        }
    }
}

fn balance_monitor(cx: &mut Cx, key: &str, v: &Value) {
    let Some(map) = cx.map_of(key, v) else { return };
    for (name, k, value) in entries(cx, key, map) {
        let to = ["balance_monitor", name.as_str()];
        match name.as_str() {
            "enabled" => cx.copy_bool(&k, value, &to),
            "check_interval_seconds" => cx.u64_zero_is(&k, value, &to, 300),
            "balance_threshold_upokt" => cx.copy_u64(&k, value, &to),
            "stake_warning_proof_threshold" => cx.u64_zero_is(&k, value, &to, 10),
            "stake_critical_proof_threshold" => cx.u64_zero_is(&k, value, &to, 3),
            _ => cx.unknown(&k),
        }
    }
}

/// Go's service factors scale the relay meter's per-session budget; relay-miner meters against the application's
/// stake split over its suppliers, with no factor.
fn service_factor(cx: &mut Cx, key: &str, v: &Value) {
    let unset = match v {
        Value::Null => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Mapping(m) => m.is_empty(),
        _ => false,
    };
    if unset {
        cx.drop_key(key, "not set: Go meters without a factor, as relay-miner does");
    } else {
        cx.attention(
            key,
            format!(
                "`{}`: relay-miner meters an application's stake split over its suppliers (relay_meter), with no \
                 service factor: its relayers may serve a different budget per session than the Go fleet did; accept \
                 that or keep the Go relayers",
                shown(key, v)
            ),
        );
    }
}
