//! Claim lookups ([`ChainClient::claim`], [`ChainClient::claim_at`]): what decides whether a claim (and,
//! through its proof validation status, a proof) landed, so they are read as of the height the miner acts on,
//! never from whatever older state a load-balanced node has.

use super::{ChainClient, ChainError};
use crate::protocol::wire::{self, method};

impl ChainClient {
    /// The claim of (session, supplier), if on chain, as of the newest height this client has seen
    /// ([`ChainClient::latest_height`]: the tip the miner acts on), see [`ChainClient::claim_at`]; unpinned
    /// before any height is known.
    pub async fn claim(&self, session_id: &str, supplier: &str) -> Result<Option<wire::Claim>, ChainError> {
        let height = self.latest_height();
        self.claim_at(session_id, supplier, (height > 0).then_some(height))
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
                (Some(claim), _, _) => Ok(Some(claim)),
                (None, Some(served), Some(height)) if served < height => Err(ChainError::Behind {
                    query: "claim",
                    height,
                    served,
                }),
                (None, _, _) => Ok(None),
            },
            // Never a refusal of the height (`is_not_found` excludes it).
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) if height.is_some() && e.is_height_in_the_future() => {
                let unpinned = self
                    .grpc
                    .unary_pinned::<_, wire::QueryGetClaimResponse>(method::CLAIM, request, None)
                    .await;
                match unpinned {
                    Ok((response, _)) if response.claim.is_some() => Ok(response.claim),
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
