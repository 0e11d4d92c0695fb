//! Shared params at a height ([`ChainClient::shared_params_at`], [`ChainClient::shared_params_for_relays`]):
//! the session grid and windows every check and every claim and proof is timed by, cached per session, and read
//! only from a node that knows the session's params (the miner), or from whatever node answers (the relay path).

use super::{AT_HEIGHT_TTL, BEHIND_ATTEMPTS, ChainClient, ChainError};
use crate::protocol::session::SessionGrid;
use crate::protocol::wire::{self, method};

/// What [`ChainClient::shared_params_from_a_node_that_knows`] got.
enum Known {
    /// From a node past the block before the session start (or one that does not say its height).
    Yes(wire::SharedParams),
    /// Only from nodes behind it: the last answer, and the height it was served at.
    Behind {
        params: Box<wire::SharedParams>,
        served: i64,
    },
}

impl ChainClient {
    /// Shared params in effect at `height` (`ParamsAtHeight`), cached per height up to the end of the current
    /// session.
    ///
    /// The chain answers a height it has not reached with today's params, which a governance change can still
    /// make wrong for that height (changes take effect at a session start), and callers (the relayer, before
    /// any signature check) may ask with a client-chosen height. So an answer is cached only when `height` is at
    /// most the end of the session of the latest known height ([`ChainClient::observe_height`]); the current
    /// session's params are fixed, and the relayer asks for them on every relay. Other answers are used, not
    /// stored (nothing is stored while no height is known).
    ///
    /// A height in the session of the last cached one takes that one's params without a query: x/shared makes a
    /// change effective at the next session start only, so a session's heights share their params. The relayer
    /// asks at every new block; without this, each block's first relays failed while the node was unreachable
    /// (refused in eager mode; served and then never mined in optimistic mode).
    ///
    /// The answer must come from a node that knows the session's params
    /// (`shared_params_from_a_node_that_knows`), else [`ChainError::Behind`]: the miner builds a
    /// session's schedule from them and keeps it. The relayer asks with
    /// [`ChainClient::shared_params_for_relays`].
    pub async fn shared_params_at(&self, height: i64) -> Result<wire::SharedParams, ChainError> {
        self.shared_params(height, false).await
    }

    /// [`ChainClient::shared_params_at`] for the relay path: when only nodes behind the session start answered
    /// (a load-balanced backend two or more blocks behind, at a session's first blocks), their answer is used,
    /// not cached, instead of refusing the relay: a governance change of the session timing is rare and lands
    /// at a session start, and the relayer checks timing (grace period, claim window) that the miner, which
    /// waits for a node that knows, keeps right for the claim.
    pub async fn shared_params_for_relays(&self, height: i64) -> Result<wire::SharedParams, ChainError> {
        self.shared_params(height, true).await
    }

    async fn shared_params(&self, height: i64, stale_ok: bool) -> Result<wire::SharedParams, ChainError> {
        if let Some(p) = self.shared_at.get(&height) {
            return Ok(p);
        }
        if let Some(p) = self.same_session_params(height) {
            self.shared_at.insert(height, p.clone(), Some(AT_HEIGHT_TTL));
            return Ok(p);
        }
        let latest = self.latest_height();
        let params = match self.shared_params_from_a_node_that_knows(height, latest).await? {
            Known::Yes(params) => params,
            Known::Behind { params, served } if stale_ok => {
                tracing::debug!(
                    height,
                    served,
                    "shared params from a node behind the session start, not cached"
                );
                return Ok(*params);
            }
            Known::Behind { served, .. } => {
                return Err(ChainError::Behind {
                    query: "shared params at height",
                    height,
                    served,
                });
            }
        };
        // A height above `latest` was answered with the params at `latest`: their grid gives the current session.
        let settled = latest > 0
            && (height <= latest || SessionGrid::new(&params).is_ok_and(|g| height <= g.session_end(latest)));
        if height > 0 && settled {
            self.shared_at.insert(height, params.clone(), Some(AT_HEIGHT_TTL));
            let mut last = self
                .last_shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.as_ref().is_none_or(|(h, _)| *h <= height) {
                *last = Some((height, params.clone()));
            }
        }
        Ok(params)
    }

    /// `ParamsAtHeight(height)` answered by a node that committed the block before `height`'s session start
    /// (`x-cosmos-block-height`), when that start is at most the latest height known: x/shared writes a change
    /// into its history when the change's tx lands, effective at the next session start, so a node behind that
    /// start's block before may not hold the entry the session takes, and answers the previous one. Cached for
    /// the session (and taken by [`ChainClient::same_session_params`] for its every height), the previous
    /// session's windows would time every claim and proof of the session wrongly. A node behind is asked up to
    /// [`BEHIND_ATTEMPTS`] times before [`ChainError::Behind`] (retryable), as [`ChainClient::at_height`] does;
    /// an answer without the header (a proxy that strips it) is taken as before. The session start is read on the
    /// answer's own grid: a change of the session length takes effect at the start that grid places.
    async fn shared_params_from_a_node_that_knows(&self, height: i64, latest: i64) -> Result<Known, ChainError> {
        let mut behind = None;
        for _ in 0..BEHIND_ATTEMPTS {
            let (response, at): (wire::QuerySharedParamsResponse, _) = self
                .grpc
                .unary_at(
                    method::SHARED_PARAMS_AT_HEIGHT,
                    wire::QueryParamsAtHeightRequest { height },
                )
                .await?;
            let params = response
                .params
                .ok_or_else(|| ChainError::BadResponse("ParamsAtHeight without params".into()))?;
            let start = SessionGrid::new(&params).map(|g| g.session_start(height));
            match (at, start) {
                (Some(at), Ok(start)) if latest > 0 && start <= latest && at < start - 1 => {
                    behind = Some((params, at));
                }
                _ => return Ok(Known::Yes(params)),
            }
        }
        match behind {
            Some((params, served)) => {
                tracing::debug!(
                    height,
                    served,
                    "the nodes answering shared params are behind the session start of the height asked about"
                );
                Ok(Known::Behind {
                    params: Box::new(params),
                    served,
                })
            }
            None => Err(ChainError::BadResponse("ParamsAtHeight: no answer".into())),
        }
    }

    /// The params of the last cached height when `height` is in its session (by those params' own grid, which
    /// places the next session start where a change would take effect).
    fn same_session_params(&self, height: i64) -> Option<wire::SharedParams> {
        if height <= 0 {
            return None;
        }
        let last = self
            .last_shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (cached, params) = last.as_ref()?;
        let grid = SessionGrid::new(params).ok()?;
        (grid.session_start(*cached) == grid.session_start(height)).then(|| params.clone())
    }
}
