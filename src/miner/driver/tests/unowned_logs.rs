//! Relay logs of suppliers this miner has no key for (module `unowned`): counted in the gauges, reported at
//! ERROR once per leadership term, never trimmed, and mined once the key comes.

use super::*;
use crate::telemetry::Telemetry;

/// What the test thread's tracing subscriber writes (the miner's steps run on the test's own thread).
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// Captures WARN and above on this thread while the guard lives.
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let lines = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || lines.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Lines at `level` containing `needle`.
    fn count(&self, level: &str, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(level) && l.contains(needle))
            .count()
    }
}

/// The value of gauge `name`'s series for `supplier`, if it has one.
fn series(telemetry: &Telemetry, name: &str, supplier: &str) -> Option<i64> {
    telemetry
        .render_metrics()
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("supplier=\"{supplier}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

const UNOWNED: &str = "ha_miner_relay_log_unowned_entries";
const LAG: &str = "ha_miner_consumer_lag";

/// Steps `miner` through `n` new blocks (each step sees a block it has not handled).
async fn blocks(f: &Fixture, miner: &mut Miner, n: usize) {
    for _ in 0..n {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
}

/// The relayer appended relays for the fixture's supplier while the miner's keys file lacks it: the leader counts
/// them in both gauges and says so at ERROR once per term, reads and trims nothing of them, and mines them once
/// the key is hot-reloaded in. Another keyless supplier's log that empties loses its series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_of_a_supplier_without_a_key_are_counted_reported_once_per_term_and_kept_until_its_key_comes() {
    let lines = Lines::default();
    let _logs = lines.capture();
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let telemetry = Telemetry::new().unwrap();
    let keyring = Keyring::new(KeyMap::new());
    let mut miner = Miner::new(f.client.clone(), plain.clone(), keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..3))
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays("pokt1gone", &f.header, 10..12))
        .await
        .unwrap();
    let error = |supplier: &str| {
        format!("relays for supplier {supplier} are in the relay log but this miner has no key for it: not mined")
    };

    lead(&mut miner).await;
    blocks(&f, &mut miner, 3).await;
    assert_eq!(series(&telemetry, UNOWNED, &f.supplier), Some(3));
    assert_eq!(series(&telemetry, LAG, &f.supplier), Some(3));
    assert_eq!(series(&telemetry, UNOWNED, "pokt1gone"), Some(2));
    assert_eq!(lines.count("ERROR", &error(&f.supplier)), 1, "once in the term");
    assert_eq!(lines.count("ERROR", &error("pokt1gone")), 1);
    assert_eq!(
        plain.relay_log.backlog(&f.supplier).await.unwrap(),
        Backlog {
            undelivered: 3,
            pending: 0
        },
        "nothing read, nothing trimmed"
    );
    assert!(miner.engine.session(&f.key).is_none(), "not mined");

    // More relays: counted, no new ERROR. The other supplier's log empties: its series go.
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 3..5))
        .await
        .unwrap();
    assert_eq!(
        plain
            .relay_log
            .trim_session("pokt1gone", &f.header.session_id)
            .await
            .unwrap(),
        2
    );
    blocks(&f, &mut miner, 1).await;
    assert_eq!(series(&telemetry, UNOWNED, &f.supplier), Some(5));
    assert_eq!(series(&telemetry, LAG, &f.supplier), Some(5));
    assert_eq!(series(&telemetry, UNOWNED, "pokt1gone"), None);
    assert_eq!(series(&telemetry, LAG, "pokt1gone"), None);
    assert_eq!(lines.count("ERROR", &error(&f.supplier)), 1);

    // A new leadership term reports it again, once.
    miner.resign().await;
    assert!(!miner.engine.is_leader());
    blocks(&f, &mut miner, 3).await;
    assert!(miner.engine.is_leader());
    assert_eq!(
        lines.count("ERROR", &error(&f.supplier)),
        2,
        "once more in the new term"
    );
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap().undelivered, 5);

    // The key comes (hot reload): the relays are mined, the unowned series goes, the lag is the keyed one's.
    keyring.replace(f.keyring.snapshot().as_ref().clone());
    blocks(&f, &mut miner, 3).await;
    assert_eq!(miner.engine.session(&f.key).map(|r| r.relays), Some(5), "all mined");
    assert_eq!(series(&telemetry, UNOWNED, &f.supplier), None);
    assert_eq!(series(&telemetry, LAG, &f.supplier), Some(0));
    assert_eq!(lines.count("ERROR", &error(&f.supplier)), 2);
}

/// A failed listing is a WARN; the block's work (ingest, the claim) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listing_warns_and_fails_no_block() {
    let lines = Lines::default();
    let _logs = lines.capture();
    let f = fixture().await;
    let backend = MemoryBackend::new();
    backend
        .faults()
        .fail_log_supplier_lists(1_000, StorageError::Unavailable("listing refused by the test".into()));
    let plain = backend.storage();
    let telemetry = Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    plain
        .relay_log
        .append(relays("pokt1keyless", &f.header, 0..2))
        .await
        .unwrap();
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    assert_eq!(
        miner.engine.session(&f.key).unwrap().claim_sent_at.len(),
        1,
        "the claim left at the window's opening ({})",
        schedule.claim_open
    );
    assert!(lines.count("WARN", "cannot list the suppliers of the relay log") >= 1);
    assert_eq!(series(&telemetry, UNOWNED, "pokt1keyless"), None);
}
