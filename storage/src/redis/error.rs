//! Mapping of `redis::RedisError` to [`StorageError`].
//!
//! The crate has no error kind for Redis' `OOM command not allowed when used memory > 'maxmemory'`: the
//! server's error code is `OOM` (`err.code() == Some("OOM")`). Inside a pipeline or a `MULTI`/`EXEC`
//! transaction the code sits in the per-command server errors (`into_server_errors`), and a Lua script that
//! hit it reports it in its message, so all three places are checked. OOM maps to
//! [`StorageError::OutOfMemory`] (retryable: writes resume once memory is freed); connection, timeout and
//! transient server states (`LOADING`, `BUSY`, `TRYAGAIN`, `MASTERDOWN`, `READONLY`, `CLUSTERDOWN`) map to
//! [`StorageError::Unavailable`]; the `FENCED` error of a fenced script to [`StorageError::Fenced`]; the
//! `RELAYMEM` error of a relay append above the relay memory threshold (`log` module) to
//! [`StorageError::RelayMemoryThreshold`]; everything else to [`StorageError::Backend`].

use redis::RedisError;

use crate::StorageError;

const TRANSIENT_CODES: &[&str] = &["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN"];

/// Whether `e` is Redis refusing a write because `maxmemory` is reached.
pub fn is_oom(e: &RedisError) -> bool {
    if e.code() == Some("OOM") {
        return true;
    }
    if let Some(items) = e.clone().into_server_errors()
        && items.iter().any(|(_, se)| se.code() == "OOM")
    {
        return true;
    }
    e.to_string().contains("OOM command not allowed")
}

fn server_codes(e: &RedisError) -> Vec<String> {
    let mut codes: Vec<String> = e.code().map(str::to_owned).into_iter().collect();
    if let Some(items) = e.clone().into_server_errors() {
        codes.extend(items.iter().map(|(_, se)| se.code().to_owned()));
    }
    codes
}

/// Whether `e` carries the server error code `code` (directly or inside a pipeline/transaction).
pub fn has_code(e: &RedisError, code: &str) -> bool {
    server_codes(e).iter().any(|c| c == code)
}

/// Maps a Redis error to the storage error; `what` names the operation for the message.
pub fn map(what: &str, e: RedisError) -> StorageError {
    let msg = format!("redis {what}: {e}");
    if has_code(&e, "FENCED") || e.to_string().contains("FENCED lease") {
        return StorageError::Fenced(msg);
    }
    if has_code(&e, "RELAYMEM") || e.to_string().contains("RELAYMEM used_memory") {
        return StorageError::RelayMemoryThreshold(msg);
    }
    if is_oom(&e) {
        return StorageError::OutOfMemory(msg);
    }
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || server_codes(&e).iter().any(|c| TRANSIENT_CODES.contains(&c.as_str()))
    {
        return StorageError::Unavailable(msg);
    }
    StorageError::Backend(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind;

    #[test]
    fn io_errors_are_unavailable() {
        let e = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert!(matches!(map("x", e), StorageError::Unavailable(_)));
        let e = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        let mapped = map("x", e);
        assert!(matches!(mapped, StorageError::Unavailable(_)) && mapped.is_retryable());
    }

    #[test]
    fn client_errors_are_backend() {
        let e = RedisError::from((ErrorKind::UnexpectedReturnType, "bad type"));
        let mapped = map("x", e);
        assert!(matches!(mapped, StorageError::Backend(_)), "{mapped:?}");
        assert!(!mapped.is_retryable());
    }
}
