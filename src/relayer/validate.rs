//! Relay request acceptance as the chain and poktroll's relayer do it (§2.6): session timing with the grace period
//! at the right params height, the ring signature against the application's ring at the session end height, the
//! session header equal to the chain's session, the supplier ours and in the session, reward eligibility.
//!
//! Split in two so both validation modes share it: [`check_structure`] is cheap and synchronous (decoded meta, a
//! well-formed session header, a supplier we hold a key for) and runs before anything is served in every mode;
//! [`validate`] does the chain-backed checks (all answered from the chain client's caches on the hot path) and
//! verifies the ring signature last, so a request that fails a cheap check never costs a signature verification.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::RelayError;
use crate::chain::query::{ChainClient, ChainError};
use crate::protocol::session::{self, SessionGrid, SessionWindows};
use crate::protocol::wire::{RelayRequest, SessionHeader};
use crate::protocol::{relay, ring};

/// What the structural checks resolve a request to.
#[derive(Debug, Clone)]
pub struct Structure {
    /// The session header named by the request.
    pub header: SessionHeader,
    /// Supplier operator address named by the request (one of ours).
    pub supplier: String,
}

/// What a valid request resolves to.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The on-chain session header (what the claim will carry).
    pub header: SessionHeader,
    /// Supplier operator address named by the request.
    pub supplier: String,
    /// Session windows at the session end height.
    pub windows: SessionWindows,
    /// Suppliers in the on-chain session (the app's stake is shared among them).
    pub session_suppliers: usize,
    /// The application's stake in uPOKT (current state).
    pub app_stake_upokt: u64,
    /// The application's `per_session_spend_limit` in uPOKT (current state); `None` when absent or zero (no
    /// limit, as the chain's settlement reads it). Read by `spend_limit_upokt`.
    pub app_spend_limit_upokt: Option<u64>,
    /// Shared `compute_units_to_tokens_multiplier` at the session end height.
    pub compute_units_to_tokens_multiplier: u64,
    /// Shared `compute_unit_cost_granularity` at the session end height.
    pub compute_unit_cost_granularity: u64,
    /// Sessions the app's stake pays for at once, from the shared params at the session end height
    /// ([`super::meter::pending_sessions`]).
    pub pending_sessions: u64,
    /// The tokenomics `global_inflation_per_claim` (current, cached): settlement counts it against the stake, so
    /// the meter's budget leaves room for it ([`super::meter::Budget::from_stake`]).
    pub global_inflation_per_claim: crate::protocol::inflation::InflationPerClaim,
    /// The application's expected ring (§2.4: every member's on-chain key) the signature was verified against.
    pub ring: Arc<[[u8; 33]]>,
}

/// The request's ring signature against the application's `expected` ring (§2.6 step 2): every member of the
/// signature's ring in `expected`, then the LSAG equations over the request's signable hash.
pub fn verify_signature(
    ring_verifier: &crate::protocol::ring::fast::FastRing,
    request: &RelayRequest,
    expected: &[[u8; 33]],
) -> Result<(), RelayError> {
    let signature = parse_signature(request)?;
    ring::verify_membership(&signature.ring, expected).map_err(RelayError::RingSignature)?;
    ring_verifier
        .verify(&signature, &relay::request_signable_hash(request))
        .map_err(RelayError::RingSignature)
}

fn parse_signature(request: &RelayRequest) -> Result<ring::RawRingSignature, RelayError> {
    let bytes = request
        .meta
        .as_ref()
        .map(|m| m.signature.as_slice())
        .unwrap_or_default();
    ring::RawRingSignature::parse(bytes).map_err(RelayError::RingSignature)
}

/// The synchronous checks every mode runs before serving: meta present, session header well formed, supplier ours.
pub fn check_structure(request: &RelayRequest, our_supplier: impl Fn(&str) -> bool) -> Result<Structure, RelayError> {
    let meta = request
        .meta
        .as_ref()
        .ok_or(RelayError::Malformed("request without meta".into()))?;
    let header = meta
        .session_header
        .clone()
        .ok_or(RelayError::Malformed("request without session header".into()))?;
    session::validate_header(&header).map_err(|e| RelayError::Malformed(e.to_string()))?;
    let supplier = meta.supplier_operator_address.clone();
    if !our_supplier(&supplier) {
        return Err(RelayError::NotOurSupplier(supplier));
    }
    Ok(Structure { header, supplier })
}

/// Validates `request` at the current height `height` (§2.6 steps 1–5); `structure` comes from
/// [`check_structure`]. `lsag_verified`: the signature's LSAG equations were already verified ([`verify_signature`],
/// before an optimistic relay was served); they depend only on the signature and the request, so they are not
/// run twice, while ring membership is checked again against the application's ring read now.
pub async fn validate(
    chain: &ChainClient,
    ring_verifier: &crate::protocol::ring::fast::FastRing,
    request: &RelayRequest,
    structure: Structure,
    height: i64,
    lsag_verified: bool,
) -> Result<Validated, RelayError> {
    let Structure { header, supplier } = structure;
    // (1) timing: params at the session end height; past sessions only within the grace period.
    let end = header.session_end_block_height;
    // §2.6: a relay is for the current session or a past one within grace. The header is not authenticated yet,
    // so a session ending after the current one is refused before any chain read keyed by its heights (each would
    // be an uncached query, and the chain answers a future height with today's params). A session starting above
    // `height` does not get here (the relayer answers it `session_not_started`, retryable: our view may lag the
    // gateway's); what this refuses is a session that started but claims to end after the current one.
    chain.observe_height(height);
    // The session grid of the current shared params (none while no height is known).
    let mut current_grid = None;
    if height > 0 {
        let grid = current_grid_at(chain, height).await?;
        let current_end = grid.session_end(height);
        if end > current_end {
            return Err(RelayError::SessionMismatch(format!(
                "session ending at {end} is after the current session (ending at {current_end})"
            )));
        }
        current_grid = Some(grid);
    }
    let params = chain.shared_params_for_relays(end).await.map_err(RelayError::Chain)?;
    let windows = SessionWindows::new(&params, end).map_err(|e| RelayError::Malformed(e.to_string()))?;
    let query_height = if end < height {
        if windows.grace_elapsed(height) {
            return Err(RelayError::SessionExpired { end, height });
        }
        end
    } else {
        height
    };
    // (5) reward eligibility: relays are mined only until the claim window opens.
    if height >= windows.claim_open {
        return Err(RelayError::SessionExpired { end, height });
    }
    // (2a) ring membership: every member of the signature's ring is in the app's ring at the session end height.
    // Framing only: points are decompressed (and checked) by the verifier, and only those without a table.
    let signature = parse_signature(request)?;
    let app = chain
        .application(&header.application_address)
        .await
        .map_err(RelayError::Chain)?
        .ok_or_else(|| RelayError::SessionMismatch(format!("application {} not staked", header.application_address)))?;
    let pending: BTreeMap<u64, Vec<String>> = app
        .pending_undelegations
        .iter()
        .map(|(k, v)| (*k, v.gateway_addresses.clone()))
        .collect();
    let addresses = ring::expected_ring_addresses(
        &app.address,
        &app.delegatee_gateway_addresses,
        &pending,
        ring_target_session_end(current_grid.as_ref(), end),
    );
    // §2.4 step 4: every address of the expected set resolves to its on-chain key, or there is no ring at all
    // (poktroll's ring client fails the whole ring). Skipping a keyless member would leave, for an app without
    // key and gateways, only the placeholder, whose private key derives from a public secret: anyone could sign,
    // and the chain would reject the proof.
    let mut expected = Vec::with_capacity(addresses.len());
    for address in &addresses {
        if *address == ring::placeholder_address() {
            expected.push(ring::placeholder_public_key());
            continue;
        }
        match chain.account_pubkey(address).await.map_err(RelayError::Chain)? {
            Some(key) => expected.push(key),
            None => {
                return Err(RelayError::RingSignature(ring::RingError::MemberWithoutPublicKey(
                    address.clone(),
                )));
            }
        }
    }
    ring::verify_membership(&signature.ring, &expected).map_err(RelayError::RingSignature)?;
    // (3) the session header must be the chain's session.
    let on_chain = chain
        .session(&header.application_address, &header.service_id, query_height)
        .await
        .map_err(|e| {
            if session_refused_for_request(&e) {
                RelayError::SessionMismatch(format!("the chain has no such session: {e}"))
            } else {
                RelayError::Chain(e)
            }
        })?;
    let on_chain_header = on_chain.header.clone().unwrap_or_default();
    if on_chain_header != header {
        return Err(RelayError::SessionMismatch(format!(
            "request session {} differs from the chain's {}",
            header.session_id, on_chain_header.session_id
        )));
    }
    // (4) the supplier must be in the session.
    if !on_chain.suppliers.iter().any(|s| s.operator_address == supplier) {
        return Err(RelayError::SessionMismatch(format!(
            "supplier {supplier} is not in session {}",
            header.session_id
        )));
    }
    // What settlement takes off the app's stake beyond the claim (the meter's budget): read before the signature
    // check, like the other chain reads, so a relay the meter cannot price is refused without that work. A failed
    // read refuses the relay (`chain_unavailable`), never meters it without the inflation.
    let global_inflation_per_claim = chain.global_inflation_per_claim().await.map_err(RelayError::Chain)?;
    // (2b) the LSAG equations, last: the one expensive check runs only for otherwise valid requests (and once).
    if !lsag_verified {
        ring_verifier
            .verify(&signature, &relay::request_signable_hash(request))
            .map_err(RelayError::RingSignature)?;
    }
    let app_stake_upokt = app
        .stake
        .as_ref()
        .and_then(|c| c.amount.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Validated {
        header,
        supplier,
        windows,
        session_suppliers: on_chain.suppliers.len(),
        app_stake_upokt,
        app_spend_limit_upokt: spend_limit_upokt(app.per_session_spend_limit.as_ref()),
        compute_units_to_tokens_multiplier: params.compute_units_to_tokens_multiplier,
        compute_unit_cost_granularity: params.compute_unit_cost_granularity,
        pending_sessions: super::meter::pending_sessions(&params),
        global_inflation_per_claim,
        ring: expected.into(),
    })
}

/// An application's `per_session_spend_limit` as the chain's settlement applies it (poktroll
/// `getOrInitSessionBudget`): absent, zero or negative is no limit (`None`); a positive limit in another denom
/// than uPOKT fails the session's settlement (nothing is paid: `Some(0)`), as does an amount that is not an
/// integer (the chain never sends one); one beyond `u64` caps nothing a stake could pay (`u64::MAX`).
pub fn spend_limit_upokt(limit: Option<&crate::protocol::wire::Coin>) -> Option<u64> {
    let limit = limit?;
    let amount = limit.amount.as_str();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let positive = match amount.parse::<i128>() {
        Ok(a) if a <= 0 => return None,
        Ok(a) => u64::try_from(a).unwrap_or(u64::MAX),
        Err(_) if amount.strip_prefix('-').is_some_and(digits) => return None,
        Err(_) if digits(amount) => u64::MAX,
        Err(_) => return Some(0),
    };
    if limit.denom != "upokt" {
        return Some(0);
    }
    Some(positive)
}

/// The session grid of the shared params at `height` (the current height: cached by the chain client).
pub async fn current_grid_at(chain: &ChainClient, height: i64) -> Result<SessionGrid, RelayError> {
    let current = chain
        .shared_params_for_relays(height)
        .await
        .map_err(RelayError::Chain)?;
    SessionGrid::new(&current)
        .map_err(|e| RelayError::Chain(ChainError::BadResponse(format!("shared params at {height}: {e}"))))
}

/// The session end height the expected ring is built for (§2.4 step 1): `GetSessionEndHeight(current shared
/// params, header end)`, as poktroll's ring client does it (current params, not those at the session). It
/// differs from the header's end only after a `num_blocks_per_session` change. Without a known current height
/// (no grid), the header's end.
fn ring_target_session_end(current: Option<&SessionGrid>, end: i64) -> u64 {
    let target = current.map_or(end, |grid| grid.session_end(end));
    u64::try_from(target).unwrap_or(0)
}

/// Messages of poktroll's session hydration errors that are the request's fault (`x/session/types/errors.go`:
/// app not found, not active, not staked for the service, no suppliers, invalid app address). `GetSession`
/// returns them with status `Internal`, like a real failure of the node, so the message tells them apart.
const REQUEST_FAULT_MESSAGES: [&str; 5] = [
    "application for session not found",
    "application is not active",
    "not staked for requested service",
    "no suppliers not found for session",
    "invalid application address for session",
];

/// Whether a `GetSession` failure (§2.6 step 3) is the request's fault rather than the chain's: the chain is up
/// and says this (app, service, height) has no session (not found, invalid argument, failed precondition, out of
/// range, or one of poktroll's hydration refusals). Such relays are refused as `session_mismatch` (400);
/// transport failures and other statuses stay `chain_unavailable` (503), which tells the gateway to retry
/// elsewhere.
fn session_refused_for_request(error: &ChainError) -> bool {
    use crate::chain::grpc::GrpcError;
    match error {
        ChainError::NotFound(_) => true,
        ChainError::Grpc(GrpcError::Status { code, message, .. }) => match code {
            tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::OutOfRange => true,
            tonic::Code::Internal => REQUEST_FAULT_MESSAGES.iter().any(|m| message.contains(m)),
            _ => false,
        },
        ChainError::Grpc(_) | ChainError::BadResponse(_) | ChainError::Behind { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::grpc::GrpcError;

    /// poktroll `getOrInitSessionBudget` applies a limit only when it is set and positive, and fails the session's
    /// settlement for a limit in another denom.
    #[test]
    fn the_spend_limit_is_read_as_the_chain_settles_it() {
        let coin = |denom: &str, amount: &str| crate::protocol::wire::Coin {
            denom: denom.into(),
            amount: amount.into(),
        };
        let limit = |c: crate::protocol::wire::Coin| spend_limit_upokt(Some(&c));
        assert_eq!(spend_limit_upokt(None), None);
        assert_eq!(limit(coin("upokt", "0")), None);
        assert_eq!(limit(coin("upokt", "-5")), None);
        assert_eq!(limit(coin("upokt", "2520")), Some(2520));
        assert_eq!(
            limit(coin("upokt", "99999999999999999999999999999999999999999")),
            Some(u64::MAX)
        );
        assert_eq!(limit(coin("uatom", "2520")), Some(0));
        assert_eq!(limit(coin("uatom", "0")), None);
        assert_eq!(limit(coin("upokt", "12x")), Some(0));
    }

    fn status(code: tonic::Code, message: &str) -> ChainError {
        ChainError::Grpc(GrpcError::Status {
            method: "/pocket.session.Query/GetSession".into(),
            code,
            message: message.into(),
        })
    }

    /// After `num_blocks_per_session` went from 4 to 10, a relay of the session ending at 8 (old grid) is checked
    /// against the ring at the current grid's session end of 8, which is 10: a gateway whose undelegation was
    /// recorded at 9 (before that target) is no longer in the ring.
    #[test]
    fn the_ring_target_is_the_current_grids_session_end_of_the_header_end() {
        let current = crate::protocol::wire::SharedParams {
            num_blocks_per_session: 10,
            ..Default::default()
        };
        let grid = SessionGrid::new(&current).unwrap();
        assert_eq!(ring_target_session_end(Some(&grid), 8), 10);
        assert_eq!(ring_target_session_end(Some(&grid), 10), 10);
        assert_eq!(ring_target_session_end(None, 8), 8);
        let pending: BTreeMap<u64, Vec<String>> = [(9, vec!["pokt1gone".to_string()])].into();
        let ring = ring::expected_ring_addresses("pokt1app", &[], &pending, ring_target_session_end(Some(&grid), 8));
        assert!(!ring.contains(&"pokt1gone".to_string()), "{ring:?}");
    }

    #[test]
    fn session_refusals_are_the_requests_fault_and_outages_the_chains() {
        for refused in [
            ChainError::NotFound("session".into()),
            status(
                tonic::Code::FailedPrecondition,
                "application is not staked for service anvil",
            ),
            status(tonic::Code::InvalidArgument, "invalid application address"),
            status(
                tonic::Code::Internal,
                "application in session not staked for requested service: app pokt1x service anvil",
            ),
            status(
                tonic::Code::Internal,
                "no suppliers not found for session: service anvil",
            ),
        ] {
            assert!(session_refused_for_request(&refused), "{refused}");
        }
        for outage in [
            status(tonic::Code::Unavailable, "connection refused"),
            status(tonic::Code::DeadlineExceeded, "timeout"),
            status(tonic::Code::Internal, "error during session hydration: no block hash"),
            ChainError::Grpc(GrpcError::Transport {
                url: "http://node:9090".into(),
                reason: "connection reset".into(),
            }),
            ChainError::BadResponse("GetSession without session".into()),
        ] {
            assert!(!session_refused_for_request(&outage), "{outage}");
        }
    }
}
