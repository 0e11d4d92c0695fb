//! The HTTP wire of the raft port: routes, the cluster-token header, the pooled client, wire errors.
//!
//! Every request is a `POST` whose body is a postcard-encoded message (openraft's own serde types for raft RPCs,
//! this crate's types for admin RPCs); every answer is a postcard-encoded `Result<T, WireError>`. The pre-shared
//! cluster token travels in [`TOKEN_HEADER`] and is checked on every request (401 otherwise). Raft RPCs and
//! their answers also carry the identity headers of [`crate::identity`] and the features header of
//! [`crate::features`] (what the sender can apply).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::features::{FEATURES_HEADER, Features};
use crate::identity::{FROM_HEADER, Identity, PEERS_HEADER, Stamp, TO_HEADER};
use crate::types::{decode, encode};

/// Checks the identity an answer of node `target` carries (none: a node of an older version, not checked).
fn check_answer(me: &Identity, target: u64, headers: &http::HeaderMap) -> Result<(), WireError> {
    let Some(value) = headers.get(FROM_HEADER) else {
        return Ok(());
    };
    let stamp = value
        .to_str()
        .ok()
        .and_then(Stamp::parse)
        .ok_or_else(|| WireError::Identity(format!("malformed {FROM_HEADER} answer header {value:?}")))?;
    if stamp.id != target {
        return Err(WireError::Identity(format!(
            "node {} answered a request for raft node {target} (a wrong address, or two nodes with one id)",
            stamp.id
        )));
    }
    me.check_peer(stamp).map_err(WireError::Identity)
}

/// Header carrying the pre-shared cluster token.
pub const TOKEN_HEADER: &str = "x-raft-cluster-token";
/// Largest request or response body the raft port and its clients accept (snapshots travel in chunks).
pub const MAX_BODY: usize = 64 << 20;
/// Largest encoded raft entry payload a write may propose: an append RPC carries one such entry at most beyond
/// its byte budget ([`crate::RaftConfig::max_payload_bytes`]), and a forwarded write carries one, so both stay
/// under [`MAX_BODY`] with room for framing. A relay too large for it is refused (`StorageError::TooLarge`);
/// relay batches are cut at [`crate::BatchConfig::max_batch_bytes`].
pub const MAX_ENTRY_BYTES: usize = MAX_BODY - (16 << 20);

/// Route paths.
pub mod path {
    /// openraft AppendEntries.
    pub const APPEND: &str = "/raft/append";
    /// openraft RequestVote.
    pub const VOTE: &str = "/raft/vote";
    /// openraft pre-vote.
    pub const PRE_VOTE: &str = "/raft/pre-vote";
    /// One chunk of a snapshot transfer.
    pub const SNAPSHOT: &str = "/raft/snapshot";
    /// openraft TransferLeader (a leader handing its role to a voter).
    pub const TRANSFER_LEADER: &str = "/raft/transfer-leader";
    /// Admin: initialize the cluster.
    pub const INIT: &str = "/admin/init";
    /// Admin: add a learner.
    pub const ADD_LEARNER: &str = "/admin/add-learner";
    /// Admin: change the voter set.
    pub const MEMBERSHIP: &str = "/admin/membership";
    /// Admin: status.
    pub const STATUS: &str = "/admin/status";
    /// Admin: hand the leadership to a voter.
    pub const TRANSFER: &str = "/admin/transfer-leader";
    /// Client write (forwarded by followers to the leader).
    pub const WRITE: &str = "/admin/write";
    /// Linearizable read barrier: the leader answers the log index a follower must apply before reading.
    pub const LINEARIZE: &str = "/admin/linearize";
}

/// An error carried in an answer (or built by the client for transport failures).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WireError {
    /// The node could not be reached (connect failure): the request was not delivered.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer within the deadline: the request may or may not have taken effect.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The cluster token was missing or wrong.
    #[error("unauthorized: wrong cluster token")]
    Unauthorized,
    /// This node is not the leader; the leader, if known.
    #[error("not leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// Leader node id.
        leader_id: Option<u64>,
        /// Leader raft address.
        leader_addr: Option<String>,
    },
    /// The request could not be decoded or is invalid.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Raft refused or failed the request (membership change in progress, shutting down, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// The request or answer came from, or was addressed to, another node or another incarnation of a node id
    /// (a wiped data directory, a wrong address; see [`crate::identity`]).
    #[error("node identity: {0}")]
    Identity(String),
    /// The answering node refused the caller: it knows the caller's node id under another incarnation (the
    /// caller's data directory was wiped or replaced; see [`crate::identity`]).
    #[error("this node is refused: {0}")]
    IdentityRefused(String),
}

/// A pooled HTTP client for one peer address (connections are kept alive and reused).
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
}

impl PeerClient {
    /// A client for `addr` (`host:port`) sending `token`.
    pub fn new(addr: &str, token: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(connector);
        Self {
            client,
            base: format!("http://{addr}"),
            token: token.to_owned(),
        }
    }

    /// Sends `req` to `path` and decodes the answer, within `timeout`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, WireError> {
        let body = encode(req).map_err(|e| WireError::BadRequest(e.to_string()))?;
        self.call_raw(path, body, timeout).await
    }

    /// Sends an already encoded body.
    pub async fn call_raw<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, WireError> {
        Ok(self.call_as(path, body, timeout, None, None).await?.0)
    }

    /// [`PeerClient::call`], also returning the value of the answer's header `header` (`None`: absent or not
    /// text).
    pub async fn call_with_header<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
        header: &str,
    ) -> Result<(Resp, Option<String>), WireError> {
        let body = encode(req).map_err(|e| WireError::BadRequest(e.to_string()))?;
        self.call_as(path, body, timeout, None, Some(header)).await
    }

    /// Sends a raft RPC from this node (`identity`, advertising `features`) to node `target`: the request carries
    /// both identities and this node's features, the answer's identity is checked ([`crate::identity`]) and its
    /// features recorded ([`crate::features`]; a failed connection forgets them). A refusal of this node's
    /// identity by the target is recorded in `identity`.
    pub async fn call_raft<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
        (identity, features): (&Identity, &Features),
        target: u64,
    ) -> Result<Resp, WireError> {
        let result = self
            .call_as(path, body, timeout, Some((identity, features, target)), None)
            .await
            .map(|(resp, _)| resp);
        if let Err(WireError::IdentityRefused(why)) = &result {
            identity.note_refused(why);
        }
        result
    }

    /// Sends `body`; with `peer`, as a raft RPC of that node ([`PeerClient::call_raft`]); returns the decoded
    /// answer and the value of its header `header` when one is asked for.
    async fn call_as<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
        peer: Option<(&Identity, &Features, u64)>,
        header: Option<&str>,
    ) -> Result<(Resp, Option<String>), WireError> {
        let mut request = http::Request::post(format!("{}{path}", self.base))
            .header(TOKEN_HEADER, &self.token)
            .header(http::header::CONTENT_TYPE, "application/octet-stream");
        if let Some((me, features, target)) = peer {
            request = request
                .header(FROM_HEADER, me.stamp().render())
                .header(TO_HEADER, me.target(target).render())
                .header(PEERS_HEADER, me.advertised());
            if let Some(own) = features.own().header() {
                request = request.header(FEATURES_HEADER, own);
            }
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WireError::BadRequest(e.to_string()))?;
        let fut = async {
            let resp = self.client.request(request).await.map_err(|e| {
                // The target is down or restarting (maybe into another build): what it advertised is forgotten
                // until it answers again.
                if let Some((_, features, target)) = peer {
                    features.forget(target);
                }
                if e.is_connect() {
                    WireError::Unreachable(format!("{}: {e}", self.base))
                } else {
                    WireError::Raft(format!("{}: transport: {e}", self.base))
                }
            })?;
            let status = resp.status();
            let asked = header.and_then(|h| resp.headers().get(h)?.to_str().ok().map(str::to_owned));
            if let Some((me, features, target)) = peer {
                check_answer(me, target, resp.headers())?;
                if status != http::StatusCode::UNAUTHORIZED {
                    let advertised = resp.headers().get(FEATURES_HEADER).and_then(|v| v.to_str().ok());
                    features.heard(target, advertised);
                }
            }
            let bytes = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| WireError::Raft(format!("{}: body: {e}", self.base)))?
                .to_bytes();
            if status == http::StatusCode::UNAUTHORIZED {
                return Err(WireError::Unauthorized);
            }
            if !status.is_success() {
                return Err(WireError::Raft(format!(
                    "{}: http {status}: {}",
                    self.base,
                    String::from_utf8_lossy(&bytes)
                )));
            }
            let answer = decode::<Result<Resp, WireError>>(&bytes)
                .map_err(|e| WireError::BadRequest(format!("undecodable answer: {e}")))??;
            Ok::<_, WireError>((answer, asked))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Timeout(timeout)),
        }
    }
}
