//! `relay-miner raft status|init|add-learner|promote|remove|transfer-leader`: cluster administration against a
//! running node's raft port (issue 8); and `raft recover-single`, offline, on a stopped node whose cluster lost a
//! majority of its voters for good (`raft::recover`).
//!
//! Every command talks to `--addr host:port` (a node's raft port) with the pre-shared cluster token from
//! `--cluster-token-file` (the file `storage.raft.cluster_token_file` names; `--config FILE` reads that key).
//! Membership changes must run on the leader: the admin client follows a follower's answer to the leader once,
//! and the error says which node leads when that does not help. Run one admin command at a time (concurrent
//! membership changes can leave a joint configuration).
//!
//! Exit codes: 0 done, 1 the cluster refused or could not be reached, 2 bad arguments (token file, members).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use raft::{AdminClient, AdminError, NodeInfo, Status};
use serde::Serialize;

/// Flags of `relay-miner raft`.
#[derive(Debug, Clone, clap::Args)]
pub struct RaftArgs {
    /// A node's raft port (`host:port`); membership changes are forwarded to the leader.
    #[arg(long, global = true, default_value = "127.0.0.1:7001")]
    pub addr: String,
    /// File holding the cluster token (the file `storage.raft.cluster_token_file` names).
    #[arg(long, global = true)]
    pub cluster_token_file: Option<PathBuf>,
    /// Read the token file name from this config file's `storage.raft.cluster_token_file`.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Deadline of each call to a node, in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout_secs: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: RaftCommand,
}

/// The `raft` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RaftCommand {
    /// Leader, term, members, learners, each node's applied index and replication lag.
    Status {
        /// Machine-readable output (one JSON object).
        #[arg(long)]
        json: bool,
    },
    /// Initialize a new cluster on the node at `--addr` (once, on one node of a fresh cluster).
    Init {
        /// Every voter: `1=host:port,2=host:port,3=host:port` (raft addresses).
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
    /// Add a node as a learner (it catches up from a snapshot and the log; it does not vote).
    AddLearner {
        /// The new node's id (never the id of a wiped node).
        #[arg(long)]
        id: u64,
        /// The new node's raft address.
        #[arg(long)]
        node_addr: String,
        /// Wait until the learner has replicated the leader's log up to the membership change (up to
        /// `--timeout-secs`).
        #[arg(long)]
        wait: bool,
    },
    /// Make a learner a voter. Refused (nothing changed) while the learner trails the leader's committed index
    /// by more than 256 entries (still installing a snapshot, or unreachable: add it with `--wait`), or while a
    /// majority of the current or new voters does not acknowledge the leader.
    Promote {
        /// The learner's id.
        #[arg(long)]
        id: u64,
    },
    /// Remove a voter or learner; wipe its data only after this succeeds. Removing a voter is refused (nothing
    /// changed) while a majority of the remaining voters does not acknowledge the leader (another voter down:
    /// the change could not commit and would leave the cluster refusing writes); remove the down voter first.
    Remove {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// Hand the leadership to another voter before maintenance on the leader's node (restart, upgrade): the
    /// cluster elects it at once instead of after an election timeout. A stopping leader (SIGTERM) does this by
    /// itself.
    TransferLeader {
        /// The voter to lead next (default: the most caught-up other voter).
        #[arg(long)]
        to: Option<u64>,
    },
    /// OFFLINE, on a STOPPED node, when a majority of the voters is lost for good (e.g. 2 of 3 disks gone): make
    /// this node the single voter so it can start and lead alone, keeping its relay log and tries. Appends one
    /// membership entry to its log (after its last entry, in its current term). Only safe when the other voters
    /// can never come back with their data (they would still form a majority of the old voters and could elect a
    /// second leader): destroy their disks first; they rejoin only wiped, as learners. Needs
    /// `--yes-i-lost-the-majority`. The node's raft directory comes from `--config` (`storage.data_dir`,
    /// `storage.raft.node_id`) or `--data-dir`/`--node-id`.
    RecoverSingle {
        /// This node's id (default: the config's `storage.raft.node_id`).
        #[arg(long)]
        node_id: Option<u64>,
        /// The node's `storage.data_dir` (default: the config's); its raft files are in `raft-<id>` under it.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Confirms that the other voters are gone for good and will never start again with their data.
        #[arg(long)]
        yes_i_lost_the_majority: bool,
    },
}

/// How many times `transfer-leader --to N` asks when another voter wins the election instead of N.
const TRANSFER_ATTEMPTS: u32 = 3;

/// Runs `relay-miner raft …`; returns the exit code.
pub fn run(args: RaftArgs) -> anyhow::Result<i32> {
    if let RaftCommand::RecoverSingle {
        node_id,
        data_dir,
        yes_i_lost_the_majority,
    } = &args.command
    {
        // Offline: no raft port, no token.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return Ok(runtime.block_on(recover_single(
            args.config.as_deref(),
            *node_id,
            data_dir.clone(),
            *yes_i_lost_the_majority,
        )));
    }
    let token = match token(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("relay-miner raft: {e}");
            return Ok(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(dispatch(args, token))
}

fn token(args: &RaftArgs) -> Result<String, String> {
    let file = match (&args.cluster_token_file, &args.config) {
        (Some(f), _) => f.clone(),
        (None, Some(config)) => {
            let config = crate::config::Config::load(config).map_err(|e| format!("{}: {e}", config.display()))?;
            config
                .storage
                .raft
                .cluster_token_file
                .ok_or("the config has no storage.raft.cluster_token_file")?
        }
        (None, None) => return Err("--cluster-token-file (or --config) is required".into()),
    };
    let token = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read the cluster token file {}: {e}", file.display()))?
        .trim()
        .to_string();
    if token.len() < 16 {
        return Err(format!(
            "the cluster token in {} must be at least 16 characters",
            file.display()
        ));
    }
    Ok(token)
}

/// Parses `id=host:port` members.
pub fn parse_members(members: &[String]) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for m in members {
        let (id, addr) = m
            .split_once('=')
            .ok_or_else(|| format!("member `{m}` is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("member `{m}`: `{id}` is not a node id"))?;
        let addr = addr.trim();
        if id == 0 || addr.rsplit_once(':').is_none() {
            return Err(format!("member `{m}`: ids start at 1 and the address is host:port"));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} listed twice"));
        }
    }
    if out.is_empty() {
        return Err("no members".into());
    }
    Ok(out)
}

/// A readable explanation of an admin failure against `addr`.
fn explain(addr: &str, e: &AdminError) -> String {
    match e {
        AdminError::Unreachable(detail) => {
            format!("cannot reach a raft port at {addr} ({detail}); is the node running and is this its raft address?")
        }
        AdminError::Timeout(t) => format!(
            "no answer from {addr} within {t}; the request may or may not have taken effect: check `relay-miner raft status`"
        ),
        AdminError::Unauthorized => format!("{addr} rejected the cluster token (check --cluster-token-file)"),
        AdminError::NotLeader {
            leader_id: Some(id),
            leader_addr,
        } => format!(
            "{addr} is not the leader and the request could not be forwarded; the leader is node {id} at {}: retry against it",
            leader_addr.as_deref().unwrap_or("an unknown address")
        ),
        AdminError::NotLeader { leader_id: None, .. } => format!(
            "{addr} is not the leader and no leader is known (election in progress or no quorum); retry shortly"
        ),
        AdminError::Invalid(s) => format!("invalid request: {s}"),
        AdminError::Raft(s) => format!("raft refused the request: {s}"),
    }
}

async fn dispatch(args: RaftArgs, token: String) -> anyhow::Result<i32> {
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let client = AdminClient::new(args.addr.clone(), token.clone()).with_timeout(timeout);
    let fail = |e: AdminError| {
        eprintln!("relay-miner raft: {}", explain(&args.addr, &e));
        Ok(1)
    };
    match args.command {
        RaftCommand::Status { json } => {
            let report = match cluster_report(&args.addr, &token, timeout).await {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(0)
        }
        RaftCommand::Init { members } => {
            let members = match parse_members(&members) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("relay-miner raft init: {e}");
                    return Ok(2);
                }
            };
            let list: Vec<(u64, NodeInfo)> = members.iter().map(|(id, a)| (*id, NodeInfo::new(a))).collect();
            match client.init(list).await {
                Ok(()) => {
                    println!(
                        "cluster initialized on {} with voters {}",
                        args.addr,
                        members
                            .iter()
                            .map(|(id, a)| format!("{id}={a}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    Ok(0)
                }
                Err(e) => fail(e),
            }
        }
        RaftCommand::AddLearner { id, node_addr, wait } => {
            match client.add_learner(id, NodeInfo::new(&node_addr)).await {
                Ok(index) => {
                    println!("node {id} at {node_addr} added as a learner (membership entry {index})");
                    if wait {
                        return wait_caught_up(&args.addr, &token, timeout, id, index).await;
                    }
                    Ok(0)
                }
                Err(e) => fail(e),
            }
        }
        RaftCommand::Promote { id } => match client.promote(id).await {
            Ok(0) => {
                println!("node {id} is already a voter");
                Ok(0)
            }
            Ok(index) => {
                println!("node {id} promoted to voter (membership entry {index})");
                Ok(0)
            }
            Err(e) => fail(e),
        },
        RaftCommand::Remove { id } => match client.remove(id).await {
            Ok(index) => {
                println!("node {id} removed (membership entry {index}); its data dir can now be wiped");
                Ok(0)
            }
            Err(e) => fail(e),
        },
        RaftCommand::RecoverSingle { .. } => {
            eprintln!("relay-miner raft recover-single runs offline (handled before any call)");
            Ok(2)
        }
        RaftCommand::TransferLeader { to } => {
            // Another voter can win the election when the target was not caught up in time: the leadership
            // moved all the same, so asking the new leader again usually lands it where it was meant to go.
            let mut attempt = 1;
            loop {
                match client.transfer_leader(to).await {
                    Ok(leader) => {
                        println!("node {leader} leads now");
                        return Ok(0);
                    }
                    Err(AdminError::Raft(why)) if why.contains("instead of node") && attempt < TRANSFER_ATTEMPTS => {
                        eprintln!("relay-miner raft transfer-leader: {why}; asking again");
                        attempt += 1;
                    }
                    Err(e) => return fail(e),
                }
            }
        }
    }
}

/// `raft recover-single`: finds the node's raft directory, refuses without the confirmation, rewrites the
/// membership (`raft::recover`) and prints what it did. Exit codes: 0 done (or nothing to do), 1 refused or
/// failed (nothing changed), 2 bad arguments.
async fn recover_single(
    config: Option<&std::path::Path>,
    node_id: Option<u64>,
    data_dir: Option<PathBuf>,
    confirmed: bool,
) -> i32 {
    let loaded = match config.map(crate::config::Config::load).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relay-miner raft recover-single: cannot load the config: {e}");
            return 2;
        }
    };
    let node_id = node_id.or_else(|| loaded.as_ref().map(|c| c.storage.raft.node_id).filter(|id| *id != 0));
    let data_dir = data_dir.or_else(|| loaded.as_ref().map(|c| c.storage.data_dir.clone()));
    let (Some(node_id), Some(data_dir)) = (node_id, data_dir) else {
        eprintln!(
            "relay-miner raft recover-single: the node id and data directory are required (--config FILE, or \
             --node-id and --data-dir)"
        );
        return 2;
    };
    let dir = data_dir.join(format!("raft-{node_id}"));
    if !confirmed {
        eprintln!(
            "relay-miner raft recover-single: this makes node {node_id} ({}) the single voter of its cluster \
             without the other voters' agreement. It is only safe when they are gone for good: if any of them \
             started again with its data, the old voters could elect a second leader. Destroy their disks first, \
             stop node {node_id}, then run again with --yes-i-lost-the-majority",
            dir.display()
        );
        return 2;
    }
    match raft::recover::recover_single(&dir, node_id).await {
        Ok(report) => {
            println!("node {node_id} at {}", dir.display());
            println!(
                "  old membership: voters {:?}, learners {:?} (entry {})",
                report.old_voters,
                report.old_learners,
                report
                    .old_membership_at
                    .map_or("none".to_string(), |(term, index)| format!("{index}, term {term}"))
            );
            println!(
                "  last log index {}, applied index {}, term {}",
                opt(report.last_log_index),
                opt(report.applied_index),
                report.term
            );
            match report.new_membership_index {
                Some(index) => println!(
                    "  new membership: voters [{node_id}] (entry {index}, term {}). Start node {node_id} alone: it \
                     leads and commits every entry it holds. Add new nodes with `relay-miner raft add-learner` \
                     and `relay-miner raft promote`; the lost nodes may only rejoin wiped.",
                    report.term
                ),
                None => println!("  node {node_id} already is the single voter: nothing changed"),
            }
            0
        }
        Err(e) => {
            eprintln!("relay-miner raft recover-single: {e} (nothing changed)");
            1
        }
    }
}

/// Polls the leader until learner `id` has replicated at least `index`.
async fn wait_caught_up(addr: &str, token: &str, timeout: Duration, id: u64, index: u64) -> anyhow::Result<i32> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("no status yet");
    while tokio::time::Instant::now() < deadline {
        match cluster_report(addr, token, timeout).await {
            Ok(report) => {
                let row = report.nodes.iter().find(|n| n.id == id);
                if let Some(row) = row {
                    // Everything up to the membership change is replicated; under load new entries keep coming, so
                    // a lag of exactly 0 may never be observed.
                    if row.matched_index.is_some_and(|m| m >= index) {
                        println!("node {id} caught up (matched {:?})", row.matched_index);
                        return Ok(0);
                    }
                    last = format!("matched {:?}, lag {:?}", row.matched_index, row.lag);
                }
            }
            Err(e) => last = explain(addr, &e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("relay-miner raft add-learner: node {id} did not catch up within {timeout:?} ({last})");
    Ok(1)
}

/// One row of the status table.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// Node id.
    pub id: u64,
    /// `voter` or `learner`.
    pub role: &'static str,
    /// Raft address from the membership.
    pub raft_addr: String,
    /// True when the node answered.
    pub reachable: bool,
    /// The node's raft state (`Leader`, `Follower`, …) as it reports it.
    pub state: Option<String>,
    /// The node's current term.
    pub term: Option<u64>,
    /// Last log index on the node.
    pub last_log_index: Option<u64>,
    /// Index applied to the node's state machine.
    pub applied_index: Option<u64>,
    /// Highest index the leader knows replicated to it.
    pub matched_index: Option<u64>,
    /// Entries the leader has that the node has not (leader view).
    pub lag: Option<u64>,
    /// Why the node is not ready (`None` = ready or unknown).
    pub not_ready: Option<String>,
    /// Why the node could not be asked.
    pub error: Option<String>,
    /// The raft features it advertised to the leader (to the node asked when no leader answered); `None`:
    /// nothing heard from it in this term.
    pub features: Option<Vec<String>>,
}

/// The cluster as `raft status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// The node asked.
    pub asked: String,
    /// Current leader, if known.
    pub leader_id: Option<u64>,
    /// The leader's raft address, if known.
    pub leader_addr: Option<String>,
    /// Current term (the leader's when it answered, else the asked node's).
    pub term: u64,
    /// Leader's commit index.
    pub committed_index: Option<u64>,
    /// Voter ids.
    pub voters: Vec<u64>,
    /// Learner ids.
    pub learners: Vec<u64>,
    /// One row per member.
    pub nodes: Vec<NodeRow>,
    /// Whether the leader proposes write sets as one raft entry (every member advertised `write-set`); `None`
    /// when no leader answered.
    pub write_sets: Option<bool>,
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl ClusterReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let leader = match (self.leader_id, &self.leader_addr) {
            (Some(id), Some(addr)) => format!("node {id} ({addr})"),
            (Some(id), None) => format!("node {id}"),
            _ => "none known".into(),
        };
        out.push_str(&format!(
            "leader: {leader}   term: {}   committed: {}   (asked {})\n",
            self.term,
            opt(self.committed_index),
            self.asked
        ));
        let list = |ids: &[u64]| {
            if ids.is_empty() {
                "-".to_string()
            } else {
                ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
            }
        };
        out.push_str(&format!(
            "voters: {}   learners: {}\n",
            list(&self.voters),
            list(&self.learners)
        ));
        let lacking: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| !n.features.as_ref().is_some_and(|f| f.iter().any(|f| f == "write-set")))
            .map(|n| n.id)
            .collect();
        out.push_str(&match self.write_sets {
            Some(true) => "write sets: on (an ingest batch is one raft entry)\n".to_string(),
            Some(false) => format!(
                "write sets: off, written one entry per part (nodes {} have not advertised write-set: an older \
                 build, or not heard from since a restart)\n",
                list(&lacking)
            ),
            None => "write sets: unknown (no leader answered)\n".to_string(),
        });
        let header = [
            "ID",
            "ROLE",
            "RAFT ADDR",
            "STATE",
            "TERM",
            "LAST LOG",
            "APPLIED",
            "MATCHED",
            "LAG",
            "FEATURES",
            "NOTE",
        ];
        let rows: Vec<[String; 11]> = self
            .nodes
            .iter()
            .map(|n| {
                let note = n
                    .error
                    .clone()
                    .or_else(|| n.not_ready.clone().map(|r| format!("not ready: {r}")))
                    .unwrap_or_default();
                [
                    n.id.to_string(),
                    n.role.to_string(),
                    n.raft_addr.clone(),
                    n.state.clone().unwrap_or_else(|| "unreachable".into()),
                    opt(n.term),
                    opt(n.last_log_index),
                    opt(n.applied_index),
                    opt(n.matched_index),
                    opt(n.lag),
                    match &n.features {
                        Some(f) if f.is_empty() => "none".to_string(),
                        Some(f) => f.join(","),
                        None => "?".to_string(),
                    },
                    note,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut l = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            l.truncate(l.trim_end().len());
            l.push('\n');
            l
        };
        out.push_str(&line(&header.map(String::from)));
        for row in &rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// Asks `addr`, then the leader it names (for replication progress), then every member (for its applied index).
pub async fn cluster_report(addr: &str, token: &str, timeout: Duration) -> Result<ClusterReport, AdminError> {
    let asked = AdminClient::new(addr, token).with_timeout(timeout).status().await?;
    let per_node = timeout.min(Duration::from_secs(2));
    let leader: Option<Status> = match (&asked.leader_addr, asked.leader_id) {
        (_, Some(id)) if id == asked.node_id => Some(asked.clone()),
        (Some(leader_addr), Some(_)) => AdminClient::new(leader_addr.clone(), token)
            .with_timeout(per_node)
            .status()
            .await
            .ok(),
        _ => None,
    };
    // Membership from the leader when it answered (it is the most recent), else from the node asked.
    let view = leader.as_ref().unwrap_or(&asked);
    let members: Vec<(u64, &'static str, NodeInfo)> = view
        .voters
        .iter()
        .map(|(id, n)| (*id, "voter", n.clone()))
        .chain(view.learners.iter().map(|(id, n)| (*id, "learner", n.clone())))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (id, _, node) in &members {
        let (id, node_addr, token) = (*id, node.raft_addr.clone(), token.to_string());
        let known = if id == asked.node_id {
            Some(asked.clone())
        } else {
            leader.clone().filter(|l| l.node_id == id)
        };
        tasks.spawn(async move {
            let status = match known {
                Some(s) => Ok(s),
                None => AdminClient::new(node_addr, token).with_timeout(per_node).status().await,
            };
            (id, status)
        });
    }
    let mut statuses: BTreeMap<u64, Result<Status, AdminError>> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((id, status)) = joined {
            statuses.insert(id, status);
        }
    }
    let nodes = members
        .iter()
        .map(|(id, role, node)| {
            let replication = leader
                .as_ref()
                .and_then(|l| l.replication.iter().find(|r| r.node_id == *id));
            let is_leader_row = leader.as_ref().is_some_and(|l| l.node_id == *id);
            let mut row = NodeRow {
                id: *id,
                role,
                raft_addr: node.raft_addr.clone(),
                reachable: false,
                state: None,
                term: None,
                last_log_index: None,
                applied_index: None,
                matched_index: replication.and_then(|r| r.matched),
                lag: replication.and_then(|r| r.lag),
                not_ready: None,
                error: None,
                features: view
                    .features
                    .iter()
                    .find(|f| f.node_id == *id)
                    .and_then(|f| f.advertised.clone()),
            };
            if is_leader_row {
                row.matched_index = leader.as_ref().and_then(|l| l.last_log_index);
                row.lag = Some(0);
            }
            match statuses.get(id) {
                Some(Ok(s)) => {
                    row.reachable = true;
                    row.state = Some(s.state.clone());
                    row.term = Some(s.term);
                    row.last_log_index = s.last_log_index;
                    row.applied_index = s.applied_index;
                    row.not_ready = s.not_ready.clone();
                }
                Some(Err(e)) => row.error = Some(short_error(e)),
                None => row.error = Some("no answer".into()),
            }
            row
        })
        .collect();
    Ok(ClusterReport {
        asked: addr.to_string(),
        leader_id: view.leader_id.or(asked.leader_id),
        leader_addr: view.leader_addr.clone().or_else(|| asked.leader_addr.clone()),
        term: view.term.max(asked.term),
        committed_index: view.committed_index,
        voters: view.voters.iter().map(|(id, _)| *id).collect(),
        learners: view.learners.iter().map(|(id, _)| *id).collect(),
        nodes,
        write_sets: leader.as_ref().and_then(|l| l.write_sets),
    })
}

fn short_error(e: &AdminError) -> String {
    match e {
        AdminError::Unreachable(_) => "unreachable".into(),
        AdminError::Timeout(_) => "timed out".into(),
        AdminError::Unauthorized => "token rejected".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recover_single_needs_the_confirmation_and_a_node_directory() {
        let dir = tempfile::tempdir().unwrap();
        // Without --yes-i-lost-the-majority nothing is opened or created.
        assert_eq!(recover_single(None, Some(1), Some(dir.path().into()), false).await, 2);
        assert!(!dir.path().join("raft-1").exists());
        // Without a node id and data directory (no --config either).
        assert_eq!(recover_single(None, None, None, true).await, 2);
        // Confirmed, on a directory holding no raft node: refused, nothing changed.
        assert_eq!(recover_single(None, Some(1), Some(dir.path().into()), true).await, 1);
        assert!(!dir.path().join("raft-1").exists());
    }

    #[test]
    fn members_parse_and_errors_name_the_member() {
        let m = parse_members(&["1=127.0.0.1:7001".into(), " 2 = h:2".into()]).unwrap();
        assert_eq!(m.get(&1).map(String::as_str), Some("127.0.0.1:7001"));
        assert_eq!(m.get(&2).map(String::as_str), Some("h:2"));
        assert!(parse_members(&["x=h:1".into()]).unwrap_err().contains("x=h:1"));
        assert!(parse_members(&["0=h:1".into()]).is_err());
        assert!(parse_members(&["1=nohostport".into()]).is_err());
        assert!(
            parse_members(&["1=h:1".into(), "1=h:2".into()])
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn errors_say_who_leads() {
        let e = AdminError::NotLeader {
            leader_id: Some(3),
            leader_addr: Some("10.0.0.3:7001".into()),
        };
        let text = explain("10.0.0.1:7001", &e);
        assert!(text.contains("node 3") && text.contains("10.0.0.3:7001"), "{text}");
        let none = explain(
            "a:1",
            &AdminError::NotLeader {
                leader_id: None,
                leader_addr: None,
            },
        );
        assert!(none.contains("no leader is known"), "{none}");
        assert!(explain("a:1", &AdminError::Unreachable("refused".into())).contains("cannot reach"));
    }

    #[test]
    fn table_has_a_row_per_member() {
        let report = ClusterReport {
            asked: "a:1".into(),
            leader_id: Some(1),
            leader_addr: Some("a:1".into()),
            term: 4,
            committed_index: Some(10),
            voters: vec![1, 2],
            learners: vec![3],
            nodes: vec![
                NodeRow {
                    id: 1,
                    role: "voter",
                    raft_addr: "a:1".into(),
                    reachable: true,
                    state: Some("Leader".into()),
                    term: Some(4),
                    last_log_index: Some(10),
                    applied_index: Some(10),
                    matched_index: Some(10),
                    lag: Some(0),
                    not_ready: None,
                    error: None,
                    features: Some(vec!["write-set".into()]),
                },
                NodeRow {
                    id: 3,
                    role: "learner",
                    raft_addr: "c:1".into(),
                    reachable: false,
                    state: None,
                    term: None,
                    last_log_index: None,
                    applied_index: None,
                    matched_index: Some(7),
                    lag: Some(3),
                    not_ready: None,
                    error: Some("unreachable".into()),
                    features: Some(Vec::new()),
                },
            ],
            write_sets: Some(false),
        };
        let t = report.table();
        assert!(t.starts_with("leader: node 1 (a:1)   term: 4"), "{t}");
        assert!(t.contains("voters: 1,2   learners: 3"), "{t}");
        assert!(
            t.contains("write sets: off, written one entry per part (nodes 3 have"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 6, "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("3 ") && l.contains("unreachable") && l.contains(" 3 ")),
            "{t}"
        );
    }
}
