//! The sections both Go files have: `redis`, `pocket_node`, `keys`, `metrics` / `health_check`, `logging` and
//! `pprof`. Our process has one of each, so where the relayer's and the miner's files disagree the second is
//! compared with the first ([`Cx::put`]).

use serde_norway::Value;

use super::{Conflict, Cx, GoFile, entries, listen_addr, show, shown};
use crate::config::StorageMode;

/// Go `redis.namespace.*` sub-prefixes and their defaults: our Redis layout uses these, fixed.
const FIXED_PREFIXES: [(&str, &str); 8] = [
    ("cache_prefix", "cache"),
    ("events_prefix", "events"),
    ("streams_prefix", "relays"),
    ("miner_prefix", "miner"),
    ("supplier_prefix", "supplier"),
    ("meter_prefix", "meter"),
    ("params_prefix", "params"),
    ("consumer_group_prefix", "miners"),
];

const NO_POOL: &str = "no Redis connection pool to size here (the client keeps its own few multiplexed connections)";

/// `redis.*` (both files; `consumer_name` and `claim_idle_timeout_ms` are the miner's).
pub(super) fn redis(cx: &mut Cx, key: &str, value: &Value) {
    if cx.storage != StorageMode::Redis {
        cx.drop_tree(key, value, "the output's storage mode is not redis: no Redis is used");
        return;
    }
    let Some(map) = cx.map_of(key, value) else { return };
    for (name, key, v) in entries(cx, key, map) {
        match name.as_str() {
            "url" => match cx.str_of(&key, v) {
                Some(s) if s.is_empty() => cx.drop_key(&key, "empty: as if not set"),
                Some(s) => cx.put_agree(&key, &["storage", "redis", "url"], s.into(), None),
                None => {}
            },
            "pool_size" | "min_idle_conns" | "pool_timeout_seconds" | "conn_max_idle_time_seconds" => {
                cx.drop_key(&key, NO_POOL)
            }
            "namespace" => namespace(cx, &key, v),
            "consumer_name" if cx.file == GoFile::Miner => {
                if let Some(s) = cx.str_of(&key, v) {
                    if s.is_empty() {
                        cx.drop_key(&key, "empty: relay-miner's default miner-{hostname} applies");
                    } else {
                        cx.put_agree(&key, &["storage", "redis", "consumer_name"], s.into(), None);
                    }
                }
            }
            "claim_idle_timeout_ms" if cx.file == GoFile::Miner => {
                // 0 here would never take pending entries over; Go reads 0 as one minute.
                cx.u64_zero_is(&key, v, &["storage", "redis", "claim_idle_timeout_ms"], 60_000)
            }
            _ => cx.unknown(&key),
        }
    }
}

fn namespace(cx: &mut Cx, key: &str, value: &Value) {
    let Some(map) = cx.map_of(key, value) else { return };
    for (name, key, v) in entries(cx, key, map) {
        if name == "base_prefix" {
            match cx.str_of(&key, v) {
                Some(s) if s.is_empty() => cx.drop_key(&key, "empty: Go's and relay-miner's default `ha` applies"),
                Some(s) => cx.put_agree(&key, &["storage", "redis", "base_prefix"], s.into(), None),
                None => {}
            }
            continue;
        }
        let Some((_, fixed)) = FIXED_PREFIXES.iter().find(|(n, _)| *n == name) else {
            cx.unknown(&key);
            continue;
        };
        match v.as_str() {
            Some(s) if s.is_empty() || s == *fixed => cx.drop_key(
                &key,
                &format!("relay-miner's Redis layout uses Go's default `{fixed}` here, fixed"),
            ),
            _ => cx.attention(
                &key,
                format!(
                    "`{}`: relay-miner's Redis layout uses Go's default `{fixed}`, fixed: what the Go fleet wrote \
                     under `{}` is not read. Let the Go fleet settle its sessions, or move to the default first",
                    shown(&key, v),
                    shown(&key, v)
                ),
            ),
        }
    }
}

/// `pocket_node.*` (`query_timeout_seconds` and `chain_id` are the miner's). `grpc_insecure` defaults to false
/// in Go (TLS even for an `http://` URL) and to true here, so a file without it gets Go's false written.
pub(super) fn pocket_node(cx: &mut Cx, key: &str, value: &Value) {
    let Some(map) = cx.map_of(key, value) else { return };
    let mut insecure_set = false;
    for (name, key, v) in entries(cx, key, map) {
        match name.as_str() {
            "query_node_rpc_url" | "query_node_grpc_url" => {
                if let Some(s) = cx.str_of(&key, v) {
                    cx.put(
                        &key,
                        &["pocket_node", &name],
                        s.into(),
                        None,
                        Conflict::Attention(
                            "relayer and miner must use the same node here (one process); point both at one node",
                        ),
                    );
                }
            }
            "grpc_insecure" => {
                insecure_set = true;
                cx.copy_bool(&key, v, &["pocket_node", "grpc_insecure"]);
            }
            "query_timeout_seconds" if cx.file == GoFile::Miner => {
                cx.u64_zero_is(&key, v, &["pocket_node", "query_timeout_seconds"], 5)
            }
            "chain_id" if cx.file == GoFile::Miner => match cx.str_of(&key, v) {
                Some(s) if s.is_empty() => cx.put_agree(
                    &key,
                    &["pocket_node", "chain_id"],
                    "pocket".into(),
                    Some("Go reads empty as `pocket`".into()),
                ),
                Some(s) => cx.put_agree(&key, &["pocket_node", "chain_id"], s.into(), None),
                None => {}
            },
            _ => cx.unknown(&key),
        }
    }
    if !insecure_set {
        grpc_insecure_default(cx);
    }
}

/// A Go file without `pocket_node.grpc_insecure` means Go's false (TLS, even for an `http://` gRPC URL); ours
/// defaults to true, so false is written.
pub(super) fn grpc_insecure_default(cx: &mut Cx) {
    cx.put_agree(
        "pocket_node.grpc_insecure (not set)",
        &["pocket_node", "grpc_insecure"],
        false.into(),
        Some(
            "Go's default false (TLS, even for an http:// gRPC URL) written, ours is true; set true if the node \
             serves plaintext gRPC"
                .into(),
        ),
    );
}

/// `keys.*`: `keys_file` has our format already; `keys_dir` and `keyring` we cannot read.
pub(super) fn keys(cx: &mut Cx, key: &str, value: &Value) {
    let Some(map) = cx.map_of(key, value) else { return };
    for (name, key, v) in entries(cx, key, map) {
        match name.as_str() {
            "keys_file" => match cx.str_of(&key, v) {
                Some(s) if s.is_empty() => cx.drop_key(&key, "empty"),
                Some(s) => cx.put(
                    &key,
                    &["keys", "keys_file"],
                    s.into(),
                    Some(
                        "the same format as Go's supplier keys file (`keys:` list of hex private keys); relay-miner \
                         refuses one group/others can read: chmod 600"
                            .into(),
                    ),
                    Conflict::Attention(
                        "one process signs relays and claims with one keys file: merge them into one if both are \
                         needed",
                    ),
                ),
                None => {}
            },
            "keys_dir" => match v.as_str() {
                Some("") => cx.drop_key(&key, "empty"),
                _ => cx.attention(
                    &key,
                    format!(
                        "`{}`: relay-miner reads one keys file, not a directory of per-key files: put each file's \
                         `private_key_hex` into one file `keys: [<hex>, …]` (chmod 600) and set keys.keys_file",
                        shown(&key, v)
                    ),
                ),
            },
            "keyring" => {
                let backend = v.get("backend").and_then(Value::as_str).unwrap_or_default();
                if v.is_null() || backend.is_empty() {
                    cx.drop_tree(&key, v, "no keyring backend set: Go did not use it");
                    continue;
                }
                let names = v
                    .get("key_names")
                    .and_then(Value::as_sequence)
                    .map(|s| s.iter().map(show).collect::<Vec<_>>().join(", "))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "<name>".into());
                cx.attention(
                    &key,
                    format!(
                        "relay-miner cannot read a Cosmos keyring (backend `{backend}`): export each key ({names}) \
                         with `pocketd keys export <name> --unarmored-hex --unsafe --keyring-backend {backend}` into \
                         one file `keys: [<hex>, …]` (chmod 600) and set keys.keys_file"
                    ),
                );
            }
            _ => cx.unknown(&key),
        }
    }
}

/// Why a second listener is dropped: not a decision to make (one process, one `/metrics` with the relayer's and
/// the miner's metrics), but scrape configs pointing at the other address must follow, so it is reported.
const LISTENER_HINT: &str =
    "one process serves relayer and miner metrics and probes on one listener: point the other scrapes and probes at it";

/// `metrics` / `health_check` listeners: `{enabled, addr}`. One process serves one of each.
pub(super) fn listener(cx: &mut Cx, key: &str, value: &Value, section: &str) {
    let Some(map) = cx.map_of(key, value) else { return };
    for (name, key, v) in entries(cx, key, map) {
        let hint = LISTENER_HINT;
        match name.as_str() {
            "enabled" => {
                if let Some(b) = cx.bool_of(&key, v) {
                    cx.put(&key, &[section, "enabled"], b.into(), None, Conflict::KeepFirst(hint));
                }
            }
            "addr" => {
                if let Some(s) = cx.str_of(&key, v) {
                    let (addr, note) = listen_addr(&s);
                    cx.put(&key, &[section, "addr"], addr.into(), note, Conflict::KeepFirst(hint));
                }
            }
            _ => cx.unknown(&key),
        }
    }
}

/// A Go file without `{section}.addr` listened on Go's default `addr`: written as that, so the other file's
/// listener is compared with it.
pub(super) fn listener_default(cx: &mut Cx, root: &serde_norway::Mapping, section: &str, addr: &str) {
    if root.get(section).and_then(|s| s.get("addr")).is_some() {
        return;
    }
    let (ours, _) = listen_addr(addr);
    cx.put(
        &format!("{section}.addr (not set)"),
        &[section, "addr"],
        ours.into(),
        Some(format!("Go's default `{addr}`")),
        Conflict::KeepFirst(LISTENER_HINT),
    );
}

/// `logging.*`: level and format; Go's async writer and sampling have no counterpart.
pub(super) fn logging(cx: &mut Cx, key: &str, value: &Value) {
    let Some(map) = cx.map_of(key, value) else { return };
    let keep_first = Conflict::KeepFirst("one process logs at one level and format");
    for (name, key, v) in entries(cx, key, map) {
        match name.as_str() {
            "level" => {
                let Some(s) = cx.str_of(&key, v) else { continue };
                let lower = s.to_ascii_lowercase();
                let (level, note) = match lower.as_str() {
                    "debug" | "info" | "warn" | "error" => (lower.clone(), None),
                    _ => ("info".to_string(), Some(format!("Go logs `{s}` as info"))),
                };
                cx.put(&key, &["logging", "level"], level.into(), note, keep_first);
            }
            "format" => {
                let Some(s) = cx.str_of(&key, v) else { continue };
                let (format, note) = if s.eq_ignore_ascii_case("text") {
                    ("text", None)
                } else if s.eq_ignore_ascii_case("json") {
                    ("json", None)
                } else {
                    ("json", Some(format!("Go writes JSON for `{s}`")))
                };
                cx.put(&key, &["logging", "format"], format.into(), note, keep_first);
            }
            "async" | "async_buffer_size" | "async_poll_interval" => {
                cx.drop_key(&key, "no async log writer setting here")
            }
            "sampling" | "sampling_initial" | "sampling_thereafter" => {
                cx.drop_key(&key, "relay-miner does not sample logs")
            }
            "enable_caller" => cx.drop_key(&key, "no caller location setting here"),
            _ => cx.unknown(&key),
        }
    }
}

/// `pprof.*`.
pub(super) fn pprof(cx: &mut Cx, key: &str, value: &Value) {
    cx.drop_tree(key, value, "relay-miner serves no pprof endpoint");
}
