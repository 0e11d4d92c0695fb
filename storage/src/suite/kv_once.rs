//! Checks of [`crate::KvStore::increment_once`]: a retried operation is applied once and answers the total; other
//! operations (a later sequence, another writer, another key) add; a late copy of an older operation is a no-op;
//! a failed one writes neither counter nor marker; the marker lives with the operation's TTL; a fenced view
//! refuses it.

use std::time::Duration;

use super::{Fixture, poll_until};
use crate::StorageError;
use crate::contract::{Fence, IncrementOnce, KvStore};

const LONG: Duration = Duration::from_secs(600);

fn op(writer: &str, seq: u64) -> IncrementOnce {
    IncrementOnce {
        writer: writer.into(),
        seq,
    }
}

/// `increment_once`, asked again while the backend answers `Conflict` (it cannot apply it at most once right
/// now and wrote nothing: raft until every member advertised `kv-once` in the current term, e.g. right after
/// an election), until [`super::DEADLINE`].
pub async fn once(
    kv: &dyn KvStore,
    key: &str,
    op: &IncrementOnce,
    delta: i64,
    ttl: Option<Duration>,
) -> Result<i64, StorageError> {
    poll_until("increment_once without Conflict", || async {
        match kv.increment_once(key, op, delta, ttl).await {
            Err(StorageError::Conflict(_)) => None,
            r => Some(r),
        }
    })
    .await
}

/// Same operation twice → applied once, the total both times; later sequences, other writers and other keys
/// add; a late copy of an older sequence adds nothing; plain increments mix; a non-integer counter fails and
/// writes no marker.
pub async fn kv_increment_once(f: Fixture) {
    let kv = f.storage.kv.as_ref();
    let ttl = Some(LONG);
    assert_eq!(once(kv, "c", &op("w1", 1), 5, ttl).await.unwrap(), 5);
    assert_eq!(
        once(kv, "c", &op("w1", 1), 5, ttl).await.unwrap(),
        5,
        "a retry of an applied operation answers the total without adding"
    );
    assert_eq!(kv.get("c").await.unwrap().as_deref(), Some(&b"5"[..]));
    assert_eq!(
        once(kv, "c", &op("w1", 2), 3, ttl).await.unwrap(),
        8,
        "the next sequence adds"
    );
    assert_eq!(
        once(kv, "c", &op("w1", 1), 5, ttl).await.unwrap(),
        8,
        "a late copy of an older operation adds nothing"
    );
    assert_eq!(
        once(kv, "c", &op("w2", 2), 4, ttl).await.unwrap(),
        12,
        "another writer's operation adds"
    );
    assert_eq!(
        once(kv, "other", &op("w1", 2), 1, ttl).await.unwrap(),
        1,
        "the same operation on another key adds"
    );
    assert_eq!(kv.increment("c", 10, None).await.unwrap(), 22);
    assert_eq!(
        once(kv, "c", &op("w1", 2), 3, ttl).await.unwrap(),
        22,
        "an applied operation answers the total with the plain increments"
    );
    assert_eq!(
        kv.get(&op("w1", 2).marker_key("c")).await.unwrap().as_deref(),
        Some(&b"2"[..]),
        "the writer's last sequence is the KV key marker_key"
    );

    kv.set("text", b"x".to_vec(), None).await.unwrap();
    let err = once(kv, "text", &op("w1", 3), 1, ttl).await.unwrap_err();
    assert!(matches!(err, StorageError::Backend(_)), "{err:?}");
    assert_eq!(kv.get("text").await.unwrap().as_deref(), Some(&b"x"[..]));
    assert_eq!(
        kv.get(&op("w1", 3).marker_key("text")).await.unwrap(),
        None,
        "a failed operation records no marker"
    );
    assert_eq!(
        once(kv, "c", &op("w1", 3), 1, ttl).await.unwrap(),
        23,
        "sequence 3 was not taken by the failed operation on another key"
    );

    // A fenced view with a fence nobody holds refuses it and changes nothing.
    let view = f.storage.fenced(Fence::new("kv-once", "nobody", 7));
    match once(view.kv.as_ref(), "c", &op("w1", 4), 1, ttl).await {
        Err(StorageError::Fenced(_)) => {}
        other => panic!("fenced increment_once: expected Fenced, got {other:?}"),
    }
    assert_eq!(kv.get("c").await.unwrap().as_deref(), Some(&b"23"[..]));
    assert_eq!(once(kv, "c", &op("w1", 4), 1, ttl).await.unwrap(), 24);
}

/// The counter takes the TTL when created (as `increment`), the marker with every applied operation; once both
/// expired the same operation counts again in a new window. An existing counter keeps its expiry.
pub async fn kv_increment_once_ttl(f: Fixture) {
    let kv = f.storage.kv.clone();
    let short = Duration::from_millis(150);
    let first = op("w1", 1);
    assert_eq!(once(kv.as_ref(), "window", &first, 2, Some(short)).await.unwrap(), 2);
    assert_eq!(once(kv.as_ref(), "kept", &first, 2, Some(LONG)).await.unwrap(), 2);
    assert_eq!(
        once(kv.as_ref(), "kept", &op("w1", 2), 1, Some(short)).await.unwrap(),
        3
    );
    for key in [
        "window".to_owned(),
        first.marker_key("window"),
        first.marker_key("kept"),
    ] {
        let kv = kv.clone();
        poll_until(&format!("{key} expires"), || {
            let (kv, key) = (kv.clone(), key.clone());
            async move { kv.get(&key).await.unwrap().is_none().then_some(()) }
        })
        .await;
    }
    assert_eq!(
        kv.get("kept").await.unwrap().as_deref(),
        Some(&b"3"[..]),
        "an existing counter keeps its expiry"
    );
    assert_eq!(
        once(kv.as_ref(), "window", &first, 2, Some(LONG)).await.unwrap(),
        2,
        "expired counter and marker: a new window"
    );
}
