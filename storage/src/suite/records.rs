//! Session record checks.

use super::Fixture;
use crate::StorageError;

/// Compare-and-set on versions, listing per supplier and state, conditional delete.
pub async fn session_cas(f: Fixture) {
    let s = &f.storage.sessions;
    assert_eq!(s.get("pokt1a", "s1").await.unwrap(), None);
    assert_eq!(s.put("pokt1a", "s1", "active", b"v1".to_vec(), 0).await.unwrap(), 1);
    let err = s.put("pokt1a", "s1", "active", b"dup".to_vec(), 0).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict(_)),
        "create over existing: {err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(s.put("pokt1a", "s1", "claimed", b"v2".to_vec(), 1).await.unwrap(), 2);
    let stale = s.put("pokt1a", "s1", "error", b"stale".to_vec(), 1).await.unwrap_err();
    assert!(
        matches!(stale, StorageError::Conflict(_)),
        "stale writer rejected: {stale:?}"
    );
    let err = s.put("pokt1a", "s-missing", "active", Vec::new(), 3).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)));
    let rec = s.get("pokt1a", "s1").await.unwrap().unwrap();
    assert_eq!(
        (rec.state.as_str(), rec.data.as_slice(), rec.version),
        ("claimed", &b"v2"[..], 2)
    );
    assert_eq!((rec.supplier.as_str(), rec.session_id.as_str()), ("pokt1a", "s1"));

    s.put("pokt1a", "s2", "active", b"x".to_vec(), 0).await.unwrap();
    s.put("pokt1b", "s1", "claimed", b"y".to_vec(), 0).await.unwrap();
    s.put("pokt1a", "s0", "claimed", Vec::new(), 0).await.unwrap();
    let keys = |v: Vec<crate::SessionRecord>| v.into_iter().map(|r| (r.supplier, r.session_id)).collect::<Vec<_>>();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        keys(s.list(Some("pokt1a"), None).await.unwrap()),
        vec![pair("pokt1a", "s0"), pair("pokt1a", "s1"), pair("pokt1a", "s2")]
    );
    assert_eq!(
        keys(s.list(None, Some("claimed")).await.unwrap()),
        vec![pair("pokt1a", "s0"), pair("pokt1a", "s1"), pair("pokt1b", "s1")]
    );
    assert_eq!(
        keys(s.list(Some("pokt1a"), Some("active")).await.unwrap()),
        vec![pair("pokt1a", "s2")]
    );
    assert_eq!(s.list(None, None).await.unwrap().len(), 4);
    assert!(s.list(Some("pokt1z"), None).await.unwrap().is_empty());

    let err = s.delete("pokt1a", "s1", Some(1)).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)));
    assert!(s.delete("pokt1a", "s1", Some(2)).await.unwrap());
    assert!(!s.delete("pokt1a", "s1", None).await.unwrap());
    assert!(s.delete("pokt1a", "s2", None).await.unwrap());
    assert_eq!(s.get("pokt1a", "s1").await.unwrap(), None);
    assert_eq!(
        s.put("pokt1a", "s1", "active", b"again".to_vec(), 0).await.unwrap(),
        1,
        "recreate after delete"
    );
    assert_eq!(
        keys(s.list(Some("pokt1a"), Some("claimed")).await.unwrap()),
        vec![pair("pokt1a", "s0")]
    );
}
