//! Supplier signatures on relay responses (§2.2): cosmos-sdk `secp256k1.PrivKey.Sign(d)` = ECDSA over SHA256(d)
//! with an RFC 6979 nonce, low-S, encoded as 64 bytes r‖s; verification rejects any other length and high-S, as
//! the chain and gateways do.

use k256::ecdsa::signature::{Signer as _, Verifier as _};
use k256::ecdsa::{Signature, SigningKey};

/// Why a supplier signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupplierSigError {
    /// Not exactly 64 bytes.
    #[error("supplier signature must be 64 bytes r||s, got {0}")]
    Length(usize),
    /// r or s is zero or not below the curve order.
    #[error("supplier signature is not a valid (r, s) pair")]
    Malformed,
    /// s > n/2 (the chain accepts only low-S signatures).
    #[error("supplier signature has a high S value")]
    HighS,
    /// The public key is not a valid compressed point.
    #[error("supplier public key is invalid")]
    BadPublicKey,
    /// The signature does not verify.
    #[error("supplier signature does not verify")]
    Invalid,
}

/// Signs the 32-byte signable hash `d`: ECDSA over SHA256(d), RFC 6979, low-S, r‖s.
pub fn sign(key: &SigningKey, signable: &[u8; 32]) -> [u8; 64] {
    // k256's `Signer` hashes the message with SHA-256 (cosmos `Sign(d)` does the same) and normalizes S.
    let signature: Signature = key.sign(signable);
    let mut out = [0u8; 64];
    out.copy_from_slice(&signature.to_bytes());
    out
}

/// Verifies a supplier signature over the signable hash `d` against a 33-byte compressed public key.
pub fn verify(pubkey33: &[u8], signable: &[u8; 32], signature: &[u8]) -> Result<(), SupplierSigError> {
    if signature.len() != 64 {
        return Err(SupplierSigError::Length(signature.len()));
    }
    let parsed = Signature::from_slice(signature).map_err(|_| SupplierSigError::Malformed)?;
    if parsed.normalize_s() != parsed {
        return Err(SupplierSigError::HighS);
    }
    let key = super::address::verifying_key_from_compressed(pubkey33).map_err(|_| SupplierSigError::BadPublicKey)?;
    key.verify(signable, &parsed).map_err(|_| SupplierSigError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPPLIER_PRIV: &str = "aed2e2b467093f219d356d28f05b71249e69e4c399e66bed779e4218984b9ec2";
    const SUPPLIER_PUB: &str = "02c7392bf143e806e4829336b72c8c8fc5c6780016487d12d2dd4d2539ba9604a9";
    const SIGNABLE: &str = "ce26853f24152e248e74d4fcc0301d9981a3da444d60e1e857f119b461eb9c5e";
    const SIG: &str = "45d92a083ef1e9bccddb5555ae09d75d7139dea6f55edb39f89011f59af0358c45b55cc16e7458a71d38903485364b23b19f3408cc44465cae793a19c286193b";

    fn signable() -> [u8; 32] {
        hex::decode(SIGNABLE).unwrap().try_into().unwrap()
    }

    #[test]
    fn golden_relay_e2e_signature() {
        let key = crate::protocol::address::signing_key_from_hex(SUPPLIER_PRIV).unwrap();
        assert_eq!(hex::encode(sign(&key, &signable())), SIG);
        verify(
            &hex::decode(SUPPLIER_PUB).unwrap(),
            &signable(),
            &hex::decode(SIG).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn rejects_high_s_length_and_tampering() {
        let pubkey = hex::decode(SUPPLIER_PUB).unwrap();
        let sig = hex::decode(SIG).unwrap();
        // High-S twin: s' = n − s verifies mathematically but the chain refuses it.
        let parsed = Signature::from_slice(&sig).unwrap();
        let (r, s) = parsed.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert_eq!(
            verify(&pubkey, &signable(), &high.to_bytes()),
            Err(SupplierSigError::HighS)
        );
        assert_eq!(
            verify(&pubkey, &signable(), &sig[..63]),
            Err(SupplierSigError::Length(63))
        );
        assert_eq!(
            verify(&pubkey, &signable(), &[0u8; 64]),
            Err(SupplierSigError::Malformed)
        );
        let mut wrong = signable();
        wrong[0] ^= 1;
        assert_eq!(verify(&pubkey, &wrong, &sig), Err(SupplierSigError::Invalid));
        assert_eq!(
            verify(&pubkey[..32], &signable(), &sig),
            Err(SupplierSigError::BadPublicKey)
        );
    }

    proptest::proptest! {
        #[test]
        fn sign_verify_round_trip(secret in proptest::array::uniform32(1u8..), d in proptest::array::uniform32(proptest::num::u8::ANY)) {
            if let Ok(key) = SigningKey::from_slice(&secret) {
                let sig = sign(&key, &d);
                let pubkey = crate::protocol::address::compressed_public_key(key.verifying_key());
                proptest::prop_assert!(verify(&pubkey, &d, &sig).is_ok());
            }
        }
    }
}
