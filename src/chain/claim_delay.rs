//! `transaction.claim_delay_blocks` against the chain's claim window.
//!
//! Why: a claim is first sent `claim_delay_blocks` after its window opens, but no later than
//! `claim_close − submission_buffer_blocks` ([`first_claim_send_height`]), and a send the chain does not confirm
//! is sent once more at a later block up to that same height (module `miner::lifecycle`). The config accepts
//! delays up to 100 whatever the chain; on a chain whose window is shorter than the delay plus the buffer plus
//! one block, the first send is clamped to the last height allowed and nothing can be re-sent: one claim tx that
//! does not land (a full mempool, a node that drops it, a leader change at that block) loses the session's whole
//! reward, to let a few late relays in. The window comes from the node's current shared params (spec §3:
//! `ClaimWindowClose = ClaimWindowOpen + claim_window_close_offset_blocks`), so the check needs the node, like
//! `pocket_node.chain_id` (`super::chain_id`): `relay-miner validate` and `relay-miner run` refuse such a delay,
//! and start without the check when the node cannot be read.
//!
//! Windows the chain itself made too short for a re-send, whatever the delay, are logged at ERROR ([`short_windows`]):
//! they are the chain's to change, not a config error.
//!
//! A delay is refused only when it is what takes the re-send away: on a window so short that even no delay leaves
//! fewer than two sends (the buffer's doing), any delay runs the same sends as none.

use std::time::Duration;

use super::grpc::{GrpcClient, GrpcTls};
use super::query::ChainError;
use crate::protocol::session::first_claim_send_height;
use crate::protocol::wire::{self, method};

/// Sends of one claim the delay must leave room for: the first and one re-send (`EngineConfig::max_resends`).
pub const MIN_CLAIM_SENDS: i64 = 2;

/// Why the claim delay check did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimDelayError {
    /// The delay leaves fewer than [`MIN_CLAIM_SENDS`] sends in the chain's claim window.
    #[error(
        "{delay} leaves {sends} claim send(s) in the chain's claim window of {window} blocks (shared param \
         claim_window_close_offset_blocks) less transaction.submission_buffer_blocks ({buffer}): the first send is \
         moved to the last height the window allows and a claim tx that does not land is not sent again (its \
         session's reward is lost); use at most {max}"
    )]
    TooLong {
        /// `transaction.claim_delay_blocks`.
        delay: u64,
        /// `claim_window_close_offset_blocks` of the node's shared params.
        window: u64,
        /// `transaction.submission_buffer_blocks`.
        buffer: u64,
        /// Claim sends the delay leaves.
        sends: i64,
        /// The longest delay that leaves [`MIN_CLAIM_SENDS`] sends (or as many as no delay).
        max: u64,
    },
    /// The node's shared params could not be read: nothing was compared.
    #[error("the shared params of the node at {url} could not be read: {reason}")]
    Unchecked {
        /// The node's gRPC URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Claim sends possible with `delay` and `buffer` in a claim window of `window` blocks (`claim_close −
/// claim_open`): heights from the first send ([`first_claim_send_height`]) up to `claim_close − buffer`, one
/// send per block.
pub fn claim_sends(window: u64, delay: u64, buffer: u64) -> i64 {
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let close = as_i64(window);
    let last = close.saturating_sub(as_i64(buffer));
    let first = first_claim_send_height(0, close, as_i64(delay), as_i64(buffer));
    last.saturating_sub(first).saturating_add(1).max(0)
}

/// Whether `delay` leaves enough claim sends in the window of `params` (module docs).
pub fn check(params: &wire::SharedParams, delay: u64, buffer: u64) -> Result<(), ClaimDelayError> {
    let window = params.claim_window_close_offset_blocks;
    let sends = claim_sends(window, delay, buffer);
    let undelayed = claim_sends(window, 0, buffer);
    if sends >= MIN_CLAIM_SENDS || sends >= undelayed {
        return Ok(());
    }
    // `claim_sends` falls by one per block of delay from `undelayed` (≥ 2 here) down to 1.
    let max = u64::try_from(undelayed - MIN_CLAIM_SENDS).unwrap_or(0);
    Err(ClaimDelayError::TooLong {
        delay,
        window,
        buffer,
        sends,
        max,
    })
}

/// Sends of one proof possible with `buffer` in a proof window of `window` blocks (`proof_close − proof_open`):
/// heights from `proof_open` up to `proof_close − buffer`, one send per block (`miner::lifecycle`).
pub fn proof_sends(window: u64, buffer: u64) -> i64 {
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    as_i64(window).saturating_sub(as_i64(buffer)).saturating_add(1).max(0)
}

/// What the chain's windows leave of the claim and proof sends with no delay (`None`: both at least
/// [`MIN_CLAIM_SENDS`]). Not a config error (the windows are the chain's), but a window that leaves no send
/// loses every session's reward (claims) or slashes every required proof (proofs), and one that leaves a single
/// send loses it to the first tx that does not land: [`check_node`] logs it at ERROR for `run` and `validate`.
pub fn short_windows(params: &wire::SharedParams, buffer: u64) -> Option<String> {
    let claims = claim_sends(params.claim_window_close_offset_blocks, 0, buffer);
    let proofs = proof_sends(params.proof_window_close_offset_blocks, buffer);
    let describe = |what: &str, param: &str, window: u64, sends: i64, lost: &str| {
        (sends < MIN_CLAIM_SENDS).then(|| {
            let outcome = if sends == 0 {
                format!("no {what} can be sent: {lost}")
            } else {
                format!("a {what} has one send and no re-send: one tx that does not land and {lost}")
            };
            format!(
                "the chain's {what} window ({param} = {window}) less transaction.submission_buffer_blocks ({buffer}) \
                 leaves {sends} {what} send(s); {outcome}"
            )
        })
    };
    let found: Vec<String> = [
        describe(
            "claim",
            "claim_window_close_offset_blocks",
            params.claim_window_close_offset_blocks,
            claims,
            "the session's reward is lost",
        ),
        describe(
            "proof",
            "proof_window_close_offset_blocks",
            params.proof_window_close_offset_blocks,
            proofs,
            "a required proof is missed and the supplier slashed",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!found.is_empty()).then(|| found.join("; "))
}

/// The node's current shared params (`/pocket.shared.Query/Params`).
pub async fn node_shared_params(grpc: &GrpcClient) -> Result<wire::SharedParams, ChainError> {
    let response: wire::QuerySharedParamsResponse =
        grpc.unary(method::SHARED_PARAMS, wire::QueryParamsRequest {}).await?;
    response
        .params
        .ok_or_else(|| ChainError::BadResponse("shared Params without params".into()))
}

/// [`check`] against the shared params of the node `grpc` talks to; windows too short for a re-send whatever the
/// delay ([`short_windows`]) are logged at ERROR.
pub async fn check_node(grpc: &GrpcClient, delay: u64, buffer: u64) -> Result<(), ClaimDelayError> {
    let params = node_shared_params(grpc).await.map_err(|e| ClaimDelayError::Unchecked {
        url: grpc.url().to_string(),
        reason: e.to_string(),
    })?;
    if let Some(problem) = short_windows(&params, buffer) {
        tracing::error!(url = %grpc.url(), "{problem}");
    }
    check(&params, delay, buffer)
}

/// [`check_node`] for callers without a tokio runtime (`relay-miner validate`), through
/// [`super::grpc::block_on_node`]. Each step is bounded by `timeout`.
pub fn check_blocking(
    url: &str,
    tls: &GrpcTls,
    timeout: Duration,
    delay: u64,
    buffer: u64,
) -> Result<(), ClaimDelayError> {
    super::grpc::block_on_node(url, tls, timeout, move |grpc| async move {
        check_node(&grpc, delay, buffer).await
    })
    .unwrap_or_else(|reason| {
        Err(ClaimDelayError::Unchecked {
            url: url.to_string(),
            reason,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(window: u64) -> wire::SharedParams {
        wire::SharedParams {
            num_blocks_per_session: 10,
            claim_window_open_offset_blocks: 1,
            claim_window_close_offset_blocks: window,
            ..Default::default()
        }
    }

    /// Windows that leave fewer than two sends with no delay are described (claims and proofs each); the
    /// mainnet-like ones are not.
    #[test]
    fn windows_too_short_for_a_resend_are_described() {
        let windows = |claim: u64, proof: u64| wire::SharedParams {
            proof_window_close_offset_blocks: proof,
            ..params(claim)
        };
        assert_eq!(short_windows(&windows(10, 10), 1), None);
        assert_eq!(short_windows(&windows(2, 2), 1), None, "two sends each");
        let one_claim = short_windows(&windows(1, 4), 1).unwrap();
        assert!(one_claim.contains("leaves 1 claim send(s)"), "{one_claim}");
        assert!(one_claim.contains("no re-send"), "{one_claim}");
        assert!(!one_claim.contains("proof"), "{one_claim}");
        let no_proof = short_windows(&windows(4, 0), 1).unwrap();
        assert!(
            no_proof.contains("leaves 0 proof send(s); no proof can be sent"),
            "{no_proof}"
        );
        assert!(no_proof.contains("slashed"), "{no_proof}");
        let both = short_windows(&windows(4, 4), 4).unwrap();
        assert!(both.contains("claim") && both.contains("proof"), "{both}");
        assert!(both.contains("submission_buffer_blocks (4)"), "{both}");
    }

    #[test]
    fn proof_sends_count_the_heights_from_the_open_to_the_last_allowed() {
        assert_eq!(proof_sends(4, 1), 4);
        assert_eq!(proof_sends(1, 1), 1);
        assert_eq!(proof_sends(0, 1), 0);
        assert_eq!(proof_sends(2, 5), 0);
    }

    /// Sends run from `claim_open + delay` (clamped) to `claim_close − buffer`, one per block.
    #[test]
    fn claim_sends_count_the_heights_from_the_first_send_to_the_last_allowed() {
        // The simulator's window (4 blocks) with the default buffer: sends at open+1..=open+3.
        assert_eq!(claim_sends(4, 1, 1), 3);
        assert_eq!(claim_sends(4, 0, 1), 4);
        assert_eq!(claim_sends(4, 2, 1), 2);
        assert_eq!(claim_sends(4, 3, 1), 1, "the first send is the last allowed");
        assert_eq!(claim_sends(4, 100, 1), 1, "clamped to claim_close − buffer");
        assert_eq!(claim_sends(0, 0, 0), 1);
        assert_eq!(claim_sends(1, 5, 1), 1, "the window only allows claim_open");
        assert_eq!(
            claim_sends(1, 0, 3),
            0,
            "a buffer longer than the window leaves no send"
        );
    }

    /// Mainnet's window (10 blocks) takes delays up to 8 with the default buffer; 9 and more leave one send and
    /// are refused, naming the window and the longest delay that fits. Where even no delay leaves fewer than two
    /// sends, no delay is refused: it changes nothing.
    #[test]
    fn a_delay_that_takes_the_resend_away_is_refused() {
        assert_eq!(check(&params(10), 8, 1), Ok(()));
        let refused = check(&params(10), 9, 1).unwrap_err();
        assert_eq!(
            refused,
            ClaimDelayError::TooLong {
                delay: 9,
                window: 10,
                buffer: 1,
                sends: 1,
                max: 8
            }
        );
        let text = refused.to_string();
        for part in ["9 leaves 1 claim send(s)", "window of 10 blocks", "at most 8"] {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
        assert!(matches!(
            check(&params(4), 100, 1),
            Err(ClaimDelayError::TooLong { max: 2, .. })
        ));
        assert_eq!(check(&params(4), 2, 1), Ok(()));
        assert_eq!(check(&params(1), 100, 1), Ok(()), "one send whatever the delay");
        assert!(
            matches!(
                check(&params(2), 1, 1),
                Err(ClaimDelayError::TooLong { max: 0, sends: 1, .. })
            ),
            "two sends without a delay, one with"
        );
    }
}
