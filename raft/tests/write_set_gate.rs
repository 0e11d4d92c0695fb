//! The version gate of write sets on 3-node loopback clusters (real nodes, redb files, HTTP raft ports): the
//! leader proposes a write set as one entry (`Op::WriteSet`) only while every member advertised the `write-set`
//! feature; otherwise the write set is refused with nothing written (`Conflict`) and the caller writes its parts
//! one by one, as the miner's ingest does. A node "of an older build" is a node started with
//! `RaftConfig::features = FeatureSet::NONE`: it sends no features header, as a build without write sets, which
//! cannot apply an `Op::WriteSet` entry. Whether a node received one is read from its raft log file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{Cluster, SUPPLIER, TOKEN, wait_for};
use openraft::EntryPayload;
use openraft::storage::RaftLogReader as _;
use raft::{AdminClient, FeatureSet, LogStore, Op, RaftNode};
use storage::suite::relay;
use storage::{Fence, LogAck, NodeBatch, RecordWrite, Storage, StorageError, TrieWrite, WriteSet};

/// Sessions per ingest batch.
const SESSIONS: u64 = 2;
/// Relays per ingest batch.
const RELAYS: u64 = 8;

/// The leader's miner: its fenced storage view and the record versions it stored.
struct Miner {
    s: Storage,
    versions: HashMap<String, u64>,
    round: u64,
}

impl Miner {
    /// Takes the miner lease on `node` (the raft leader) and opens its tries.
    async fn on(node: &RaftNode) -> Self {
        let plain = node.storage();
        let token = plain
            .leadership
            .campaign("global", "miner", Duration::from_secs(3600))
            .await
            .unwrap()
            .expect("the raft leader takes the miner lease");
        let s = plain.fenced(Fence::new("global", "miner", token));
        for i in 0..SESSIONS {
            drop(s.tries.open(SUPPLIER, &format!("s{i}")).await.unwrap());
        }
        Self {
            s,
            versions: HashMap::new(),
            round: 0,
        }
    }

    /// One ingest batch as the miner writes it: `RELAYS` relays appended and delivered, then its sessions' trie
    /// batches, their records and the ack as ONE write set; when that is refused (`Conflict`, nothing written), the
    /// same parts one by one (tries, records, ack), as the miner's ingest falls back. `Ok(true)`: one write set.
    async fn ingest(&mut self) -> Result<bool, StorageError> {
        self.round += 1;
        let base = self.round * 100;
        let relays = (base..base + RELAYS)
            .map(|n| relay(SUPPLIER, &format!("s{}", n % SESSIONS), n))
            .collect();
        self.s.relay_log.append(relays).await?;
        let ids: Vec<_> = self
            .s
            .relay_log
            .read(SUPPLIER, "miner", RELAYS as usize)
            .await?
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids.len(), RELAYS as usize);
        let mut set = WriteSet::default();
        for i in 0..SESSIONS {
            let session = format!("s{i}");
            set.tries.push(TrieWrite {
                supplier: SUPPLIER.into(),
                namespace: session.clone(),
                batch: NodeBatch {
                    puts: vec![(format!("node-{}-{i}", self.round).into_bytes(), vec![i as u8; 64])],
                    deletes: Vec::new(),
                },
            });
            set.records.push(RecordWrite {
                supplier: SUPPLIER.into(),
                session_id: session.clone(),
                state: "active".into(),
                data: format!("round {}", self.round).into_bytes(),
                expected_version: self.versions.get(&session).copied().unwrap_or(0),
            });
        }
        set.acks.push(LogAck {
            supplier: SUPPLIER.into(),
            ids: ids.clone(),
        });
        match self.s.write_sets.write(set.clone()).await {
            Ok(outcome) => {
                assert_eq!(outcome.acked, RELAYS);
                for (r, v) in set.records.iter().zip(outcome.versions) {
                    self.versions.insert(r.session_id.clone(), v);
                }
                Ok(true)
            }
            Err(StorageError::Conflict(why)) => {
                assert!(why.contains("write sets off"), "{why}");
                for t in set.tries {
                    let mut store = self.s.tries.open(&t.supplier, &t.namespace).await?;
                    tokio::task::spawn_blocking(move || store.write_batch(t.batch))
                        .await
                        .unwrap()?;
                }
                for r in set.records {
                    let v = self
                        .s
                        .sessions
                        .put(&r.supplier, &r.session_id, &r.state, r.data, r.expected_version)
                        .await?;
                    self.versions.insert(r.session_id, v);
                }
                assert_eq!(self.s.relay_log.ack(SUPPLIER, &ids).await?, RELAYS);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// The leader's last log index.
fn last_index(node: &RaftNode) -> u64 {
    node.status().last_log_index.unwrap_or(0)
}

/// Waits until the leader `l` reports write sets on (`true`) or off.
async fn write_sets(c: &Cluster, l: u64, on: bool) {
    wait_for(&format!("the leader reports write sets {on}"), || async {
        (c.node(l).status().write_sets == Some(on) && c.node(l).stats().write_sets_on() == on).then_some(())
    })
    .await;
}

/// Of the entries in the raft log file under `dir` (the node stopped): how many are write sets, and how many
/// session-record writes of any kind (inside write sets or alone).
async fn log_ops(dir: &Path) -> (usize, usize) {
    let mut log = wait_for("the stopped node's log opens", || async {
        LogStore::open(&dir.join("log.redb")).ok()
    })
    .await;
    let (mut sets, mut records) = (0, 0);
    fn count(op: &Op, records: &mut usize) {
        match op {
            Op::SessionPut { .. } => *records += 1,
            Op::Fenced { op, .. } => count(op, records),
            Op::WriteSet(ops) => ops.iter().for_each(|o| count(o, records)),
            _ => {}
        }
    }
    for e in log.try_get_log_entries(..).await.unwrap() {
        if let EntryPayload::Normal(req) = &e.payload {
            for op in &req.ops {
                sets += usize::from(op.is_write_set());
                count(op, &mut records);
            }
        }
    }
    (sets, records)
}

/// Every running node applied the leader's log, none stopped, all ready.
async fn all_up(c: &Cluster) {
    c.converged().await;
    for n in c.running() {
        assert_eq!(n.stopped(), None, "node {} stopped", n.id());
        wait_for(&format!("node {} ready", n.id()), || async { n.readiness().ok() }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_member_current_an_ingest_batch_is_one_entry() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    write_sets(&c, l, true).await;
    let st = c.node(l).status();
    assert_eq!(st.features.len(), 3, "{st:?}");
    assert!(
        st.features
            .iter()
            .all(|f| f.advertised.as_deref() == Some(&["write-set".to_string(), "kv-once".to_string()][..])),
        "{st:?}"
    );
    let mut m = Miner::on(c.node(l)).await;
    for _ in 0..3 {
        let before = last_index(c.node(l));
        assert!(m.ingest().await.unwrap(), "written as one write set");
        // Its relays' append was one entry before; the write set is one more.
        assert_eq!(last_index(c.node(l)) - before, 2, "append + one write-set entry");
    }
    all_up(&c).await;

    // The leader restarts: the new leader knows only what members advertised to it in its own term, and the old
    // leader, down, is unknown (write sets off) until it answers again.
    let versions = std::mem::take(&mut m.versions);
    drop(m); // its storage view keeps the node's files open
    c.stop(l).await;
    let l2 = c.leader().await;
    write_sets(&c, l2, false).await;
    let st = c.node(l2).status();
    assert_eq!(
        st.features.iter().find(|f| f.node_id == l).unwrap().advertised,
        None,
        "the stopped node is unknown: {st:?}"
    );
    c.restart(l).await;
    write_sets(&c, l2, true).await;
    let mut m = Miner::on(c.node(l2)).await;
    (m.versions, m.round) = (versions, 10);
    let before = last_index(c.node(l2));
    assert!(m.ingest().await.unwrap(), "written as one write set");
    assert_eq!(last_index(c.node(l2)) - before, 2, "append + one write-set entry");
    all_up(&c).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_an_older_build_gets_no_write_set_and_write_sets_resume_once_it_is_upgraded() {
    const OLD: u64 = 3;
    let mut c = Cluster::start_with(3, |cfg| {
        if cfg.node_id == OLD {
            cfg.features = FeatureSet::NONE;
        }
    })
    .await;
    let mut l = c.leader().await;
    if l == OLD {
        // The older build is to be a follower here (as leader it proposes no write set either).
        c.node(OLD).raft().trigger().transfer_leader(1).await.unwrap();
        wait_for("another leader", || async {
            c.node(1).status().leader_id.is_some_and(|x| x != OLD).then_some(())
        })
        .await;
        l = c.leader().await;
    }
    write_sets(&c, l, false).await;
    let st = c.node(l).status();
    let old = st.features.iter().find(|f| f.node_id == OLD).unwrap();
    assert_eq!(
        old.advertised,
        Some(Vec::new()),
        "node {OLD} advertises no feature: {st:?}"
    );

    // (b) Every batch is refused as a write set (nothing proposed) and written part by part; every write
    // commits, node 3 applies all of it and stays up.
    let mut m = Miner::on(c.node(l)).await;
    for _ in 0..3 {
        let before = last_index(c.node(l));
        assert!(
            !m.ingest().await.unwrap(),
            "falls back while node {OLD} lacks write sets"
        );
        // Append, 2 tries, 2 records, ack: one entry each.
        assert_eq!(last_index(c.node(l)) - before, 1 + 2 * SESSIONS + 1);
    }
    // A record-only set (the miner's `persist`) is refused the same way, also through the other follower, which
    // forwards it (the leader advertised write sets to it): the leader refuses it.
    let via = c.running().map(|n| n.id()).find(|id| *id != l && *id != OLD).unwrap();
    let fenced_via = c.node(via).storage().fenced(Fence::new(
        "global",
        "miner",
        c.node(l)
            .storage()
            .leadership
            .leader("global")
            .await
            .unwrap()
            .unwrap()
            .token,
    ));
    let record_set = WriteSet {
        records: (0..SESSIONS)
            .map(|i| RecordWrite {
                supplier: SUPPLIER.into(),
                session_id: format!("s{i}"),
                state: "claimed".into(),
                data: b"claimed".to_vec(),
                expected_version: m.versions[&format!("s{i}")],
            })
            .collect(),
        ..Default::default()
    };
    let before = last_index(c.node(l));
    for s in [&m.s, &fenced_via] {
        match s.write_sets.write(record_set.clone()).await {
            Err(StorageError::Conflict(why)) => assert!(why.contains(&format!("node {OLD}")), "{why}"),
            other => panic!("a write set while node {OLD} lacks the feature: {other:?}"),
        }
    }
    assert_eq!(last_index(c.node(l)), before, "nothing proposed");
    all_up(&c).await;
    let rec = c
        .node(OLD)
        .storage()
        .sessions
        .get(SUPPLIER, "s1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.data,
        b"round 3".to_vec(),
        "node {OLD} applied the part-by-part writes"
    );
    c.stop(OLD).await;
    let (sets, records) = log_ops(&c.data_dir(OLD)).await;
    assert_eq!(sets, 0, "node {OLD} never received a write-set entry");
    assert_eq!(records, 3 * SESSIONS as usize, "it received every record write");

    // (c) Node 3 upgraded: restarted advertising write sets. The leader learns it from its answers and proposes
    // write sets again; node 3 takes them.
    c.restart(OLD).await;
    let now = c.leader().await;
    if now != l {
        // An election meanwhile (rare): the miner takes its lease on the new leader, its records as stored.
        let versions = std::mem::take(&mut m.versions);
        m = Miner::on(c.node(now)).await;
        (m.versions, m.round) = (versions, 10);
    }
    let l = now;
    write_sets(&c, l, true).await;
    for _ in 0..2 {
        let before = last_index(c.node(l));
        assert!(m.ingest().await.unwrap(), "one write set again");
        assert_eq!(last_index(c.node(l)) - before, 2, "append + one write-set entry");
    }
    all_up(&c).await;
    c.stop(OLD).await;
    let (sets, _) = log_ops(&c.data_dir(OLD)).await;
    assert_eq!(sets, 2, "the upgraded node took both write sets");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_closes_the_gate_until_it_advertises_write_sets() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    write_sets(&c, l, true).await;
    let mut m = Miner::on(c.node(l)).await;
    assert!(m.ingest().await.unwrap());

    // A learner of an older build: off from the membership change on, and it never gets a write set after it.
    let mut cfg = common::config(4, "127.0.0.1:0".parse().unwrap(), c.data_dir(4));
    cfg.features = FeatureSet::NONE;
    let n4 = RaftNode::start(cfg).await.unwrap();
    c.addrs.insert(4, n4.local_addr());
    let info4 = n4.node_info();
    c.nodes.insert(4, Some(n4));
    let admin = AdminClient::new(c.addrs[&l].to_string(), TOKEN);
    admin.add_learner(4, info4).await.unwrap();
    assert_eq!(
        c.node(l).status().write_sets,
        Some(false),
        "off as soon as node 4 is a member"
    );
    assert!(!m.ingest().await.unwrap());
    all_up(&c).await;

    // Removed again: every member advertises write sets, so they are back on.
    admin.remove(4).await.unwrap();
    write_sets(&c, l, true).await;
    assert!(m.ingest().await.unwrap());
    c.shutdown().await;
}
