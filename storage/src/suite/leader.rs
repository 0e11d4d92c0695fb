//! Leadership checks: exclusivity under contention, fencing tokens, takeover after expiry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;

use super::{Fixture, poll_until};

const LONG: Duration = Duration::from_secs(60);

/// Concurrent candidates: exactly one wins each round; tokens strictly increase across rounds.
pub async fn leadership_exclusive(f: Fixture) {
    let l = &f.storage.leadership;
    assert_eq!(l.leader("global").await.unwrap(), None);
    let mut last_token = 0;
    for round in 0..3 {
        let n = 6;
        let barrier = Arc::new(Barrier::new(n));
        let mut handles = Vec::new();
        for c in 0..n {
            let l = f.storage.leadership.clone();
            let barrier = barrier.clone();
            handles.push(tokio::spawn(async move {
                let name = format!("cand-{round}-{c}");
                barrier.wait().await;
                (name.clone(), l.campaign("global", &name, LONG).await.unwrap())
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            let (name, won) = h.await.unwrap();
            if let Some(token) = won {
                winners.push((name, token));
            }
        }
        assert_eq!(winners.len(), 1, "exactly one leader in round {round}: {winners:?}");
        let (name, token) = winners.pop().unwrap();
        assert!(token > last_token, "token {token} after {last_token}");
        last_token = token;
        let info = l.leader("global").await.unwrap().unwrap();
        assert_eq!((info.holder.as_str(), info.token), (name.as_str(), token));
        assert_eq!(
            l.campaign("global", &name, LONG).await.unwrap(),
            Some(token),
            "holder keeps its token"
        );
        assert!(l.renew("global", &name, token, LONG).await.unwrap());
        assert!(!l.renew("global", "someone-else", token, LONG).await.unwrap());
        assert!(!l.renew("global", &name, token + 1, LONG).await.unwrap());
        assert!(!l.resign("global", "someone-else", token).await.unwrap());
        assert!(l.resign("global", &name, token).await.unwrap());
        assert_eq!(l.leader("global").await.unwrap(), None);
        assert!(
            !l.renew("global", &name, token, LONG).await.unwrap(),
            "resigned lease cannot be renewed"
        );
    }
    // Elections are independent.
    let a = l.campaign("supplier:pokt1a", "x", LONG).await.unwrap();
    let b = l.campaign("supplier:pokt1b", "y", LONG).await.unwrap();
    assert!(a.is_some() && b.is_some());
    assert_eq!(l.campaign("supplier:pokt1a", "y", LONG).await.unwrap(), None);
}

/// A holder that stops renewing loses the lease; a waiting candidate takes over with a greater token, the old
/// holder's renew fails, and watchers see the change.
pub async fn leadership_takeover(f: Fixture) {
    let l = f.storage.leadership.clone();
    let mut rx = l.watch("global").await.unwrap();
    let old = l.campaign("global", "old", LONG).await.unwrap().unwrap();
    assert_eq!(l.campaign("global", "new", LONG).await.unwrap(), None);
    let seen = poll_until("watch shows the first leader", || {
        let v = rx.borrow_and_update().clone();
        async move { v.filter(|i| i.holder == "old") }
    })
    .await;
    assert_eq!(seen.token, old);
    // Shorten the lease and stop renewing it.
    assert!(l.renew("global", "old", old, Duration::from_millis(300)).await.unwrap());
    let new = poll_until("the waiting candidate takes over", || {
        let l = l.clone();
        async move { l.campaign("global", "new", LONG).await.unwrap() }
    })
    .await;
    assert!(new > old, "fencing token increases: {new} after {old}");
    assert!(
        !l.renew("global", "old", old, LONG).await.unwrap(),
        "the stale leader is fenced off"
    );
    assert!(!l.resign("global", "old", old).await.unwrap());
    assert_eq!(l.campaign("global", "old", LONG).await.unwrap(), None);
    let info = l.leader("global").await.unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.token), ("new", new));
    poll_until("watch shows the new leader", || {
        let v = rx.borrow_and_update().clone();
        async move { v.filter(|i| i.holder == "new" && i.token == new) }
    })
    .await;
}
