//! Claim lookups ([`ChainClient::claim`], [`ChainClient::claim_at`], [`ChainClient::claim_at_tip`]): what
//! decides whether a claim (and, through its proof validation status, a proof) landed, so they are read as of
//! the height the miner acts on, never from whatever older state a load-balanced node has.

use super::{ChainClient, ChainError};
use crate::protocol::wire::{self, method};

impl ChainClient {
    /// The claim of (session, supplier), if on chain, as of the newest height this client has seen
    /// ([`ChainClient::latest_height`]: the tip the miner acts on), see [`ChainClient::claim_at`]; unpinned
    /// before any height is known.
    pub async fn claim(&self, session_id: &str, supplier: &str) -> Result<Option<wire::Claim>, ChainError> {
        Ok(self.claim_at_tip(session_id, supplier).await?.claim)
    }

    /// [`ChainClient::claim`], with the height the answer was read at ([`ChainClient::claim_as_of`]).
    pub async fn claim_at_tip(&self, session_id: &str, supplier: &str) -> Result<ClaimAnswer, ChainError> {
        let height = self.latest_height();
        self.claim_as_of(session_id, supplier, (height > 0).then_some(height))
            .await
    }

    /// The claim of (session, supplier) as of `height` (`None`: whatever state the answering node has).
    ///
    /// Behind a per-request load balancer a backend answers from its own state, which may be blocks behind the
    /// tip the miner acts on: a claim included in the last blocks of its window then reads "absent", and the
    /// miner re-sends it (a fee) or, past the window, expires the session as lost (the whole reward). So the
    /// query is pinned to `height` (`x-cosmos-block-height`, [`GrpcClient::unary_pinned`]); "absent" is taken
    /// only from a node that read it at `height` or later:
    /// - a node that has not committed `height` refuses the pin ([`GrpcError::is_height_in_the_future`]); it
    ///   is then asked without one, and a claim it holds is taken (a claim found at an older height is still
    ///   there, or was settled since: the miner's next lookup says so), else the refusal is returned: a
    ///   retryable [`ChainError::Grpc`];
    /// - an answer "absent" stamped with an older height (a proxy that dropped the request header) is
    ///   [`ChainError::Behind`] (retryable).
    ///
    /// The miner looks again at its next block; neither error is ever "absent". (A not-found *status* carries
    /// no height this client reads: from a node that ignored the pin it would still read "absent".)
    ///
    /// [`GrpcClient::unary_pinned`]: super::GrpcClient::unary_pinned
    /// [`GrpcError::is_height_in_the_future`]: super::GrpcError::is_height_in_the_future
    pub async fn claim_at(
        &self,
        session_id: &str,
        supplier: &str,
        height: Option<i64>,
    ) -> Result<Option<wire::Claim>, ChainError> {
        Ok(self.claim_as_of(session_id, supplier, height).await?.claim)
    }

    /// [`ChainClient::claim_at`], with the height the answer was read at: below `height` when a node behind
    /// answered with the claim it holds. What such a claim says of its proof (`proof_validation_status`) is as
    /// of that older height: a proof validated since reads "not validated" there ([`ClaimAnswer::behind`]; the
    /// miner's lookup takes that status as unknown and looks again at its next block).
    pub async fn claim_as_of(
        &self,
        session_id: &str,
        supplier: &str,
        height: Option<i64>,
    ) -> Result<ClaimAnswer, ChainError> {
        let request = wire::QueryGetClaimRequest {
            session_id: session_id.to_string(),
            supplier_operator_address: supplier.to_string(),
        };
        let answer = self
            .grpc
            .unary_pinned::<_, wire::QueryGetClaimResponse>(method::CLAIM, request.clone(), height)
            .await;
        match answer {
            Ok((response, served)) => match (response.claim, served, height) {
                (None, Some(served), Some(height)) if served < height => Err(ChainError::Behind {
                    query: "claim",
                    height,
                    served,
                }),
                (claim, served, asked) => Ok(ClaimAnswer {
                    claim,
                    as_of: served.or(asked),
                    asked,
                }),
            },
            // Never a refusal of the height (`is_not_found` excludes it).
            Err(e) if e.is_not_found() => Ok(ClaimAnswer {
                claim: None,
                as_of: height,
                asked: height,
            }),
            Err(e) if height.is_some() && e.is_height_in_the_future() => {
                let unpinned = self
                    .grpc
                    .unary_pinned::<_, wire::QueryGetClaimResponse>(method::CLAIM, request, None)
                    .await;
                match unpinned {
                    // Read below `height` (the node has not committed it), named or not in its answer.
                    Ok((response, served)) if response.claim.is_some() => Ok(ClaimAnswer {
                        claim: response.claim,
                        as_of: served.or(height.map(|h| h - 1)),
                        asked: height,
                    }),
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A claim lookup's answer ([`ChainClient::claim_as_of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimAnswer {
    /// The claim, if the node holds it.
    pub claim: Option<wire::Claim>,
    /// The height the answer was read at (the node's `x-cosmos-block-height`, else the height pinned, or the
    /// block before it from a node that refused it); `None` when neither is known.
    pub as_of: Option<i64>,
    /// The height asked about (`None`: un-pinned).
    pub asked: Option<i64>,
}

impl ClaimAnswer {
    /// The height asked about and the older one the answer was read at, when it was read below the height asked
    /// (a node behind answered with the claim it holds): what the claim says of its proof is not the chain's
    /// at the height asked.
    pub fn behind(&self) -> Option<(i64, i64)> {
        match (self.asked, self.as_of) {
            (Some(asked), Some(as_of)) if as_of < asked => Some((asked, as_of)),
            _ => None,
        }
    }
}
