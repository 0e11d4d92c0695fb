//! Deterministic apply of [`Op`]s into the state-machine tables, and the table layout.
//!
//! Everything here depends only on the op, the entry's term and the leader-stamped `now_ms`, never on the local
//! clock or node, so every replica ends with identical tables. That includes fenced ops ([`Op::Fenced`]): the
//! fence is checked against the replicated lease record, live in the entry's term at its `now_ms`, so a
//! deposed leader's write is refused on every node alike. An op that fails a precondition (CAS conflict,
//! non-integer counter) writes nothing and reports an [`OpResult::Conflict`] / [`OpResult::Error`]; only redb
//! failures abort the whole entry.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::types::{Op, OpResult, RelayRecord, decode, encode, lease_token};

/// `(supplier, seq) -> RelayValue`: the relay log.
pub(crate) const RELAYS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("relays");
/// `(supplier, session, seq) -> ()`: index of the relay log by session, for trimming.
pub(crate) const RELAY_SESSIONS: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("relay_sessions");
/// `supplier -> last sequence handed out`.
pub(crate) const SEQS: TableDefinition<&str, u64> = TableDefinition::new("seqs");
/// `(supplier, session) -> SessionValue`.
pub(crate) const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sessions");
/// `key -> KvValue`.
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// `(supplier, session, node key) -> node`.
pub(crate) const NODES: TableDefinition<(&str, &str, &[u8]), &[u8]> = TableDefinition::new("nodes");
/// `election -> LeaseValue`.
pub(crate) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// `name -> encoded value`: applied log id, last membership.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// One stored relay (the supplier and sequence are the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RelayValue {
    pub session_id: String,
    pub session_end_height: u64,
    #[serde(with = "serde_bytes")]
    pub relay_hash: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// One stored session record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionValue {
    pub state: String,
    /// One byte string (the same postcard bytes as a sequence of `u8`, in one copy).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub version: u64,
}

/// One stored KV value with its absolute expiry (ms since the epoch, leader clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KvValue {
    pub value: Vec<u8>,
    pub expires_ms: Option<u64>,
}

impl KvValue {
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| e > now_ms)
    }
}

/// The current lease holder of an election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub candidate: String,
    pub token: u64,
    pub expires_ms: u64,
    /// Raft term the lease was granted or last extended in; it is void in any later term.
    pub term: u64,
}

/// One election's lease state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseValue {
    pub holder: Option<Holder>,
    /// Term of the last grant and how many grants happened in it (for the token's low bits).
    pub last_grant_term: u64,
    pub grants_in_term: u64,
}

impl LeaseValue {
    /// The holder if its lease is live in `term` at `now_ms`.
    pub fn live_holder(&self, term: u64, now_ms: u64) -> Option<&Holder> {
        self.holder.as_ref().filter(|h| h.term == term && h.expires_ms > now_ms)
    }
}

type DbResult<T> = Result<T, redb::Error>;

fn enc<T: Serialize>(v: &T) -> DbResult<Vec<u8>> {
    encode(v).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

fn dec<'a, T: Deserialize<'a>>(b: &'a [u8]) -> DbResult<T> {
    decode(b).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

/// How long past its expiry (leader clock) a KV entry is kept before a write sweeps it: a node whose clock lags
/// the leader's by less than this never loses an entry it would still read as live.
pub(crate) const KV_SWEEP_GRACE_MS: u64 = 60_000;

/// Deletes expired KV entries near the just-written `key` ([`super::sweep`]); deterministic at `now_ms`.
fn sweep_kv(t: &mut redb::Table<&str, &[u8]>, key: &str, now_ms: u64) -> DbResult<()> {
    super::sweep::sweep_expired_after(t, key, now_ms, KV_SWEEP_GRACE_MS, |v| {
        decode::<KvValue>(v).ok().and_then(|v| v.expires_ms)
    })?;
    Ok(())
}

fn ttl_expiry(now_ms: u64, ttl_ms: Option<u64>) -> Option<u64> {
    ttl_ms.map(|t| now_ms.saturating_add(t))
}

/// A live KV value of `key` as a decimal integer: `Ok(None)` when absent or expired, `Err(message)` when it is
/// not an integer.
fn live_int(t: &redb::Table<&str, &[u8]>, key: &str, now_ms: u64) -> DbResult<Result<Option<(i64, KvValue)>, String>> {
    let Some(v) = t.get(key)? else {
        return Ok(Ok(None));
    };
    let v = dec::<KvValue>(v.value())?;
    if !v.live(now_ms) {
        return Ok(Ok(None));
    }
    Ok(
        match std::str::from_utf8(&v.value).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(n) => Ok(Some((n, v))),
            None => Err(format!("kv {key:?}: value is not an integer")),
        },
    )
}

/// [`Op::KvIncrementOnce`]: the counter and the writer's marker (`{key}:once:{writer}`, the storage contract's
/// `IncrementOnce::marker_key`) change together, or neither when the marker holds `seq` or later.
fn kv_increment_once(
    txn: &WriteTransaction,
    now_ms: u64,
    key: &str,
    writer: &str,
    seq: u64,
    delta: i64,
    ttl_ms: Option<u64>,
) -> DbResult<OpResult> {
    let mut t = txn.open_table(KV)?;
    let marker = storage::IncrementOnce {
        writer: writer.to_owned(),
        seq,
    }
    .marker_key(key);
    let last = match live_int(&t, &marker, now_ms)? {
        Ok(last) => last.map_or(0, |(n, _)| n),
        Err(e) => return Ok(OpResult::Error(e)),
    };
    let current = match live_int(&t, key, now_ms)? {
        Ok(current) => current,
        Err(e) => return Ok(OpResult::Error(e)),
    };
    if u64::try_from(last).is_ok_and(|last| last >= seq) {
        return Ok(OpResult::Int(current.map_or(0, |(n, _)| n)));
    }
    let (base, expires_ms) = match current {
        Some((n, v)) => (n, v.expires_ms),
        None => (0, ttl_expiry(now_ms, ttl_ms)),
    };
    let Some(n) = base.checked_add(delta) else {
        return Ok(OpResult::Error(format!("kv {key:?}: counter overflow")));
    };
    let counter = KvValue {
        value: n.to_string().into_bytes(),
        expires_ms,
    };
    t.insert(key, enc(&counter)?.as_slice())?;
    let applied = KvValue {
        value: seq.to_string().into_bytes(),
        expires_ms: ttl_expiry(now_ms, ttl_ms),
    };
    t.insert(marker.as_str(), enc(&applied)?.as_slice())?;
    sweep_kv(&mut t, key, now_ms)?;
    Ok(OpResult::Int(n))
}

/// Applies one op inside `txn`; `term` is the entry's raft term, `now_ms` its leader clock.
pub(crate) fn apply_op(txn: &WriteTransaction, term: u64, now_ms: u64, op: &Op) -> DbResult<OpResult> {
    Ok(match op {
        Op::Append(relays) => OpResult::Seqs(append(txn, relays)?),
        Op::Ack { supplier, seqs } => {
            let mut relays = txn.open_table(RELAYS)?;
            let mut by_session = txn.open_table(RELAY_SESSIONS)?;
            let mut n = 0;
            for seq in seqs {
                if let Some(v) = relays.remove((supplier.as_str(), *seq))? {
                    let v: RelayValue = dec(v.value())?;
                    by_session.remove((supplier.as_str(), v.session_id.as_str(), *seq))?;
                    n += 1;
                }
            }
            OpResult::Count(n)
        }
        Op::TrimSession { supplier, session_id } => {
            let mut relays = txn.open_table(RELAYS)?;
            let mut by_session = txn.open_table(RELAY_SESSIONS)?;
            let lo = (supplier.as_str(), session_id.as_str(), 0u64);
            let hi = (supplier.as_str(), session_id.as_str(), u64::MAX);
            let mut seqs = Vec::new();
            for item in by_session.range(lo..=hi)? {
                seqs.push(item?.0.value().2);
            }
            by_session.retain_in(lo..=hi, |_, _| false)?;
            for seq in &seqs {
                relays.remove((supplier.as_str(), *seq))?;
            }
            OpResult::Count(seqs.len() as u64)
        }
        Op::SessionPut {
            supplier,
            session_id,
            state,
            data,
            expected_version,
        } => {
            let mut t = txn.open_table(SESSIONS)?;
            let key = (supplier.as_str(), session_id.as_str());
            let current = match t.get(key)? {
                Some(v) => dec::<SessionValue>(v.value())?.version,
                None => 0,
            };
            if current != *expected_version {
                OpResult::Conflict(format!(
                    "session {supplier}/{session_id}: version {current}, expected {expected_version}"
                ))
            } else {
                let version = current + 1;
                let v = SessionValue {
                    state: state.clone(),
                    data: data.clone(),
                    version,
                };
                t.insert(key, enc(&v)?.as_slice())?;
                OpResult::Version(version)
            }
        }
        Op::SessionDelete {
            supplier,
            session_id,
            expected_version,
        } => {
            let mut t = txn.open_table(SESSIONS)?;
            let key = (supplier.as_str(), session_id.as_str());
            let current = match t.get(key)? {
                Some(v) => Some(dec::<SessionValue>(v.value())?.version),
                None => None,
            };
            match (current, expected_version) {
                (Some(c), Some(e)) if c != *e => {
                    OpResult::Conflict(format!("session {supplier}/{session_id}: version {c}, expected {e}"))
                }
                (None, Some(e)) => {
                    OpResult::Conflict(format!("session {supplier}/{session_id}: absent, expected version {e}"))
                }
                (Some(_), _) => {
                    t.remove(key)?;
                    OpResult::Bool(true)
                }
                (None, None) => OpResult::Bool(false),
            }
        }
        Op::KvSet { key, value, ttl_ms } => {
            let mut t = txn.open_table(KV)?;
            let v = KvValue {
                value: value.clone(),
                expires_ms: ttl_expiry(now_ms, *ttl_ms),
            };
            t.insert(key.as_str(), enc(&v)?.as_slice())?;
            sweep_kv(&mut t, key, now_ms)?;
            OpResult::Done
        }
        Op::KvSetIfAbsent { key, value, ttl_ms } => {
            let mut t = txn.open_table(KV)?;
            let live = match t.get(key.as_str())? {
                Some(v) => dec::<KvValue>(v.value())?.live(now_ms),
                None => false,
            };
            if live {
                OpResult::Bool(false)
            } else {
                let v = KvValue {
                    value: value.clone(),
                    expires_ms: ttl_expiry(now_ms, *ttl_ms),
                };
                t.insert(key.as_str(), enc(&v)?.as_slice())?;
                sweep_kv(&mut t, key, now_ms)?;
                OpResult::Bool(true)
            }
        }
        Op::KvIncrement { key, delta, ttl_ms } => {
            let mut t = txn.open_table(KV)?;
            let current = match t.get(key.as_str())? {
                Some(v) => Some(dec::<KvValue>(v.value())?).filter(|v| v.live(now_ms)),
                None => None,
            };
            let (base, expires_ms) = match current {
                Some(v) => {
                    let parsed = std::str::from_utf8(&v.value).ok().and_then(|s| s.parse::<i64>().ok());
                    match parsed {
                        Some(n) => (n, v.expires_ms),
                        None => {
                            return Ok(OpResult::Error(format!("kv {key:?}: value is not an integer")));
                        }
                    }
                }
                None => (0, ttl_expiry(now_ms, *ttl_ms)),
            };
            let Some(n) = base.checked_add(*delta) else {
                return Ok(OpResult::Error(format!("kv {key:?}: counter overflow")));
            };
            let v = KvValue {
                value: n.to_string().into_bytes(),
                expires_ms,
            };
            t.insert(key.as_str(), enc(&v)?.as_slice())?;
            sweep_kv(&mut t, key, now_ms)?;
            OpResult::Int(n)
        }
        Op::KvIncrementOnce {
            key,
            writer,
            seq,
            delta,
            ttl_ms,
        } => kv_increment_once(txn, now_ms, key, writer, *seq, *delta, *ttl_ms)?,
        Op::KvDelete { key } => {
            let mut t = txn.open_table(KV)?;
            let removed = t.remove(key.as_str())?;
            let live = match removed {
                Some(v) => dec::<KvValue>(v.value())?.live(now_ms),
                None => false,
            };
            OpResult::Bool(live)
        }
        Op::TrieBatch {
            supplier,
            session_id,
            puts,
            deletes,
        } => {
            let mut t = txn.open_table(NODES)?;
            for k in deletes {
                t.remove((supplier.as_str(), session_id.as_str(), k.as_slice()))?;
            }
            for (k, v) in puts {
                t.insert((supplier.as_str(), session_id.as_str(), k.as_slice()), v.as_slice())?;
            }
            OpResult::Done
        }
        Op::TrieDeleteNamespace { supplier, session_id } => {
            let mut t = txn.open_table(NODES)?;
            let lo: (&str, &str, &[u8]) = (supplier.as_str(), session_id.as_str(), &[]);
            // Keys of one namespace share (supplier, session); the next session string bounds the range.
            let mut next = session_id.clone();
            next.push('\0');
            let hi: (&str, &str, &[u8]) = (supplier.as_str(), next.as_str(), &[]);
            t.retain_in(lo..hi, |_, _| false)?;
            OpResult::Done
        }
        Op::Campaign {
            election,
            candidate,
            ttl_ms,
        } => {
            let mut t = txn.open_table(LEASES)?;
            let mut lease: LeaseValue = match t.get(election.as_str())? {
                Some(v) => dec(v.value())?,
                None => LeaseValue::default(),
            };
            let expires_ms = now_ms.saturating_add(*ttl_ms);
            let result = match lease.live_holder(term, now_ms).cloned() {
                Some(h) if h.candidate == *candidate => {
                    lease.holder = Some(Holder { expires_ms, ..h });
                    Some(lease.holder.as_ref().map_or(0, |h| h.token))
                }
                Some(_) => None,
                None => {
                    if lease.last_grant_term == term {
                        lease.grants_in_term += 1;
                    } else {
                        lease.last_grant_term = term;
                        lease.grants_in_term = 1;
                    }
                    let token = lease_token(term, lease.grants_in_term);
                    lease.holder = Some(Holder {
                        candidate: candidate.clone(),
                        token,
                        expires_ms,
                        term,
                    });
                    Some(token)
                }
            };
            t.insert(election.as_str(), enc(&lease)?.as_slice())?;
            OpResult::Token(result)
        }
        Op::Renew {
            election,
            candidate,
            token,
            ttl_ms,
        } => {
            let mut t = txn.open_table(LEASES)?;
            let mut lease: LeaseValue = match t.get(election.as_str())? {
                Some(v) => dec(v.value())?,
                None => return Ok(OpResult::Bool(false)),
            };
            let held = lease
                .live_holder(term, now_ms)
                .is_some_and(|h| h.candidate == *candidate && h.token == *token);
            if held && let Some(h) = lease.holder.as_mut() {
                h.expires_ms = now_ms.saturating_add(*ttl_ms);
                t.insert(election.as_str(), enc(&lease)?.as_slice())?;
            }
            OpResult::Bool(held)
        }
        Op::Resign {
            election,
            candidate,
            token,
        } => {
            let mut t = txn.open_table(LEASES)?;
            let mut lease: LeaseValue = match t.get(election.as_str())? {
                Some(v) => dec(v.value())?,
                None => return Ok(OpResult::Bool(false)),
            };
            let held = lease
                .live_holder(term, now_ms)
                .is_some_and(|h| h.candidate == *candidate && h.token == *token);
            if held {
                lease.holder = None;
                t.insert(election.as_str(), enc(&lease)?.as_slice())?;
            }
            OpResult::Bool(held)
        }
        Op::WriteSet(ops) => write_set(txn, term, now_ms, ops)?,
        Op::Fenced { fence, op } => {
            let lease: Option<LeaseValue> = match txn.open_table(LEASES)?.get(fence.election.as_str())? {
                Some(v) => Some(dec(v.value())?),
                None => None,
            };
            let holder = lease.as_ref().and_then(|l| l.live_holder(term, now_ms));
            if holder.is_some_and(|h| h.candidate == fence.candidate && h.token == fence.token) {
                apply_op(txn, term, now_ms, op)?
            } else {
                let now = match holder {
                    Some(h) => format!("held by {:?} with token {}", h.candidate, h.token),
                    None => format!("not held in term {term}"),
                };
                OpResult::Fenced(format!(
                    "write fenced off: election {:?} is {now}, not by {:?} with token {}",
                    fence.election, fence.candidate, fence.token
                ))
            }
        }
    })
}

/// [`Op::WriteSet`]: every check before the first write, so a refused set writes nothing.
fn write_set(txn: &WriteTransaction, term: u64, now_ms: u64, ops: &[Op]) -> DbResult<OpResult> {
    {
        let t = txn.open_table(SESSIONS)?;
        let mut seen = std::collections::HashSet::new();
        for op in ops {
            match op {
                Op::SessionPut {
                    supplier,
                    session_id,
                    expected_version,
                    ..
                } => {
                    if !seen.insert((supplier.as_str(), session_id.as_str())) {
                        return Ok(OpResult::Error(format!("write set puts {supplier}/{session_id} twice")));
                    }
                    let current = match t.get((supplier.as_str(), session_id.as_str()))? {
                        Some(v) => dec::<SessionValue>(v.value())?.version,
                        None => 0,
                    };
                    if current != *expected_version {
                        return Ok(OpResult::Conflict(format!(
                            "session {supplier}/{session_id}: version {current}, expected {expected_version}"
                        )));
                    }
                }
                Op::TrieBatch { .. } | Op::Ack { .. } => {}
                _ => {
                    return Ok(OpResult::Error(
                        "write set with an op other than a trie batch, record or ack".into(),
                    ));
                }
            }
        }
    }
    let (mut versions, mut acked) = (Vec::new(), 0);
    for op in ops {
        match apply_op(txn, term, now_ms, op)? {
            OpResult::Version(v) => versions.push(v),
            OpResult::Count(n) => acked += n,
            OpResult::Done => {}
            // Unreachable: versions were checked above and each record is put once.
            other => {
                return Err(redb::Error::Corrupted(format!(
                    "write set op failed after its checks: {other:?}"
                )));
            }
        }
    }
    Ok(OpResult::WriteSet { versions, acked })
}

fn append(txn: &WriteTransaction, relays: &[RelayRecord]) -> DbResult<Vec<u64>> {
    let mut seqs_t = txn.open_table(SEQS)?;
    let mut relays_t = txn.open_table(RELAYS)?;
    let mut by_session = txn.open_table(RELAY_SESSIONS)?;
    let mut next: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(relays.len());
    for r in relays {
        let slot = match next.get_mut(r.supplier.as_str()) {
            Some(s) => s,
            None => {
                let last = seqs_t.get(r.supplier.as_str())?.map_or(0, |g| g.value());
                next.entry(r.supplier.as_str()).or_insert(last)
            }
        };
        *slot += 1;
        let seq = *slot;
        let v = RelayValue {
            session_id: r.session_id.clone(),
            session_end_height: r.session_end_height,
            relay_hash: r.relay_hash.clone(),
            payload: r.payload.clone(),
        };
        relays_t.insert((r.supplier.as_str(), seq), enc(&v)?.as_slice())?;
        by_session.insert((r.supplier.as_str(), r.session_id.as_str(), seq), ())?;
        out.push(seq);
    }
    for (supplier, last) in next {
        seqs_t.insert(supplier, last)?;
    }
    Ok(out)
}
