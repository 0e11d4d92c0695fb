//! Decoding the Redis replies of the relay log's stream commands (`XREADGROUP`, `XPENDING`, `XRANGE` entries) into
//! entry ids and relays; a reply of an unexpected shape is [`StorageError::Corrupt`], never a panic.

use super::*;

pub(super) fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(super) fn as_str(v: &Value) -> Option<&str> {
    as_bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

pub(super) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => as_str(other).and_then(|s| s.parse().ok()),
    }
}

pub(super) fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("redis relay stream: unexpected {what}"))
}

pub(super) fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Array(items) => items.chunks_exact(2).map(|c| (&c[0], &c[1])).collect(),
        Value::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    }
}

/// One stream entry `[id, fields]`; `None` relay when the entry was deleted (nil fields).
pub(super) fn parse_entry(supplier: &str, v: &Value) -> Result<(EntryId, Option<MinedRelay>), StorageError> {
    let Value::Array(parts) = v else {
        return Err(corrupt("entry shape"));
    };
    let (Some(id), Some(fields)) = (parts.first(), parts.get(1)) else {
        return Err(corrupt("entry length"));
    };
    let id: EntryId = as_str(id).ok_or_else(|| corrupt("entry id"))?.parse()?;
    if matches!(fields, Value::Nil) {
        return Ok((id, None));
    }
    let mut relay = MinedRelay {
        supplier: supplier.to_owned(),
        ..MinedRelay::default()
    };
    for (k, val) in pairs(fields) {
        let val_bytes = as_bytes(val).unwrap_or_default();
        match as_bytes(k) {
            Some(b"data") => relay.payload = val_bytes.to_vec(),
            Some(b"session") => relay.session_id = String::from_utf8_lossy(val_bytes).into_owned(),
            Some(b"hash") => relay.relay_hash = val_bytes.to_vec(),
            Some(b"end") => relay.session_end_height = as_u64(val).unwrap_or(0),
            _ => {}
        }
    }
    Ok((id, Some(relay)))
}

pub(super) fn parse_entries(supplier: &str, list: &Value) -> Result<Vec<(EntryId, Option<MinedRelay>)>, StorageError> {
    match list {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|e| parse_entry(supplier, e)).collect(),
        _ => Err(corrupt("entry list")),
    }
}

/// The entries of an `XREADGROUP` reply for one stream (nil = nothing).
pub(super) fn parse_read(supplier: &str, reply: &Value) -> Result<Vec<(EntryId, Option<MinedRelay>)>, StorageError> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                let Value::Array(kv) = s else {
                    return Err(corrupt("stream reply"));
                };
                if let Some(list) = kv.get(1) {
                    out.extend(parse_entries(supplier, list)?);
                }
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, list) in streams {
                out.extend(parse_entries(supplier, list)?);
            }
            Ok(out)
        }
        _ => Err(corrupt("read reply")),
    }
}

/// `XPENDING` extended rows: `(id, consumer, delivery count)`.
pub(super) fn parse_pending(reply: &Value) -> Result<Vec<(EntryId, String, u64)>, StorageError> {
    let Value::Array(rows) = reply else {
        return Ok(Vec::new());
    };
    rows.iter()
        .map(|row| {
            let Value::Array(f) = row else {
                return Err(corrupt("pending row"));
            };
            let id: EntryId = f
                .first()
                .and_then(as_str)
                .ok_or_else(|| corrupt("pending id"))?
                .parse()?;
            let consumer = f.get(1).and_then(as_str).unwrap_or_default().to_owned();
            let count = f.get(3).and_then(as_u64).unwrap_or(1);
            Ok((id, consumer, count))
        })
        .collect()
}

/// An `XINFO CONSUMERS` reply: one map (RESP3) or flat field list (RESP2) per consumer.
pub(super) fn parse_consumers(reply: &Value) -> Result<Vec<GroupConsumer>, StorageError> {
    let Value::Array(rows) = reply else {
        return Err(corrupt("XINFO CONSUMERS reply"));
    };
    rows.iter()
        .map(|row| {
            let (mut name, mut pending, mut idle_ms) = (None, 0, 0);
            for (k, v) in pairs(row) {
                match as_bytes(k) {
                    Some(b"name") => name = as_str(v).map(str::to_owned),
                    Some(b"pending") => pending = as_u64(v).unwrap_or(0),
                    Some(b"idle") => idle_ms = as_u64(v).unwrap_or(0),
                    _ => {}
                }
            }
            let name = name.ok_or_else(|| corrupt("XINFO CONSUMERS row"))?;
            Ok(GroupConsumer { name, pending, idle_ms })
        })
        .collect()
}

/// The group `group`'s `entries-read` in an `XINFO GROUPS` reply (Redis ≥ 7; `None` when the server does not
/// report it, reports it unknown (nil), or the group is not listed).
pub(super) fn parse_entries_read(reply: &Value, group: &str) -> Option<u64> {
    let Value::Array(rows) = reply else {
        return None;
    };
    rows.iter().find_map(|row| {
        let (mut name, mut read) = (None, None);
        for (k, v) in pairs(row) {
            match as_bytes(k) {
                Some(b"name") => name = as_str(v),
                Some(b"entries-read") => read = as_u64(v),
                _ => {}
            }
        }
        (name == Some(group)).then_some(read).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn xinfo_consumers_resp2_and_resp3() {
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("miner-gohost-42"),
            bulk("pending"),
            Value::Int(2),
            bulk("idle"),
            Value::Int(1500),
            bulk("inactive"),
            Value::Int(-1),
        ])]);
        let resp3 = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("miner")),
            (bulk("pending"), Value::Int(0)),
            (bulk("idle"), Value::Int(7)),
        ])]);
        assert_eq!(
            parse_consumers(&resp2).unwrap(),
            vec![GroupConsumer {
                name: "miner-gohost-42".into(),
                pending: 2,
                idle_ms: 1500
            }]
        );
        assert_eq!(parse_consumers(&resp3).unwrap()[0].name, "miner");
        assert!(parse_consumers(&Value::Array(vec![])).unwrap().is_empty());
        assert!(parse_consumers(&Value::Int(1)).is_err());
        assert!(parse_consumers(&Value::Array(vec![Value::Array(vec![bulk("pending"), Value::Int(1)])])).is_err());
    }
}
