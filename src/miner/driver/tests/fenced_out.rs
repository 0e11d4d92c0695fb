//! A miner whose local leadership view lags (as a raft node's does between ticks) while another instance takes
//! its lease over is stopped by its first fenced write, acknowledges nothing, and the new leader ingests every
//! relay it left.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_miner_stops_ingesting_and_the_new_leader_gets_every_relay() {
    let Fixture {
        client,
        supplier,
        header,
        keyring,
        key,
        ..
    } = fixture().await;

    let mem = MemoryBackend::new();
    let plain = mem.storage();
    let view = Arc::new(LaggingView::over(plain.leadership.clone()));
    let mut storage_a = plain.clone();
    storage_a.leadership = view.clone();
    let mut a = Miner::new(client.clone(), storage_a, keyring.clone(), config("a"));
    a.step().await.unwrap();
    assert!(a.engine.is_leader());
    plain.relay_log.append(relays(&supplier, &header, 0..5)).await.unwrap();
    a.step().await.unwrap();
    assert_eq!(a.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 5);
    let token_a = a.leader_token.unwrap();

    // A's view lags: it keeps seeing itself as the leader while its lease ends and B takes it over.
    view.set(Some(Some(LeaderInfo {
        holder: "a".into(),
        token: token_a,
    })));
    assert!(
        plain
            .leadership
            .renew(ELECTION, "a", token_a, Duration::from_millis(1))
            .await
            .unwrap()
    );
    let token_b = storage::suite::poll_until("B takes the lease over", || async {
        plain.leadership.campaign(ELECTION, "b", LEASE).await.unwrap()
    })
    .await;
    assert!(token_b > token_a);
    plain.relay_log.append(relays(&supplier, &header, 5..8)).await.unwrap();

    // A's next iteration: its first write (marking entries delivered) is refused; it leaves leader mode at
    // once, counts it, and neither delivers nor acknowledges anything.
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    assert_eq!(a.leader_token, None);
    assert_eq!(a.stats.fenced_writes.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(a.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 5);
    assert_eq!(
        plain.relay_log.backlog(&supplier).await.unwrap(),
        Backlog {
            undelivered: 3,
            pending: 0
        }
    );
    // With a current view it campaigns again and stays out: B holds the lease.
    view.set(None);
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    assert_eq!(a.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 5);

    // B, the holder, ingests exactly what A left, on top of A's trie and record: nothing served is lost.
    let mut b = Miner::new(client, plain.clone(), keyring, config("b"));
    b.step().await.unwrap();
    assert!(b.engine.is_leader());
    assert_eq!(b.leader_token, Some(token_b));
    assert_eq!(b.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(b.engine.session(&key).unwrap().relays, 8);
    assert_eq!(plain.relay_log.backlog(&supplier).await.unwrap(), Backlog::default());
}
