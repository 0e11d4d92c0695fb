//! Ring membership (§2.4): which keys may sign relays for an application at a session, and the check that every
//! key embedded in a signature belongs to that set (set membership only: order, size and duplicates are free).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k256::ecdsa::SigningKey;
use k256::elliptic_curve::bigint::U256;
use k256::elliptic_curve::ops::ReduceNonZero as _;

use super::RingError;

/// The secret of the placeholder ring key used for applications without gateways (§2.4 step 3).
pub const PLACEHOLDER_SECRET: &[u8] = b"placeholder_ring_key_for_apps_without_gateways";

/// The placeholder scalar: `GenPrivKeyFromSecret` = (SHA256(secret) mod (n−1)) + 1, never zero.
fn placeholder_scalar() -> k256::Scalar {
    let digest = crate::protocol::sha256(PLACEHOLDER_SECRET);
    k256::Scalar::reduce_nonzero(&U256::from_be_slice(&digest))
}

/// The placeholder signing key (the simulator and load generator sign with it for apps without gateways).
pub fn placeholder_signing_key() -> Option<SigningKey> {
    SigningKey::from_slice(&placeholder_scalar().to_bytes()).ok()
}

/// The placeholder's 33-byte compressed public key (computed once: the relayer needs it for every relay).
pub fn placeholder_public_key() -> [u8; 33] {
    static KEY: OnceLock<[u8; 33]> = OnceLock::new();
    *KEY.get_or_init(|| {
        let point = (k256::ProjectivePoint::GENERATOR * placeholder_scalar()).to_affine();
        let mut out = [0u8; 33];
        out.copy_from_slice(&k256::elliptic_curve::group::GroupEncoding::to_bytes(&point));
        out
    })
}

/// The placeholder's "address" string as the Go ring client uses it: **uppercase hex** of
/// RIPEMD160(SHA256(pub33)) (cosmos `PubKey.Address().String()`), not bech32. Computed once.
pub fn placeholder_address() -> &'static str {
    static ADDRESS: OnceLock<String> = OnceLock::new();
    ADDRESS.get_or_init(|| hex::encode_upper(crate::protocol::address::account_id(&placeholder_public_key())))
}

/// The expected ring's addresses for an application (§2.4 steps 1–4): the app, its delegatees, every pending
/// undelegation recorded at a session end height ≥ `target_session_end` (not yet effective), deduplicated; the
/// placeholder when there is no gateway; sorted as byte strings.
pub fn expected_ring_addresses(
    app_address: &str,
    delegatees: &[String],
    pending_undelegations: &BTreeMap<u64, Vec<String>>,
    target_session_end: u64,
) -> Vec<String> {
    let mut gateways: Vec<String> = delegatees.to_vec();
    for (_, list) in pending_undelegations.range(target_session_end..) {
        gateways.extend(list.iter().cloned());
    }
    gateways.sort();
    gateways.dedup();
    let mut addresses = vec![app_address.to_string()];
    if gateways.is_empty() {
        addresses.push(placeholder_address().to_string());
    } else {
        addresses.extend(gateways);
    }
    addresses.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    addresses.dedup();
    addresses
}

/// Checks that every key embedded in a signature is in the expected ring's keys (§2.4 step 5).
pub fn verify_membership(signature_ring: &[[u8; 33]], expected: &[[u8; 33]]) -> Result<(), RingError> {
    for member in signature_ring {
        if !expected.contains(member) {
            return Err(RingError::NotAMember(hex::encode(member)));
        }
    }
    Ok(())
}
