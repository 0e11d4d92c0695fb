//! Relay request acceptance as the chain and poktroll's relayer do it (§2.6): session timing with the grace period
//! at the right params height, the ring signature against the application's ring at the session end height, the
//! session header equal to the chain's session, the supplier ours and in the session, reward eligibility.

use std::collections::BTreeMap;

use super::RelayError;
use crate::chain::query::ChainClient;
use crate::protocol::session::{self, SessionWindows};
use crate::protocol::wire::{RelayRequest, SessionHeader};
use crate::protocol::{relay, ring};

/// What a valid request resolves to.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The on-chain session header (what the claim will carry).
    pub header: SessionHeader,
    /// Supplier operator address named by the request.
    pub supplier: String,
    /// Session windows at the session end height.
    pub windows: SessionWindows,
}

/// Validates `request` at the current height `height` (§2.6 steps 1–5).
pub async fn validate(
    chain: &ChainClient,
    request: &RelayRequest,
    height: i64,
    our_supplier: impl Fn(&str) -> bool,
) -> Result<Validated, RelayError> {
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
    // (1) timing: params at the session end height; past sessions only within the grace period.
    let end = header.session_end_block_height;
    let params = chain.shared_params_at(end).await.map_err(RelayError::Chain)?;
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
    // (2) ring signature over the signable hash, members in the app's ring at the session end height.
    let signable = relay::request_signable_hash(request);
    let signature = ring::verify_relay_ring_signature(&meta.signature, &signable).map_err(RelayError::RingSignature)?;
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
        end.max(0) as u64,
    );
    let mut expected = Vec::with_capacity(addresses.len());
    for address in &addresses {
        if *address == ring::placeholder_address() {
            expected.push(ring::placeholder_public_key());
        } else if let Some(key) = chain.account_pubkey(address).await.map_err(RelayError::Chain)? {
            expected.push(key);
        }
    }
    ring::verify_membership(signature.ring(), &expected).map_err(RelayError::RingSignature)?;
    // (3) the session header must be the chain's session.
    let on_chain = chain
        .session(&header.application_address, &header.service_id, query_height)
        .await
        .map_err(RelayError::Chain)?;
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
    Ok(Validated {
        header,
        supplier,
        windows,
    })
}
