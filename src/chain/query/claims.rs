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
    /// miner re-sends it (a fee) or, past the window, expires the session as lost (the whole reward). Pinned to
    /// `height` (`x-cosmos-block-height`, [`GrpcClient::unary_pinned`]), a node without that height refuses: a
    /// retryable [`ChainError::Grpc`] ([`GrpcError::is_height_in_the_future`]). An answer read from an older
    /// state (a proxy that drops the header) is [`ChainError::Behind`]. The miner looks again at its next
    /// block; neither is ever "absent".
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
        let behind = |served: i64| ChainError::Behind {
            query: "claim",
            height: height.unwrap_or(0),
            served,
        };
        match self
            .grpc
            .unary_pinned::<_, wire::QueryGetClaimResponse>(method::CLAIM, request, height)
            .await
        {
            Ok((_, Some(served))) if height.is_some_and(|h| served < h) => Err(behind(served)),
            Ok((r, _)) => Ok(r.claim),
            // Never a refusal of the height (`is_not_found` excludes it): that one stays a (retryable) error.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
