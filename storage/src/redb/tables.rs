//! redb table definitions, value encodings and error mapping of the embedded backend.
//!
//! Keys are fixed width where the data allows: relay log entries are keyed `(supplier id u32, sequence u64)`
//! and indexed by `(supplier id, session id, sequence)`, trie nodes `(namespace id u64, node key)`. Strings (supplier, session, election) are mapped once to ids in
//! small lookup tables. Values are length-prefixed binary; decoding is bounds-checked and a malformed value is
//! [`StorageError::Corrupt`].

use redb::TableDefinition;

use crate::StorageError;

/// Supplier operator address → supplier id.
pub(crate) const SUPPLIERS: TableDefinition<&str, u32> = TableDefinition::new("suppliers");
/// `(supplier id, sequence)` → encoded [`LogValue`].
pub(crate) const LOG: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("relay_log");
/// `(supplier id, session id, sequence)` → nothing: [`LOG`] indexed by session, written in the same
/// transactions as [`LOG`] (module `log`), so trimming a session reads and deletes only its own entries.
pub(crate) const LOG_SESSIONS: TableDefinition<(u32, &[u8], u64), ()> = TableDefinition::new("relay_log_sessions");
/// `"{supplier}\n{session}"` → namespace id.
pub(crate) const NAMESPACES: TableDefinition<&str, u64> = TableDefinition::new("trie_namespaces");
/// `(namespace id, node key)` → node bytes.
pub(crate) const NODES: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("trie_nodes");
/// `(supplier, session)` → encoded session record (version, state, data).
pub(crate) const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sessions");
/// Key → `expiry unix ms (0 = none) ++ value`.
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Counters: `next_supplier`, `next_namespace`, `seq:{supplier id}`, `lease:{election}`; and
/// `log_sessions_index_version`, the format of [`LOG_SESSIONS`] (module `log`: the index is rebuilt at open without it);
/// `schema_version`, the format of the whole database (module `schema`: a newer one is refused at open).
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Maps any redb error to the contract error. A full disk is `OutOfMemory` (retryable once space is freed).
pub(crate) fn db_err(e: impl Into<redb::Error>) -> StorageError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            StorageError::OutOfMemory(format!("redb: disk full: {io}"))
        }
        redb::Error::Corrupted(msg) => StorageError::Corrupt(format!("redb: {msg}")),
        other => StorageError::Backend(format!("redb: {other}")),
    }
}

/// Namespace key of a trie namespace (a newline cannot occur in bech32 addresses or hex session ids; it is
/// still unambiguous for any input because the supplier part is length-prefixed).
pub(crate) fn namespace_key(supplier: &str, session_id: &str) -> String {
    format!("{}:{supplier}\n{session_id}", supplier.len())
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self) -> StorageError {
        StorageError::Corrupt(format!("truncated {} value", self.what))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.buf.len() < n {
            return Err(self.corrupt());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, StorageError> {
        let b = self.take(8)?;
        let arr: [u8; 8] = b.try_into().map_err(|_| self.corrupt())?;
        Ok(u64::from_be_bytes(arr))
    }
    fn bytes(&mut self) -> Result<&'a [u8], StorageError> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| self.corrupt())?;
        self.take(u32::from_be_bytes(arr) as usize)
    }
    fn string(&mut self) -> Result<String, StorageError> {
        let what = self.what;
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| StorageError::Corrupt(format!("non-UTF-8 string in {what} value")))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), StorageError> {
    let len = u32::try_from(b.len()).map_err(|_| StorageError::Backend("field longer than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// A relay log value (the supplier is in the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogValue {
    pub session_id: String,
    pub session_end_height: u64,
    pub relay_hash: Vec<u8>,
    pub payload: Vec<u8>,
}

impl LogValue {
    pub fn encode(session_id: &str, end: u64, hash: &[u8], payload: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::with_capacity(16 + session_id.len() + hash.len() + payload.len());
        out.extend_from_slice(&end.to_be_bytes());
        put_bytes(&mut out, session_id.as_bytes())?;
        put_bytes(&mut out, hash)?;
        out.extend_from_slice(payload);
        Ok(out)
    }

    pub fn decode(buf: &[u8]) -> Result<Self, StorageError> {
        let mut r = Reader { buf, what: "relay log" };
        let session_end_height = r.u64()?;
        let session_id = r.string()?;
        let relay_hash = r.bytes()?.to_vec();
        Ok(Self {
            session_id,
            session_end_height,
            relay_hash,
            payload: r.buf.to_vec(),
        })
    }

    /// Only the relay hash (for listing a session's entries without copying payloads).
    pub fn relay_hash_of(buf: &[u8]) -> Result<&[u8], StorageError> {
        let mut r = Reader { buf, what: "relay log" };
        r.u64()?;
        r.bytes()?;
        r.bytes()
    }

    /// Only the session id (for trimming without copying payloads).
    pub fn session_of(buf: &[u8]) -> Result<&[u8], StorageError> {
        let mut r = Reader { buf, what: "relay log" };
        r.u64()?;
        r.bytes()
    }
}

/// Encodes a session record value.
pub(crate) fn encode_session(version: u64, state: &str, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(12 + state.len() + data.len());
    out.extend_from_slice(&version.to_be_bytes());
    put_bytes(&mut out, state.as_bytes())?;
    out.extend_from_slice(data);
    Ok(out)
}

/// Decodes a session record value into `(version, state, data)`.
pub(crate) fn decode_session(buf: &[u8]) -> Result<(u64, String, Vec<u8>), StorageError> {
    let mut r = Reader {
        buf,
        what: "session record",
    };
    let version = r.u64()?;
    let state = r.string()?;
    Ok((version, state, r.buf.to_vec()))
}

/// Encodes a KV value with its expiry (unix ms, 0 = none).
pub(crate) fn encode_kv(expiry_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expiry_ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a KV value into `(expiry unix ms, value)`.
pub(crate) fn decode_kv(buf: &[u8]) -> Result<(u64, &[u8]), StorageError> {
    let mut r = Reader { buf, what: "kv" };
    let exp = r.u64()?;
    Ok((exp, r.buf))
}

/// Whether a KV expiry (unix ms, 0 = none) is still live at `now_ms`.
pub(crate) fn kv_live(expiry_ms: u64, now_ms: u64) -> bool {
    expiry_ms == 0 || expiry_ms > now_ms
}

/// Wall-clock unix milliseconds (KV expiry must survive restarts, so it is not a monotonic instant).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn log_value_round_trip() {
        let enc = LogValue::encode("sess", 42, &[1, 2, 3], b"payload").unwrap();
        let dec = LogValue::decode(&enc).unwrap();
        assert_eq!(
            dec,
            LogValue {
                session_id: "sess".into(),
                session_end_height: 42,
                relay_hash: vec![1, 2, 3],
                payload: b"payload".to_vec()
            }
        );
        assert_eq!(LogValue::session_of(&enc).unwrap(), b"sess");
    }

    #[test]
    fn session_and_kv_round_trip() {
        let enc = encode_session(7, "claimed", b"body").unwrap();
        assert_eq!(
            decode_session(&enc).unwrap(),
            (7, "claimed".to_owned(), b"body".to_vec())
        );
        let kv = encode_kv(99, b"v");
        assert_eq!(decode_kv(&kv).unwrap(), (99, &b"v"[..]));
        assert!(kv_live(0, 5) && kv_live(6, 5) && !kv_live(5, 5));
    }

    #[test]
    fn namespace_keys_are_unambiguous() {
        assert_ne!(namespace_key("a\nb", "c"), namespace_key("a", "b\nc"));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = LogValue::decode(&buf);
            let _ = LogValue::session_of(&buf);
            let _ = decode_session(&buf);
            let _ = decode_kv(&buf);
        }

        #[test]
        fn truncated_log_values_are_corrupt(session in ".{0,8}", hash in proptest::collection::vec(any::<u8>(), 0..40), cut in 0usize..20) {
            let enc = LogValue::encode(&session, 1, &hash, b"").unwrap();
            let header = 8 + 4 + session.len() + 4 + hash.len();
            let cut = cut.min(header);
            if cut > 0 {
                let r = LogValue::decode(&enc[..header - cut]);
                prop_assert!(matches!(r, Err(StorageError::Corrupt(_))));
            }
        }
    }
}
