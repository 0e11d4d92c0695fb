//! Key-value checks: set, set-if-absent, increment, delete, TTL expiry.

use std::time::Duration;

use super::{Fixture, poll_until};
use crate::StorageError;

const LONG: Duration = Duration::from_secs(600);

/// Plain operations without expiry.
pub async fn kv_basics(f: Fixture) {
    let kv = &f.storage.kv;
    assert_eq!(kv.get("k").await.unwrap(), None);
    kv.set("k", b"v1".to_vec(), None).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    kv.set("k", b"v2".to_vec(), Some(LONG)).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(!kv.set_if_absent("k", b"v3".to_vec(), None).await.unwrap());
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(kv.set_if_absent("lock", b"1".to_vec(), Some(LONG)).await.unwrap());
    assert!(!kv.set_if_absent("lock", b"2".to_vec(), Some(LONG)).await.unwrap());

    assert_eq!(kv.increment("meter", 5, None).await.unwrap(), 5);
    assert_eq!(kv.increment("meter", -2, None).await.unwrap(), 3);
    assert_eq!(kv.get("meter").await.unwrap().as_deref(), Some(&b"3"[..]));
    kv.set("meter2", b"40".to_vec(), None).await.unwrap();
    assert_eq!(kv.increment("meter2", 2, None).await.unwrap(), 42);
    let err = kv.increment("k", 1, None).await.unwrap_err();
    assert!(matches!(err, StorageError::Backend(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(
        kv.get("k").await.unwrap().as_deref(),
        Some(&b"v2"[..]),
        "failed increment changes nothing"
    );

    assert!(kv.delete("k").await.unwrap());
    assert!(!kv.delete("k").await.unwrap());
    assert_eq!(kv.get("k").await.unwrap(), None);
    assert!(kv.set_if_absent("k", b"fresh".to_vec(), None).await.unwrap());
    let empty = String::new();
    kv.set(&empty, Vec::new(), None).await.unwrap();
    assert_eq!(
        kv.get(&empty).await.unwrap().as_deref(),
        Some(&b""[..]),
        "empty value is a value"
    );
}

/// Short TTLs expire (polled with a deadline), long ones do not; expired keys behave as absent.
pub async fn kv_ttl(f: Fixture) {
    let kv = f.storage.kv.clone();
    let short = Duration::from_millis(150);
    kv.set("long", b"l".to_vec(), Some(LONG)).await.unwrap();
    kv.set("forever", b"f".to_vec(), None).await.unwrap();
    kv.set("short", b"s".to_vec(), Some(short)).await.unwrap();
    assert!(kv.set_if_absent("dedup", b"1".to_vec(), Some(short)).await.unwrap());
    assert_eq!(kv.increment("window", 1, Some(short)).await.unwrap(), 1);
    for key in ["short", "dedup", "window"] {
        let kv = kv.clone();
        poll_until(&format!("{key} expires"), || {
            let kv = kv.clone();
            async move { kv.get(key).await.unwrap().is_none().then_some(()) }
        })
        .await;
    }
    assert_eq!(kv.get("long").await.unwrap().as_deref(), Some(&b"l"[..]));
    assert_eq!(kv.get("forever").await.unwrap().as_deref(), Some(&b"f"[..]));
    assert!(
        kv.set_if_absent("dedup", b"2".to_vec(), Some(LONG)).await.unwrap(),
        "expired key is absent"
    );
    assert_eq!(kv.get("dedup").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(
        kv.increment("window", 1, Some(LONG)).await.unwrap(),
        1,
        "expired counter restarts"
    );
    assert!(
        !kv.delete("short").await.unwrap(),
        "deleting an expired key reports no live value"
    );
    // A set without TTL clears an earlier TTL.
    kv.set("sticky", b"1".to_vec(), Some(short)).await.unwrap();
    kv.set("sticky", b"2".to_vec(), None).await.unwrap();
    kv.set("probe", b"p".to_vec(), Some(short)).await.unwrap();
    let kv2 = kv.clone();
    poll_until("probe expires", || {
        let kv = kv2.clone();
        async move { kv.get("probe").await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert_eq!(kv.get("sticky").await.unwrap().as_deref(), Some(&b"2"[..]));
}
