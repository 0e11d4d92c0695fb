//! The Go relayer's file (`relayer/config.go`): services and their backends, timeout and pool profiles, the HTTP
//! transport, body and timeout defaults, the relay meter, and its side sections.
//!
//! Two Go rules shape the output beyond copying keys: a service without `timeout_profile` uses Go's `fast`
//! profile (and Go's built-in `fast`, `streaming`, `low`, `medium`, `high` profiles exist without being written),
//! so the output names each service's profile and carries the built-in ones it uses; and a profile's
//! `response_header_timeout_seconds: 0` means "no header timeout" in Go but "http_transport's" here, so it is
//! written as the request timeout that bounds it in Go.

use std::collections::BTreeSet;

use serde_norway::{Mapping, Value};

use super::{Cx, entries, go_duration_seconds, listen_addr, shared, show, shown};
use crate::config::validate::BACKEND_KINDS;

/// Go's built-in timeout profiles: (name, request, response header, dial) seconds.
const GO_TIMEOUT_PROFILES: [(&str, u64, u64, u64); 2] = [("fast", 30, 30, 5), ("streaming", 600, 0, 10)];
/// Go's built-in pool profiles: (name, max conns, max idle conns, idle timeout) per host.
const GO_POOL_PROFILES: [(&str, u64, u64, u64); 3] =
    [("low", 10, 5, 90), ("medium", 100, 20, 90), ("high", 250, 50, 90)];
/// Go's request timeout when `default_request_timeout_seconds` is 0 or unset.
const GO_DEFAULT_REQUEST_TIMEOUT: u64 = 30;

/// Walks the Go relayer file.
pub(super) fn walk(cx: &mut Cx, root: &Value) {
    let Some(map) = cx.map_of("", root) else { return };
    let default_timeout = map
        .get("default_request_timeout_seconds")
        .and_then(Value::as_u64)
        .filter(|t| *t > 0)
        .unwrap_or(GO_DEFAULT_REQUEST_TIMEOUT);
    let mut used = Used::default();
    let mut defined_timeouts = BTreeSet::new();
    let mut defined_pools = BTreeSet::new();
    for (name, key, v) in entries(cx, "", map) {
        match name.as_str() {
            "listen_addr" => {
                if let Some(s) = cx.str_of(&key, v) {
                    let (addr, note) = listen_addr(&s);
                    cx.put_agree(&key, &["listen_addr"], addr.into(), note);
                }
            }
            "redis" => shared::redis(cx, &key, v),
            "pocket_node" => shared::pocket_node(cx, &key, v),
            "keys" => shared::keys(cx, &key, v),
            "metrics" => shared::listener(cx, &key, v, "metrics"),
            "health_check" => shared::listener(cx, &key, v, "health_check"),
            "logging" => shared::logging(cx, &key, v),
            "pprof" => shared::pprof(cx, &key, v),
            "services" => services(cx, &key, v, &mut used),
            "default_validation_mode" => validation_mode(cx, &key, v, &["default_validation_mode"]),
            "default_request_timeout_seconds" => cx.u64_zero_is(
                &key,
                v,
                &["default_request_timeout_seconds"],
                GO_DEFAULT_REQUEST_TIMEOUT,
            ),
            "default_max_body_size_bytes" => cx.copy_u64(&key, v, &["default_max_body_size_bytes"]),
            "relay_meter" => relay_meter(cx, &key, v),
            "http_transport" => http_transport(cx, &key, v),
            "timeout_profiles" => timeout_profiles(cx, &key, v, default_timeout, &mut defined_timeouts),
            "pool_profiles" => pool_profiles(cx, &key, v, &mut defined_pools),
            "cache_warmup" => cx.drop_tree(
                &key,
                v,
                "no cache warm-up here: applications and sessions are read on first use and cached",
            ),
            "response_compression" => cx.drop_tree(
                &key,
                v,
                "relay-miner never compresses relay responses (the gateway compresses towards its clients)",
            ),
            "simulation" => simulation(cx, &key, v),
            "grace_period_extra_blocks" => {
                cx.drop_key(&key, "a stale key of the Go relayer's schema: Go read nothing from it")
            }
            _ => cx.unknown(&key),
        }
    }
    if !map.contains_key("pocket_node") {
        shared::grpc_insecure_default(cx);
    }
    shared::listener_default(cx, map, "metrics", "0.0.0.0:9090");
    shared::listener_default(cx, map, "health_check", "0.0.0.0:8081");
    builtin_profiles(cx, &used, &defined_timeouts, &defined_pools);
}

/// Profiles the services refer to.
#[derive(Default)]
struct Used {
    timeouts: BTreeSet<String>,
    pools: BTreeSet<String>,
}

fn validation_mode(cx: &mut Cx, key: &str, v: &Value, to: &[&str]) {
    match v.as_str() {
        Some("") => cx.drop_key(key, "empty: the default validation mode applies, as in Go"),
        Some(mode @ ("eager" | "optimistic")) => cx.put_agree(key, to, mode.into(), None),
        _ => cx.attention(
            key,
            format!(
                "`{}` is not eager or optimistic (the Go loader refuses it too): nothing written",
                shown(key, v)
            ),
        ),
    }
}

fn services(cx: &mut Cx, key: &str, value: &Value, used: &mut Used) {
    let Some(map) = cx.map_of(key, value) else { return };
    for (id, key, svc) in entries(cx, key, map) {
        let Some(svc) = cx.map_of(&key, svc) else { continue };
        let mut has_timeout_profile = false;
        for (name, key, v) in entries(cx, &key, svc) {
            let to = |k: &'static str| ["services", id.as_str(), k];
            match name.as_str() {
                "validation_mode" => validation_mode(cx, &key, v, &to("validation_mode")),
                "timeout_profile" | "pool_profile" => match cx.str_of(&key, v) {
                    Some(s) if s.is_empty() => {
                        cx.drop_key(&key, "empty: as if not set");
                    }
                    Some(s) => {
                        if name == "timeout_profile" {
                            has_timeout_profile = true;
                            used.timeouts.insert(s.clone());
                        } else {
                            used.pools.insert(s.clone());
                        }
                        let field = if name == "timeout_profile" {
                            "timeout_profile"
                        } else {
                            "pool_profile"
                        };
                        cx.put_agree(&key, &to(field), s.into(), None);
                    }
                    None => {}
                },
                "max_body_size_bytes" => match cx.u64_of(&key, v) {
                    Some(0) => cx.drop_key(&key, "0: Go applies default_max_body_size_bytes, as relay-miner does"),
                    Some(n) => cx.put_agree(&key, &to("max_body_size_bytes"), n.into(), None),
                    None => {}
                },
                "default_backend" => match cx.str_of(&key, v) {
                    Some(s) if s.is_empty() => cx.drop_key(&key, "empty: as if not set"),
                    Some(s) => cx.put_agree(&key, &to("default_backend"), s.into(), None),
                    None => {}
                },
                "backends" => backends(cx, &key, v, &id),
                _ => cx.unknown(&key),
            }
        }
        if !has_timeout_profile {
            used.timeouts.insert("fast".into());
            cx.put_agree(
                &format!("{key}.timeout_profile (not set)"),
                &["services", &id, "timeout_profile"],
                "fast".into(),
                Some("Go applies its `fast` timeout profile to a service without one".into()),
            );
        }
    }
}

fn backends(cx: &mut Cx, key: &str, value: &Value, id: &str) {
    let Some(map) = cx.map_of(key, value) else { return };
    for (kind, key, backend) in entries(cx, key, map) {
        if !BACKEND_KINDS.contains(&kind.as_str()) {
            cx.attention(
                &key,
                format!(
                    "`{kind}` is not a backend kind {BACKEND_KINDS:?} (the Go loader refuses it too): nothing written"
                ),
            );
            continue;
        }
        let Some(backend) = cx.map_of(&key, backend) else {
            continue;
        };
        for (name, key, v) in entries(cx, &key, backend) {
            let to = |k: &'static str| ["services", id, "backends", kind.as_str(), k];
            match name.as_str() {
                "url" | "base_path" | "load_balancing" => match cx.str_of(&key, v) {
                    Some(s) if s.is_empty() => cx.drop_key(&key, "empty: as if not set, as in Go"),
                    Some(s) => {
                        let field = match name.as_str() {
                            "url" => "url",
                            "base_path" => "base_path",
                            _ => "load_balancing",
                        };
                        if field == "load_balancing" && s != "round_robin" && s != "first_healthy" {
                            cx.attention(
                                &key,
                                format!(
                                    "`{s}` is not round_robin or first_healthy (Go refuses it too): nothing written"
                                ),
                            );
                        } else {
                            cx.put_agree(&key, &to(field), s.into(), None);
                        }
                    }
                    None => {}
                },
                "urls" => urls(cx, &key, v, &to("urls")),
                "headers" => string_map(cx, &key, v, &to("headers")),
                "authentication" => authentication(cx, &key, v, &to("authentication")),
                "health_check" => health_check(cx, &key, v, &to("health_check")),
                "max_retries" => cx.copy_u64(&key, v, &to("max_retries")),
                "recovery_timeout_seconds" => cx.copy_u64(&key, v, &to("recovery_timeout_seconds")),
                _ => cx.unknown(&key),
            }
        }
    }
}

/// `urls`: plain URLs or `{name, url}` entries, the same shapes here.
fn urls(cx: &mut Cx, key: &str, v: &Value, to: &[&str]) {
    let Some(list) = v.as_sequence() else {
        cx.attention(
            key,
            format!("`{}` is not a list of URLs: nothing written", shown(key, v)),
        );
        return;
    };
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let entry_key = format!("{key}[{i}]");
        match entry {
            Value::String(_) => out.push(entry.clone()),
            Value::Mapping(m) => {
                let mut named = Mapping::new();
                for (name, k, field) in entries(cx, &entry_key, m) {
                    match (name.as_str(), field.as_str()) {
                        ("name", Some("")) => {}
                        ("name" | "url", Some(s)) => {
                            named.insert(name.as_str().into(), s.into());
                        }
                        ("name" | "url", None) => {
                            cx.attention(&k, format!("`{}` is not a string: nothing written", shown(&k, field)))
                        }
                        _ => cx.unknown(&k),
                    }
                }
                out.push(Value::Mapping(named));
            }
            other => cx.attention(
                &entry_key,
                format!(
                    "`{}` is not a URL or {{name, url}}: nothing written",
                    shown(&entry_key, other)
                ),
            ),
        }
    }
    cx.put_agree(key, to, Value::Sequence(out), None);
}

/// A `{string: string}` map (headers), copied.
fn string_map(cx: &mut Cx, key: &str, v: &Value, to: &[&str]) {
    let Some(map) = cx.map_of(key, v) else { return };
    let mut out = Mapping::new();
    for (name, k, value) in entries(cx, key, map) {
        match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                out.insert(name.into(), show(value).into());
            }
            other => cx.attention(
                &k,
                format!("`{}` is not a header value: nothing written", shown(&k, other)),
            ),
        }
    }
    cx.put_agree(key, to, Value::Mapping(out), None);
}

fn authentication(cx: &mut Cx, key: &str, v: &Value, to: &[&str]) {
    let Some(map) = cx.map_of(key, v) else { return };
    let mut out = Mapping::new();
    let mut unquoted = Vec::new();
    for (name, k, value) in entries(cx, key, map) {
        match name.as_str() {
            "username" | "password" | "bearer_token" | "plain_token" => {
                // Go's yaml.v3 reads an unquoted number or boolean into these strings as its text (`password:
                // 123456` is the password "123456"); written quoted, as our strict loader wants a string.
                let text = match value {
                    Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                };
                if let Some(text) = text {
                    unquoted.push(name.clone());
                    out.insert(name.as_str().into(), text.into());
                    continue;
                }
                match cx.str_of(&k, value) {
                    // Go treats an empty field as not set.
                    Some(s) if s.is_empty() => cx.drop_key(&k, "empty: not set, as in Go"),
                    Some(s) => {
                        out.insert(name.as_str().into(), s.into());
                    }
                    None => {}
                }
            }
            _ => cx.unknown(&k),
        }
    }
    let mut note = "secrets copied as they are".to_string();
    if !unquoted.is_empty() {
        note.push_str(&format!(
            "; {} unquoted in the Go file (a number or true/false, which Go reads as its text): written quoted \
             (check it if the Go file wrote it with leading zeros)",
            unquoted.join(", ")
        ));
    }
    cx.put_agree(key, to, Value::Mapping(out), Some(note));
}

fn health_check(cx: &mut Cx, key: &str, v: &Value, to: &[&str]) {
    let Some(map) = cx.map_of(key, v) else { return };
    for (name, k, value) in entries(cx, key, map) {
        let mut path = to.to_vec();
        path.push(name.as_str());
        match name.as_str() {
            "enabled" => cx.copy_bool(&k, value, &path),
            "interval_seconds" => cx.copy_u64(&k, value, &path),
            "timeout_seconds" | "unhealthy_threshold" | "healthy_threshold" => match cx.u64_of(&k, value) {
                Some(0) => cx.drop_key(
                    &k,
                    "0: Go applies its default, relay-miner its own (see the example config)",
                ),
                Some(n) => cx.put_agree(&k, &path, n.into(), None),
                None => {}
            },
            "endpoint" | "request_body" | "content_type" | "expected_body" => match cx.str_of(&k, value) {
                Some(s) if s.is_empty() => cx.drop_key(&k, "empty: not set, as in Go"),
                Some(s) => cx.put_agree(&k, &path, s.into(), None),
                None => {}
            },
            "method" => match cx.str_of(&k, value) {
                Some(s) if s.is_empty() => cx.drop_key(&k, "empty: GET, as in Go"),
                Some(s) => {
                    let upper = s.to_ascii_uppercase();
                    let note = (upper != s).then(|| "Go upper-cases it".to_string());
                    cx.put_agree(&k, &path, upper.into(), note);
                }
                None => {}
            },
            "expected_status" => match value.as_sequence() {
                Some(list) if list.iter().all(|s| s.as_u64().is_some()) => cx.put_agree(&k, &path, value.clone(), None),
                _ => cx.attention(
                    &k,
                    format!("`{}` is not a list of HTTP statuses: nothing written", shown(&k, value)),
                ),
            },
            "headers" => string_map(cx, &k, value, &path),
            _ => cx.unknown(&k),
        }
    }
}

fn relay_meter(cx: &mut Cx, key: &str, v: &Value) {
    let Some(map) = cx.map_of(key, v) else { return };
    for (name, k, value) in entries(cx, key, map) {
        match name.as_str() {
            "enabled" => cx.copy_bool(&k, value, &["relay_meter", "enabled"]),
            "fail_behavior" => {
                let Some(s) = cx.str_of(&k, value) else { continue };
                let (b, note) = match s.as_str() {
                    "closed" => ("closed", None),
                    "open" => ("open", None),
                    _ => ("open", Some(format!("Go reads `{s}` as open"))),
                };
                cx.put_agree(&k, &["relay_meter", "fail_behavior"], b.into(), note);
            }
            "cache_ttl" => {
                let Some(s) = cx.str_of(&k, value) else { continue };
                match go_duration_seconds(&s) {
                    Ok(secs) => {
                        let note = (s != format!("{secs}s")).then(|| format!("Go's `{s}` in seconds"));
                        cx.put_agree(&k, &["relay_meter", "cache_ttl"], secs.into(), note);
                    }
                    Err(why) => cx.attention(&k, format!("`{s}`: {why}: nothing written")),
                }
            }
            "redis_key_prefix" => cx.drop_key(
                &k,
                "relay-miner's meter counters are its own (compute units, under storage.redis.base_prefix); Go and \
                 relay-miner relayers meter apart during a migration",
            ),
            _ => cx.unknown(&k),
        }
    }
}

fn http_transport(cx: &mut Cx, key: &str, v: &Value) {
    let Some(map) = cx.map_of(key, v) else { return };
    for (name, k, value) in entries(cx, key, map) {
        match name.as_str() {
            "max_idle_conns"
            | "max_idle_conns_per_host"
            | "max_conns_per_host"
            | "idle_conn_timeout_seconds"
            | "dial_timeout_seconds"
            | "response_header_timeout_seconds"
            | "tcp_keep_alive_seconds" => cx.copy_u64(&k, value, &["http_transport", &name]),
            "tls_handshake_timeout_seconds" => cx.drop_key(
                &k,
                "no TLS handshake timeout of its own here: the request timeout bounds it",
            ),
            "expect_continue_timeout_seconds" => cx.drop_key(&k, "no `Expect: 100-continue` timeout setting here"),
            "disable_compression" => cx.drop_key(
                &k,
                "relay-miner never asks backends for compressed answers, and decodes gzip/deflate ones sent anyway",
            ),
            _ => cx.unknown(&k),
        }
    }
}

fn timeout_profiles(cx: &mut Cx, key: &str, v: &Value, default_timeout: u64, defined: &mut BTreeSet<String>) {
    let Some(map) = cx.map_of(key, v) else { return };
    for (profile, key, p) in entries(cx, key, map) {
        defined.insert(profile.clone());
        let Some(p) = cx.map_of(&key, p) else { continue };
        // The profile exists in Go even with no key of ours set (zeros: the defaults apply).
        cx.set_raw(&["timeout_profiles", &profile], Value::Mapping(Mapping::new()));
        let request = p.get("request_timeout_seconds").and_then(Value::as_u64).unwrap_or(0);
        let header_bound = if request > 0 { request } else { default_timeout };
        if !p.contains_key("response_header_timeout_seconds") {
            cx.put_agree(
                &format!("{key}.response_header_timeout_seconds (not set)"),
                &["timeout_profiles", &profile, "response_header_timeout_seconds"],
                header_bound.into(),
                Some(format!(
                    "Go's unset (0) is no header timeout, only the request timeout ({header_bound} s); 0 here would \
                     be http_transport's"
                )),
            );
        }
        for (name, k, value) in entries(cx, &key, p) {
            let to = ["timeout_profiles", profile.as_str(), name.as_str()];
            match name.as_str() {
                "request_timeout_seconds" | "dial_timeout_seconds" => cx.copy_u64(&k, value, &to),
                "response_header_timeout_seconds" => match cx.u64_of(&k, value) {
                    Some(0) => cx.put_agree(
                        &k,
                        &to,
                        header_bound.into(),
                        Some(format!(
                            "Go's 0 is no header timeout, only the request timeout ({header_bound} s); 0 here would be \
                             http_transport's"
                        )),
                    ),
                    Some(n) => cx.put_agree(&k, &to, n.into(), None),
                    None => {}
                },
                "tls_handshake_timeout_seconds" => cx.drop_key(
                    &k,
                    "no TLS handshake timeout of its own here: the request timeout bounds it",
                ),
                "name" => cx.drop_key(&k, "the profile's key names it"),
                _ => cx.unknown(&k),
            }
        }
    }
}

fn pool_profiles(cx: &mut Cx, key: &str, v: &Value, defined: &mut BTreeSet<String>) {
    let Some(map) = cx.map_of(key, v) else { return };
    for (profile, key, p) in entries(cx, key, map) {
        defined.insert(profile.clone());
        let Some(p) = cx.map_of(&key, p) else { continue };
        // The profile exists in Go even with no key set (zeros: http_transport's values, as here).
        cx.set_raw(&["pool_profiles", &profile], Value::Mapping(Mapping::new()));
        for (name, k, value) in entries(cx, &key, p) {
            match name.as_str() {
                "max_conns_per_host" | "max_idle_conns_per_host" | "idle_conn_timeout_seconds" => {
                    cx.copy_u64(&k, value, &["pool_profiles", &profile, &name])
                }
                "name" => cx.drop_key(&k, "the profile's key names it"),
                _ => cx.unknown(&k),
            }
        }
    }
}

/// Go's built-in profiles the services use but the file does not define, written so the meaning is kept.
fn builtin_profiles(cx: &mut Cx, used: &Used, defined_timeouts: &BTreeSet<String>, defined_pools: &BTreeSet<String>) {
    let builtin = |name: &str| format!("timeout_profiles.{name} (not set: Go's built-in)");
    for (name, request, header, dial) in GO_TIMEOUT_PROFILES {
        if !used.timeouts.contains(name) || defined_timeouts.contains(name) {
            continue;
        }
        // Go's 0 header timeout is none: the request timeout bounds it (as for a profile in the file).
        let header = if header == 0 { request } else { header };
        let mut profile = Mapping::new();
        profile.insert("request_timeout_seconds".into(), request.into());
        profile.insert("response_header_timeout_seconds".into(), header.into());
        profile.insert("dial_timeout_seconds".into(), dial.into());
        cx.put_agree(
            &builtin(name),
            &["timeout_profiles", name],
            Value::Mapping(profile),
            Some(format!("Go's built-in `{name}` profile, which a service uses")),
        );
    }
    for (name, conns, idle, idle_timeout) in GO_POOL_PROFILES {
        if !used.pools.contains(name) || defined_pools.contains(name) {
            continue;
        }
        let mut profile = Mapping::new();
        profile.insert("max_conns_per_host".into(), conns.into());
        profile.insert("max_idle_conns_per_host".into(), idle.into());
        profile.insert("idle_conn_timeout_seconds".into(), idle_timeout.into());
        cx.put_agree(
            &format!("pool_profiles.{name} (not set: Go's built-in)"),
            &["pool_profiles", name],
            Value::Mapping(profile),
            Some(format!("Go's built-in `{name}` profile, which a service uses")),
        );
    }
}

/// `simulation.*`: Go's synthetic-relay identities; nothing here answers them.
fn simulation(cx: &mut Cx, key: &str, v: &Value) {
    let enabled = v.get("enabled").and_then(Value::as_bool).unwrap_or(false);
    if enabled {
        cx.attention(
            &format!("{key}.enabled"),
            "relay-miner has no simulation mode: relays signed by the simulation identities are refused like any \
             unstaked application's; stop sending them (or keep a Go relayer for them)",
        );
        if let Some(map) = v.as_mapping() {
            for (name, k, value) in entries(cx, key, map) {
                if name != "enabled" {
                    cx.drop_tree(&k, value, "part of the simulation mode relay-miner does not have");
                }
            }
        }
    } else {
        cx.drop_tree(key, v, "simulation mode off; relay-miner has none");
    }
}
