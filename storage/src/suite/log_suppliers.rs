//! [`crate::RelayLog::suppliers`]: which suppliers' logs hold entries.

use super::Fixture;
use super::log::relay;

/// A supplier is listed while its log holds an entry, undelivered or pending, and no longer once every entry
/// was acknowledged or trimmed; the list is sorted, each supplier once, and a read of a supplier that never
/// appended lists nothing for it.
pub async fn relay_log_suppliers(f: Fixture) {
    let log = &f.storage.relay_log;
    assert_eq!(log.suppliers().await.unwrap(), Vec::<String>::new(), "an empty log");
    assert!(log.read("pokt1never", "c1", 10).await.unwrap().is_empty());
    assert_eq!(
        log.suppliers().await.unwrap(),
        Vec::<String>::new(),
        "a read creates nothing to list"
    );

    // Appended out of order and interleaved: listed sorted, once each.
    log.append(vec![
        relay("pokt1c", "s1", 1),
        relay("pokt1a", "s1", 2),
        relay("pokt1c", "s1", 3),
        relay("pokt1b", "s2", 4),
        relay("pokt1a", "s1", 5),
    ])
    .await
    .unwrap();
    log.append(vec![relay("pokt1b", "s3", 6)]).await.unwrap();
    assert_eq!(log.suppliers().await.unwrap(), ["pokt1a", "pokt1b", "pokt1c"]);

    // Pending entries (delivered, not acknowledged) still count.
    let a = log.read("pokt1a", "c1", 10).await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(log.suppliers().await.unwrap(), ["pokt1a", "pokt1b", "pokt1c"]);

    // All acknowledged: gone. One left pending: still there.
    let ids: Vec<_> = a.iter().map(|e| e.id).collect();
    assert_eq!(log.ack("pokt1a", &ids[..1]).await.unwrap(), 1);
    assert_eq!(log.suppliers().await.unwrap(), ["pokt1a", "pokt1b", "pokt1c"]);
    assert_eq!(log.ack("pokt1a", &ids[1..]).await.unwrap(), 1);
    assert_eq!(log.suppliers().await.unwrap(), ["pokt1b", "pokt1c"]);

    // Trimmed away (undelivered entries, never read): gone; a supplier with another session left: kept.
    assert_eq!(log.trim_session("pokt1c", "s1").await.unwrap(), 2);
    assert_eq!(log.trim_session("pokt1b", "s2").await.unwrap(), 1);
    assert_eq!(log.suppliers().await.unwrap(), ["pokt1b"]);

    // A supplier whose log emptied is listed again at its next append.
    log.append(vec![relay("pokt1a", "s1", 7)]).await.unwrap();
    assert_eq!(log.suppliers().await.unwrap(), ["pokt1a", "pokt1b"]);
    assert_eq!(log.backlog("pokt1a").await.unwrap().undelivered, 1);
}
