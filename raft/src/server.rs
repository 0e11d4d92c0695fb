//! The raft port: an axum router serving openraft RPCs, snapshot chunks and the admin RPCs.
//!
//! Every handler first checks the cluster token (401 without the right one), then decodes the postcard body and
//! answers a postcard `Result<T, WireError>`. Admin requests that need the leader (add-learner, membership
//! changes, writes, read barriers) answer `NotLeader` with the leader's address on a follower; the
//! [`crate::AdminClient`] and the backend follow it.
//!
//! Raft RPCs are refused until the node's start check passed ([`crate::rollback`]); the admin routes, and the
//! check's own route ([`crate::rollback::PATH`]: what this node knows of a peer), answer from the start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::ChangeMembers;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::admin::{MembershipChange, Status};
use crate::core::Core;
use crate::features::FEATURES_HEADER;
use crate::identity::{FROM_HEADER, Identity, PEERS_HEADER, Stamp, TO_HEADER};
use crate::network::SnapshotChunk;
use crate::types::{NodeInfo, Request, Snapshot, TypeConfig, decode, encode};
use crate::wire::{MAX_BODY, TOKEN_HEADER, WireError, path};

/// One snapshot being received: the file and how many bytes it holds.
struct Incoming {
    transfer: String,
    file: File,
    path: PathBuf,
    len: u64,
}

/// State of the raft port's handlers.
#[derive(Clone)]
pub(crate) struct ServerState {
    pub core: Arc<Core>,
    pub token: Arc<str>,
    pub snap_dir: PathBuf,
    /// Snapshot transfers in progress, by sending node.
    incoming: Arc<Mutex<HashMap<String, Incoming>>>,
    /// What this node's application last published about itself ([`crate::app_health`]).
    pub app_health: crate::app_health::Shared,
}

impl ServerState {
    pub fn new(core: Arc<Core>, token: &str, snap_dir: PathBuf, app_health: crate::app_health::Shared) -> Self {
        Self {
            core,
            token: Arc::from(token),
            snap_dir,
            incoming: Arc::new(Mutex::new(HashMap::new())),
            app_health,
        }
    }
}

/// The router of the raft port.
pub(crate) fn router(state: ServerState) -> Router {
    Router::new()
        .route(path::APPEND, post(append))
        .route(path::VOTE, post(vote))
        .route(path::PRE_VOTE, post(pre_vote))
        .route(path::SNAPSHOT, post(snapshot))
        .route(path::TRANSFER_LEADER, post(transfer_leader))
        .route(path::TRANSFER, post(transfer))
        .route(path::INIT, post(init))
        .route(path::ADD_LEARNER, post(add_learner))
        .route(path::MEMBERSHIP, post(membership))
        .route(path::STATUS, post(status))
        .route(path::WRITE, post(write))
        .route(path::LINEARIZE, post(linearize))
        .route(crate::app_health::PATH, post(app_health))
        .route(crate::rollback::PATH, post(known_of))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Compares tokens without an early exit on the first differing byte.
fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(got) = headers.get(TOKEN_HEADER) else {
        return false;
    };
    let (a, b) = (got.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer<T: Serialize>(r: Result<T, WireError>) -> Response {
    match encode(&r) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The 401 answer to a request without the right cluster token (`None`: the token is right).
fn unauthorized(st: &ServerState, headers: &HeaderMap) -> Option<Response> {
    if token_ok(headers, &st.token) {
        return None;
    }
    tracing::warn!("raft port: request with a wrong or missing cluster token rejected");
    Some((StatusCode::UNAUTHORIZED, "wrong cluster token").into_response())
}

/// Checks the token, decodes the body, runs `f`, encodes its result.
async fn handle<Req, Resp, F, Fut>(st: &ServerState, headers: &HeaderMap, body: &Bytes, f: F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, WireError>>,
{
    if let Some(refused) = unauthorized(st, headers) {
        return refused;
    }
    let req = match decode::<Req>(body) {
        Ok(r) => r,
        Err(e) => return answer::<Resp>(Err(WireError::BadRequest(e.to_string()))),
    };
    answer(f(req).await)
}

/// [`handle`] for raft RPCs (appends, votes, snapshot chunks): the identities the request carries are checked
/// first, and the answer carries this node's ([`crate::identity`]): a wiped node's votes and acknowledgements
/// never count, and a request for another node is refused. The features the sender advertises are recorded, and
/// the answer advertises this node's ([`crate::features`]).
async fn handle_raft<Req, Resp, F, Fut>(st: &ServerState, headers: &HeaderMap, body: &Bytes, f: F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, WireError>>,
{
    let identity = &st.core.identity;
    if let Some(refused) = unauthorized(st, headers) {
        return refused;
    }
    let mut response = if !st.core.net.witness().is_open() {
        // The start check has not passed: no vote and no acknowledgement from data that may have gone back in
        // time ([`crate::rollback`]). Mapped to `Unreachable` by the sender, which backs off.
        answer::<Resp>(Err(WireError::Unreachable(format!(
            "raft node {} is starting: its data directory is being checked against its peers",
            st.core.id
        ))))
    } else if let Err(e) = check_request(&st.core, identity, headers) {
        answer::<Resp>(Err(e))
    } else if let Err(e) = st.core.check_running() {
        // openraft's core stopped (a storage error, e.g. a full disk): handing it the RPC would only log an
        // ERROR per append or heartbeat the leader keeps sending, until the process restarts.
        answer::<Resp>(Err(e))
    } else {
        handle(st, headers, body, f).await
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&identity.stamp().render()) {
        response.headers_mut().insert(FROM_HEADER, v);
    }
    if let Some(v) = st
        .core
        .features
        .own()
        .header()
        .and_then(|h| axum::http::HeaderValue::from_str(&h).ok())
    {
        response.headers_mut().insert(FEATURES_HEADER, v);
    }
    response
}

/// Checks the target and sender identities of a raft RPC.
fn check_request(core: &Core, identity: &Identity, headers: &HeaderMap) -> Result<(), WireError> {
    let stamp = |name: &str| -> Result<Option<Stamp>, WireError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(Stamp::parse)
                .map(Some)
                .ok_or_else(|| WireError::BadRequest(format!("malformed {name} header {v:?}"))),
        }
    };
    if let Some(to) = stamp(TO_HEADER)? {
        identity.check_addressed(to).map_err(WireError::Identity)?;
    }
    if let Some(from) = stamp(FROM_HEADER)? {
        identity.check_peer(from).map_err(|why| {
            core.stats.identity_refused(from.id);
            if identity.should_log_refusal(from.id) {
                tracing::error!("raft: refusing node {}: {why}", from.id);
            }
            WireError::IdentityRefused(why)
        })?;
        // What the sender can apply (no header: a build without features). A request without `x-raft-from`
        // cannot be attributed; its sender is learned from its answers instead.
        let advertised = headers.get(FEATURES_HEADER).and_then(|v| v.to_str().ok());
        core.features.heard(from.id, advertised);
    }
    if let Some(advertised) = headers.get(PEERS_HEADER).and_then(|v| v.to_str().ok()) {
        identity.adopt(advertised);
    }
    Ok(())
}

fn raft_err<E: std::error::Error>(e: RaftError<TypeConfig, E>) -> WireError {
    WireError::Raft(e.to_string())
}

fn write_err(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> WireError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WireError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.raft_addr),
        },
        other => WireError::Raft(other.to_string()),
    }
}

async fn append(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle_raft(&st, &h, &body, |req: AppendEntriesRequest<TypeConfig>| async {
        let response = st.core.raft.append_entries(req).await.map_err(raft_err)?;
        // Any answer but "your vote is stale" means the sender is this node's current leader.
        if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
            st.core.note_leader_contact();
            // The current leader's view of the peers' incarnations wins over what this node learned: it made
            // the membership changes, so it saw a node removed and added again under the same id, which this
            // node may have missed (down, or caught up from a snapshot past the removal).
            if let Some(advertised) = h.get(PEERS_HEADER).and_then(|v| v.to_str().ok()) {
                st.core.identity.adopt_from_leader(advertised);
            }
        }
        Ok(response)
    })
    .await
}

async fn vote(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle_raft(&st, &h, &body, |req: VoteRequest<TypeConfig>| async {
        st.core.raft.vote(req).await.map_err(raft_err)
    })
    .await
}

async fn pre_vote(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle_raft(&st, &h, &body, |req: VoteRequest<TypeConfig>| async {
        st.core.raft.pre_vote(req).await.map_err(raft_err)
    })
    .await
}

async fn transfer_leader(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle_raft(&st, &h, &body, |req: TransferLeaderRequest<TypeConfig>| async {
        st.core
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(|e| WireError::Raft(e.to_string()))
    })
    .await
}

/// Admin: hand the leadership to voter `to` (`None`: the most caught-up one); answers the new leader's id once
/// it leads (waiting up to [`TRANSFER_WAIT`]).
async fn transfer(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    let core = Arc::clone(&st.core);
    handle(&st, &h, &body, |to: Option<u64>| async move {
        core.transfer_leadership(to, TRANSFER_WAIT).await
    })
    .await
}

/// How long an admin leadership transfer waits for the target to lead: its log must catch up with the leader's
/// (usually at once) and it must win one election round.
const TRANSFER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn snapshot(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    let st2 = st.clone();
    handle_raft(&st, &h, &body, |c: SnapshotChunk| async move {
        let st = st2;
        let sender = c.transfer.split('-').next().unwrap_or("").to_owned();
        let finished = {
            let mut incoming = st.incoming.lock().unwrap_or_else(|p| p.into_inner());
            if c.offset == 0 {
                let path = st.snap_dir.join(format!("recv-{}.part", c.transfer));
                let file = File::create(&path).map_err(|e| WireError::Raft(e.to_string()))?;
                if let Some(old) = incoming.insert(
                    sender.clone(),
                    Incoming {
                        transfer: c.transfer.clone(),
                        file,
                        path,
                        len: 0,
                    },
                ) {
                    let _ = std::fs::remove_file(old.path);
                }
            }
            let Some(inc) = incoming.get_mut(&sender) else {
                return Err(WireError::BadRequest("snapshot chunk without a transfer".into()));
            };
            if inc.transfer != c.transfer || inc.len != c.offset {
                return Err(WireError::BadRequest(format!(
                    "snapshot chunk at {} of {}, expected {} of {}",
                    c.offset, c.transfer, inc.len, inc.transfer
                )));
            }
            inc.file
                .write_all(&c.data)
                .map_err(|e| WireError::Raft(e.to_string()))?;
            inc.len += c.data.len() as u64;
            match c.done {
                Some(done) => incoming.remove(&sender).map(|inc| (inc, done)),
                None => None,
            }
        };
        let Some((inc, (vote, meta))) = finished else {
            return Ok(None);
        };
        inc.file.sync_all().map_err(|e| WireError::Raft(e.to_string()))?;
        let file = File::open(&inc.path).map_err(|e| WireError::Raft(e.to_string()))?;
        // The state machine copies the file into its own snapshot directory; the received copy can go.
        let _ = std::fs::remove_file(&inc.path);
        let resp = st
            .core
            .raft
            .install_full_snapshot(vote, Snapshot { meta, snapshot: file })
            .await
            .map_err(|e| WireError::Raft(e.to_string()))?;
        Ok(Some(resp))
    })
    .await
}

async fn init(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&st, &h, &body, |members: Vec<(u64, NodeInfo)>| async {
        let members: BTreeMap<u64, NodeInfo> = members.into_iter().collect();
        st.core.raft.initialize(members).await.map_err(raft_err)
    })
    .await
}

async fn add_learner(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    let core = st.core.clone();
    handle(&st, &h, &body, |(id, node): (u64, NodeInfo)| async move {
        core.raft
            .add_learner(id, node, false)
            .await
            .map(|r| r.log_id.index)
            .map_err(write_err)
    })
    .await
}

async fn membership(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    let core = st.core.clone();
    handle(&st, &h, &body, |change: MembershipChange| async move {
        let (voters, learners): (BTreeSet<u64>, BTreeSet<u64>) = {
            let m = core.raft.metrics();
            let m = m.borrow_watched();
            let mem = m.membership_config.membership();
            (mem.voter_ids().collect(), mem.learner_ids().collect())
        };
        let members: ChangeMembers<u64, NodeInfo> = match change {
            MembershipChange::Promote(id) => {
                if voters.contains(&id) {
                    return Ok(0);
                }
                if !learners.contains(&id) {
                    return Err(WireError::BadRequest(format!("node {id} is not a learner")));
                }
                // A learner still catching up would be a voter acknowledging nothing (`membership_guard`).
                core.check_promote(id).await?;
                ChangeMembers::AddVoterIds(BTreeSet::from([id]))
            }
            MembershipChange::Remove(id) if voters.contains(&id) => {
                // Without a majority of the new voters acknowledging, the joint config never commits.
                core.check_remove(id)?;
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            }
            MembershipChange::Remove(id) if learners.contains(&id) => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
            MembershipChange::Remove(id) => {
                return Err(WireError::BadRequest(format!("node {id} is not a member")));
            }
        };
        core.raft
            .change_membership(members, false)
            .await
            .map(|r| r.log_id.index)
            .map_err(write_err)
    })
    .await
}

async fn status(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&st, &h, &body, |(): ()| async { Ok(Status::of(&st.core)) }).await
}

/// Admin: what this node's application last published about itself ([`crate::app_health`]).
async fn app_health(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&st, &h, &body, |(): ()| async {
        Ok(st.app_health.lock().unwrap_or_else(|p| p.into_inner()).clone())
    })
    .await
}

/// What this node knows of a peer's votes and acknowledgements ([`crate::rollback`]); an answer (the token was
/// right) names this node in [`crate::rollback::KNOWN_BY_HEADER`], which the start check requires of the peer it
/// asked.
async fn known_of(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    let known = |peer: u64| {
        let k = st.core.net.witness().known_of(peer);
        async move { Ok(k) }
    };
    let mut response = handle(&st, &h, &body, known).await;
    if response.status() == StatusCode::OK {
        response.headers_mut().insert(
            crate::rollback::KNOWN_BY_HEADER,
            axum::http::HeaderValue::from(st.core.id),
        );
    }
    response
}

async fn write(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&st, &h, &body, |req: Request| st.core.write_local(req)).await
}

async fn linearize(State(st): State<ServerState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&st, &h, &body, |_: Request| st.core.linearize_local()).await
}
