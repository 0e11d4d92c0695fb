//! Relay log and trie namespace checks.

use std::time::Duration;

use super::Fixture;
use crate::contract::{Backlog, EntryId, MinedRelay};
use crate::nodes::NodeBatch;

/// A test relay: payload and hash derived from `n` so they can be checked after the round trip.
pub fn relay(supplier: &str, session: &str, n: u64) -> MinedRelay {
    MinedRelay {
        supplier: supplier.to_owned(),
        session_id: session.to_owned(),
        session_end_height: 100 + n % 7,
        relay_hash: n.to_be_bytes().repeat(4),
        payload: format!("relay-{supplier}-{session}-{n}").into_bytes(),
    }
}

/// Append batches for two suppliers, consume in chunks, check order, payloads and acknowledgement.
pub async fn relay_log_order(f: Fixture) {
    let log = &f.storage.relay_log;
    let mut ids_a: Vec<EntryId> = Vec::new();
    let mut ids_b: Vec<EntryId> = Vec::new();
    for batch in 0..4u64 {
        let relays: Vec<MinedRelay> = (0..6u64)
            .map(|i| {
                let n = batch * 6 + i;
                relay(if n % 2 == 0 { "pokt1a" } else { "pokt1b" }, "s1", n)
            })
            .collect();
        let ids = log.append(relays.clone()).await.unwrap();
        assert_eq!(ids.len(), relays.len());
        for (id, r) in ids.into_iter().zip(&relays) {
            if r.supplier == "pokt1a" {
                ids_a.push(id)
            } else {
                ids_b.push(id)
            }
        }
    }
    assert!(
        ids_a.windows(2).all(|w| w[0] < w[1]),
        "ids of one supplier increase: {ids_a:?}"
    );
    assert!(ids_b.windows(2).all(|w| w[0] < w[1]));
    assert!(log.append(Vec::new()).await.unwrap().is_empty());

    assert_eq!(
        log.backlog("pokt1a").await.unwrap(),
        Backlog {
            undelivered: 12,
            pending: 0
        }
    );
    let mut got = Vec::new();
    loop {
        let chunk = log.read("pokt1a", "c1", 5).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 5);
        got.extend(chunk);
    }
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids_a);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.relay, relay("pokt1a", "s1", 2 * i as u64));
        assert_eq!(e.deliveries, 1);
    }
    assert_eq!(
        log.backlog("pokt1a").await.unwrap(),
        Backlog {
            undelivered: 0,
            pending: 12
        }
    );
    // The other supplier is untouched.
    assert_eq!(
        log.backlog("pokt1b").await.unwrap(),
        Backlog {
            undelivered: 12,
            pending: 0
        }
    );
    assert!(log.read("pokt1unknown", "c1", 10).await.unwrap().is_empty());

    assert_eq!(log.ack("pokt1a", &ids_a[..4]).await.unwrap(), 4);
    assert_eq!(
        log.ack("pokt1a", &ids_a[..4]).await.unwrap(),
        0,
        "second ack is a no-op"
    );
    assert_eq!(
        log.backlog("pokt1a").await.unwrap(),
        Backlog {
            undelivered: 0,
            pending: 8
        }
    );
    let own = log.read_pending("pokt1a", "c1", 100).await.unwrap();
    assert_eq!(own.iter().map(|e| e.id).collect::<Vec<_>>(), ids_a[4..].to_vec());
    assert!(own.iter().all(|e| e.deliveries == 2));
    assert_eq!(log.ack("pokt1a", &ids_a).await.unwrap(), 8);
    assert_eq!(log.backlog("pokt1a").await.unwrap(), Backlog::default());
    assert!(log.read_pending("pokt1a", "c1", 100).await.unwrap().is_empty());

    // New appends after consumption continue the order.
    let more = log.append(vec![relay("pokt1a", "s1", 100)]).await.unwrap();
    assert!(more[0] > ids_a[ids_a.len() - 1]);
    let next = log.read("pokt1a", "c1", 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].relay, relay("pokt1a", "s1", 100));
}

/// A consumer dies with unacknowledged entries; another claims and receives them again.
pub async fn relay_log_redelivery(f: Fixture) {
    let log = &f.storage.relay_log;
    let ids = log
        .append((0..10).map(|n| relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    let first = log.read("pokt1a", "dead", 5).await.unwrap();
    assert_eq!(first.len(), 5);
    assert_eq!(log.ack("pokt1a", &ids[..2]).await.unwrap(), 2);
    // "dead" stops here with ids[2..5] pending.
    let fresh = log.read("pokt1a", "alive", 100).await.unwrap();
    assert_eq!(
        fresh.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[5..].to_vec(),
        "new entries are not redelivered"
    );
    assert!(
        log.claim("pokt1a", "alive", Duration::from_secs(3600), 100)
            .await
            .unwrap()
            .is_empty(),
        "entries delivered just now are not idle for an hour"
    );
    let claimed = log.claim("pokt1a", "alive", Duration::ZERO, 100).await.unwrap();
    let claimed_ids: Vec<EntryId> = claimed.iter().map(|e| e.id).collect();
    assert_eq!(
        claimed_ids,
        ids[2..5].to_vec(),
        "only the dead consumer's unacked entries"
    );
    for e in &claimed {
        assert_eq!(e.deliveries, 2);
        let n = ids.iter().position(|i| *i == e.id).unwrap() as u64;
        assert_eq!(e.relay, relay("pokt1a", "s1", n));
    }
    assert!(
        log.read_pending("pokt1a", "dead", 100).await.unwrap().is_empty(),
        "claimed away from the dead one"
    );
    assert_eq!(
        log.backlog("pokt1a").await.unwrap(),
        Backlog {
            undelivered: 0,
            pending: 8
        }
    );
    assert_eq!(log.ack("pokt1a", &ids[2..]).await.unwrap(), 8);
    assert_eq!(log.backlog("pokt1a").await.unwrap(), Backlog::default());
    assert!(
        log.claim("pokt1a", "third", Duration::ZERO, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Trimming a session removes its remaining entries (delivered or not) and nothing else; before it,
/// `session_relay_hashes` lists the relay hashes of exactly those entries (an acknowledged one is not listed).
pub async fn relay_log_trim_session(f: Fixture) {
    let log = &f.storage.relay_log;
    let mut relays = Vec::new();
    for n in 0..12 {
        relays.push(relay("pokt1a", if n % 3 == 0 { "s-old" } else { "s-new" }, n));
    }
    relays.push(relay("pokt1b", "s-old", 99));
    log.append(relays).await.unwrap();
    let delivered = log.read("pokt1a", "c1", 4).await.unwrap();
    assert_eq!(delivered.len(), 4);
    assert_eq!(delivered[0].relay.session_id, "s-old");
    assert_eq!(log.ack("pokt1a", &[delivered[0].id]).await.unwrap(), 1);
    let hash = |n: u64| relay("pokt1a", "s-old", n).relay_hash;
    assert_eq!(
        log.session_relay_hashes("pokt1a", "s-old").await.unwrap(),
        [hash(3), hash(6), hash(9)],
        "the remaining entries, delivered (3) or not, in id order; not the acknowledged one"
    );
    assert_eq!(
        log.session_relay_hashes("pokt1b", "s-old").await.unwrap(),
        [relay("pokt1b", "s-old", 99).relay_hash]
    );
    assert!(log.session_relay_hashes("pokt1a", "s-none").await.unwrap().is_empty());
    assert!(log.session_relay_hashes("pokt1none", "s-old").await.unwrap().is_empty());
    assert_eq!(log.trim_session("pokt1a", "s-old").await.unwrap(), 3);
    assert_eq!(
        log.backlog("pokt1a").await.unwrap(),
        Backlog {
            undelivered: 6,
            pending: 2
        },
        "the undelivered entries trimmed (6, 9) and the pending one (3) are no longer counted"
    );
    assert!(log.session_relay_hashes("pokt1a", "s-old").await.unwrap().is_empty());
    assert_eq!(log.session_relay_hashes("pokt1a", "s-new").await.unwrap().len(), 8);
    assert_eq!(log.trim_session("pokt1a", "s-old").await.unwrap(), 0);
    assert_eq!(log.trim_session("pokt1a", "s-none").await.unwrap(), 0);
    // Delivered s-new entries stay pending; s-old pending entries are gone.
    let pending = log.read_pending("pokt1a", "c1", 100).await.unwrap();
    assert!(pending.iter().all(|e| e.relay.session_id == "s-new"));
    assert_eq!(pending.len(), 2);
    let rest = log.read("pokt1a", "c1", 100).await.unwrap();
    assert_eq!(rest.len(), 6);
    assert!(rest.iter().all(|e| e.relay.session_id == "s-new"));
    assert!(
        log.claim("pokt1a", "c2", Duration::ZERO, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.relay.session_id == "s-new")
    );
    let other = log.read("pokt1b", "c1", 100).await.unwrap();
    assert_eq!(other.len(), 1, "other supplier's session of the same name untouched");

    // A trim of the undelivered tail of a log leaves no backlog (Redis 7.0 keeps the group's `lag` at 3).
    let head = vec![relay("pokt1t", "s-head", 1), relay("pokt1t", "s-head", 2)];
    let tail = (3..6).map(|n| relay("pokt1t", "s-tail", n));
    log.append(head.into_iter().chain(tail).collect()).await.unwrap();
    let read = log.read("pokt1t", "c1", 2).await.unwrap();
    let ids: Vec<EntryId> = read.iter().map(|e| e.id).collect();
    assert_eq!(log.ack("pokt1t", &ids).await.unwrap(), 2);
    assert_eq!(log.trim_session("pokt1t", "s-tail").await.unwrap(), 3);
    assert_eq!(log.backlog("pokt1t").await.unwrap(), Backlog::default());
}

/// Many concurrent appenders: every acknowledged relay is readable exactly once, in per-call order.
pub async fn relay_log_concurrent_appends(f: Fixture) {
    let tasks = 8u64;
    let per_task = 40u64;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let log = f.storage.relay_log.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for b in 0..(per_task / 4) {
                let batch = (0..4).map(|i| relay("pokt1c", &format!("t{t}"), b * 4 + i)).collect();
                ids.extend(log.append(batch).await.unwrap());
            }
            ids
        }));
    }
    let mut all_ids = Vec::new();
    for h in handles {
        let ids = h.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "one caller's appends are ordered");
        all_ids.extend(ids);
    }
    let mut got = Vec::new();
    loop {
        let chunk = f.storage.relay_log.read("pokt1c", "c", 64).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        got.extend(chunk);
    }
    assert_eq!(got.len() as u64, tasks * per_task);
    all_ids.sort();
    let got_ids: Vec<EntryId> = got.iter().map(|e| e.id).collect();
    assert_eq!(got_ids, all_ids);
    for t in 0..tasks {
        let mine: Vec<&MinedRelay> = got
            .iter()
            .map(|e| &e.relay)
            .filter(|r| r.session_id == format!("t{t}"))
            .collect();
        let expect: Vec<MinedRelay> = (0..per_task).map(|n| relay("pokt1c", &format!("t{t}"), n)).collect();
        assert_eq!(mine.into_iter().cloned().collect::<Vec<_>>(), expect);
    }
}

/// Node stores are namespaced per (supplier, session); a namespace deletes as a whole.
pub async fn trie_namespaces(f: Fixture) {
    let tries = &f.storage.tries;
    let mut a1 = tries.open("pokt1a", "s1").await.unwrap();
    let mut a2 = tries.open("pokt1a", "s2").await.unwrap();
    let mut b1 = tries.open("pokt1b", "s1").await.unwrap();
    let (a1, a2, b1) = tokio::task::spawn_blocking(move || {
        let puts = |tag: &str| NodeBatch {
            puts: (0..50u8)
                .map(|k| (vec![k; 32], format!("{tag}-{k}").into_bytes()))
                .collect(),
            deletes: Vec::new(),
        };
        a1.write_batch(puts("a1")).unwrap();
        a2.write_batch(puts("a2")).unwrap();
        b1.write_batch(puts("b1")).unwrap();
        a1.write_batch(NodeBatch {
            puts: vec![(vec![200; 32], b"new".to_vec())],
            deletes: vec![vec![0; 32], vec![9; 9]],
        })
        .unwrap();
        a1.write_batch(NodeBatch::default()).unwrap();
        assert_eq!(a1.get(&[0; 32]).unwrap(), None);
        assert_eq!(a1.get(&[1; 32]).unwrap().as_deref(), Some(&b"a1-1"[..]));
        assert_eq!(a1.get(&[200; 32]).unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(a2.get(&[0; 32]).unwrap().as_deref(), Some(&b"a2-0"[..]));
        assert_eq!(b1.get(&[7; 32]).unwrap().as_deref(), Some(&b"b1-7"[..]));
        (a1, a2, b1)
    })
    .await
    .unwrap();
    tries.delete_namespace("pokt1a", "s1").await.unwrap();
    tries.delete_namespace("pokt1a", "s-empty").await.unwrap();
    let reopened = tries.open("pokt1a", "s1").await.unwrap();
    tokio::task::spawn_blocking(move || {
        for k in [1u8, 49, 200] {
            assert_eq!(a1.get(&[k; 32]).unwrap(), None, "deleted namespace is empty");
            assert_eq!(reopened.get(&[k; 32]).unwrap(), None);
        }
        assert_eq!(
            a2.get(&[49; 32]).unwrap().as_deref(),
            Some(&b"a2-49"[..]),
            "sibling session intact"
        );
        assert_eq!(
            b1.get(&[1; 32]).unwrap().as_deref(),
            Some(&b"b1-1"[..]),
            "other supplier intact"
        );
    })
    .await
    .unwrap();
}
