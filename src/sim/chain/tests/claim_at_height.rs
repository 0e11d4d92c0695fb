//! `Claim` queries as of a height, over gRPC: pinned by the request (`x-cosmos-block-height`) they answer the
//! claim as the chain held it at that height (created, its proof validated, removed at settlement), a height the
//! node has not committed is refused as cosmos-sdk refuses it, and a lagging node (`query_lag_blocks`) answers
//! un-pinned queries from its older state and refuses pinned ones above it. [`ChainClient::claim_at`] takes a
//! refusal as an error, never "absent", unless the node's own state holds the claim.

use super::*;
use crate::chain::grpc::GrpcError;
use crate::chain::query::ChainError;
use crate::protocol::wire::method;

/// The fixture session's claim as of `height` (`None`: un-pinned).
async fn claim_at(f: &Fixture, height: Option<i64>) -> Result<Option<wire::Claim>, ChainError> {
    f.client
        .claim_at(&f.header.session_id, &f.supplier_address, height)
        .await
}

/// A pinned query's refusal: cosmos-sdk's "height in the future", `InvalidArgument`, retryable, never "absent".
fn assert_refused(result: Result<Option<wire::Claim>, ChainError>, what: &str) {
    let err = result.expect_err(what);
    assert!(
        matches!(
            &err,
            ChainError::Grpc(GrpcError::Status { code: tonic::Code::InvalidArgument, message, .. })
                if message.contains("cannot query with height in the future; please provide a valid height")
        ),
        "{what}: {err:?}"
    );
    assert!(err.is_retryable(), "{what}: {err}");
}

#[tokio::test]
async fn a_claim_query_answers_as_of_the_pinned_height_and_a_lagging_node_as_of_its_own() {
    let (f, proof) = claimed_with_proof().await;
    let landed = last_record(&f.chain, "claim").height;
    let w = windows(&f);
    assert_eq!(landed, w.claim_open);
    // Created: absent before its block, there from it on.
    assert_eq!(claim_at(&f, Some(landed - 1)).await.unwrap(), None);
    let created = claim_at(&f, Some(landed)).await.unwrap().expect("claim at its block");
    assert_eq!(Some(&created), claim_at(&f, None).await.unwrap().as_ref());
    // Updated: its proof validated in block `proved`; the height before still has the claim without it.
    submit(&f, proof, &f.supplier).await;
    let proved = f.chain.produce_block();
    let validated = wire::ClaimProofStatus::Validated as i32;
    assert_ne!(
        claim_at(&f, Some(proved - 1))
            .await
            .unwrap()
            .unwrap()
            .proof_validation_status,
        validated
    );
    assert_eq!(
        claim_at(&f, Some(proved))
            .await
            .unwrap()
            .unwrap()
            .proof_validation_status,
        validated
    );
    assert_eq!(claim_at(&f, Some(landed)).await.unwrap(), Some(created.clone()));
    // Removed at settlement: still there the block before.
    advance_to(&f.chain, w.settlement);
    assert!(claim_at(&f, Some(w.settlement - 1)).await.unwrap().is_some());
    assert_eq!(claim_at(&f, Some(w.settlement)).await.unwrap(), None);
    assert_eq!(claim_at(&f, None).await.unwrap(), None);
    // A height the node has not committed.
    let tip = f.chain.height();
    assert_refused(claim_at(&f, Some(tip + 1)).await, "one block ahead");

    // A node 3 blocks behind, from the settlement block on: un-pinned, it answers as of its height (the claim
    // still there, stamped with that height); pinned above it, it refuses; pinned at or below it, it answers.
    advance_to(&f.chain, w.settlement + 2);
    f.chain.state().query_lag_blocks = 3;
    let request = wire::QueryGetClaimRequest {
        session_id: f.header.session_id.clone(),
        supplier_operator_address: f.supplier_address.clone(),
    };
    let (stale, served) = f
        .client
        .grpc()
        .unary_at::<_, wire::QueryGetClaimResponse>(method::CLAIM, request)
        .await
        .unwrap();
    assert_eq!(served, Some(w.settlement - 1));
    assert_eq!(stale.claim.map(|c| c.proof_validation_status), Some(validated));
    for pinned in [w.settlement, w.settlement + 2] {
        let request = wire::QueryGetClaimRequest {
            session_id: f.header.session_id.clone(),
            supplier_operator_address: f.supplier_address.clone(),
        };
        let refused = f
            .client
            .grpc()
            .unary_pinned::<_, wire::QueryGetClaimResponse>(method::CLAIM, request, Some(pinned))
            .await
            .map(|_| None);
        assert_refused(refused.map_err(ChainError::from), &format!("pinned at {pinned}"));
    }
    // The client, refused, takes the claim the node still holds from its un-pinned answer.
    let held = claim_at(&f, Some(w.settlement + 2)).await.unwrap();
    assert_eq!(held.map(|c| c.root_hash), Some(created.root_hash.clone()));
    assert!(claim_at(&f, Some(w.settlement - 1)).await.unwrap().is_some());
    assert_eq!(claim_at(&f, Some(landed - 1)).await.unwrap(), None);
    // Caught up: the latest state.
    f.chain.state().query_lag_blocks = 0;
    assert_eq!(claim_at(&f, Some(w.settlement + 2)).await.unwrap(), None);
}
