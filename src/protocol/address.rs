//! Addresses and keys (§2.5 "Keys"): a private key is a raw 32-byte secp256k1 scalar given as hex; an account
//! address is `bech32("pokt", RIPEMD160(SHA256(compressed pubkey)))`.

use k256::ecdsa::{SigningKey, VerifyingKey};
use ripemd::Digest as _;

/// The bech32 human-readable part of account addresses.
pub const HRP: &str = "pokt";

/// Errors parsing keys and addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The private key is not 64 hex characters.
    #[error("private key must be 32 bytes of hex, got {0} characters")]
    KeyLength(usize),
    /// The private key contains non-hex characters.
    #[error("private key is not hex")]
    KeyNotHex,
    /// The scalar is zero or ≥ the curve order.
    #[error("private key is not a valid secp256k1 scalar")]
    KeyOutOfRange,
    /// A public key is not a valid 33-byte compressed point.
    #[error("public key is not a valid compressed secp256k1 point")]
    BadPublicKey,
    /// The address is not valid bech32.
    #[error("address `{address}` is not valid bech32: {reason}")]
    Bech32 {
        /// The input.
        address: String,
        /// Why.
        reason: String,
    },
    /// The address has another prefix.
    #[error("address `{address}` has prefix `{found}`, expected `{HRP}`")]
    WrongPrefix {
        /// The input.
        address: String,
        /// Its prefix.
        found: String,
    },
    /// The address does not hold 20 bytes.
    #[error("address `{address}` holds {len} bytes, expected 20")]
    WrongLength {
        /// The input.
        address: String,
        /// Bytes decoded.
        len: usize,
    },
}

/// Parses a hex private key (optional `0x`, surrounding whitespace ignored).
pub fn signing_key_from_hex(hex_key: &str) -> Result<SigningKey, AddressError> {
    let trimmed = hex_key.trim();
    let trimmed = trimmed.strip_prefix("0x").unwrap_or(trimmed);
    if trimmed.len() != 64 {
        return Err(AddressError::KeyLength(trimmed.len()));
    }
    let bytes = hex::decode(trimmed).map_err(|_| AddressError::KeyNotHex)?;
    SigningKey::from_slice(&bytes).map_err(|_| AddressError::KeyOutOfRange)
}

/// The 33-byte SEC1 compressed public key.
pub fn compressed_public_key(key: &VerifyingKey) -> [u8; 33] {
    let point = key.to_sec1_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Parses a 33-byte compressed public key.
pub fn verifying_key_from_compressed(bytes: &[u8]) -> Result<VerifyingKey, AddressError> {
    if bytes.len() != 33 {
        return Err(AddressError::BadPublicKey);
    }
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| AddressError::BadPublicKey)
}

/// The 20-byte account id: RIPEMD160(SHA256(pub33)).
pub fn account_id(compressed_pubkey: &[u8]) -> [u8; 20] {
    let sha = super::sha256(compressed_pubkey);
    ripemd::Ripemd160::digest(sha).into()
}

/// Encodes a 20-byte account id as a `pokt1…` address.
pub fn encode_address(account_id: &[u8; 20]) -> String {
    // Encoding 20 bytes under a fixed valid HRP cannot fail.
    let hrp = bech32::Hrp::parse_unchecked(HRP);
    bech32::encode::<bech32::Bech32>(hrp, account_id).unwrap_or_default()
}

/// The `pokt1…` address of a compressed public key.
pub fn address_from_public_key(compressed_pubkey: &[u8]) -> String {
    encode_address(&account_id(compressed_pubkey))
}

/// The `pokt1…` address of a signing key.
pub fn address_of(key: &SigningKey) -> String {
    address_from_public_key(&compressed_public_key(key.verifying_key()))
}

/// Decodes and validates a `pokt1…` address into its 20-byte account id.
pub fn decode_address(address: &str) -> Result<[u8; 20], AddressError> {
    let (hrp, data) = bech32::decode(address).map_err(|e| AddressError::Bech32 {
        address: address.to_string(),
        reason: e.to_string(),
    })?;
    if hrp.as_str() != HRP {
        return Err(AddressError::WrongPrefix {
            address: address.to_string(),
            found: hrp.to_string(),
        });
    }
    data.as_slice().try_into().map_err(|_| AddressError::WrongLength {
        address: address.to_string(),
        len: data.len(),
    })
}

/// Whether `address` is a valid `pokt1…` account address.
pub fn is_valid_address(address: &str) -> bool {
    decode_address(address).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_keys_and_addresses() {
        // §7 keys: app, gateway, and the relay_e2e supplier key = SHA256("demo-supplier-key").
        let cases = [
            (
                "2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a",
                "0397896e9b106df70124a856861cc9be52fac9980e2c7a118a36c19d0198692cc5",
                "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4",
            ),
            (
                "1a11ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ab11",
                "02bbbf99abdcddac27350bca272d7146187c091aacfc1c6f90819c9b6daf4fe846",
                "pokt1duatelq8yutj6eflsdhc4vpavuspz5gk8htla9",
            ),
            (
                "aed2e2b467093f219d356d28f05b71249e69e4c399e66bed779e4218984b9ec2",
                "02c7392bf143e806e4829336b72c8c8fc5c6780016487d12d2dd4d2539ba9604a9",
                "pokt1hfqxf7y633uawjjga7paz2u9gnpspvfa3f4k8m",
            ),
        ];
        for (private, public, address) in cases {
            let key = signing_key_from_hex(private).unwrap();
            assert_eq!(hex::encode(compressed_public_key(key.verifying_key())), public);
            assert_eq!(address_of(&key), address);
            assert_eq!(
                decode_address(address).unwrap(),
                account_id(&hex::decode(public).unwrap())
            );
        }
        assert_eq!(
            hex::encode(crate::protocol::sha256(b"demo-supplier-key")),
            "aed2e2b467093f219d356d28f05b71249e69e4c399e66bed779e4218984b9ec2"
        );
    }

    #[test]
    fn bad_keys_and_addresses_are_typed_errors() {
        assert_eq!(signing_key_from_hex("abcd").unwrap_err(), AddressError::KeyLength(4));
        assert_eq!(
            signing_key_from_hex(&"zz".repeat(32)).unwrap_err(),
            AddressError::KeyNotHex
        );
        assert_eq!(
            signing_key_from_hex(&"00".repeat(32)).unwrap_err(),
            AddressError::KeyOutOfRange
        );
        assert_eq!(
            signing_key_from_hex(&"ff".repeat(32)).unwrap_err(),
            AddressError::KeyOutOfRange
        );
        assert!(signing_key_from_hex(" 0x2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a\n").is_ok());
        assert!(matches!(
            decode_address("pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva5"),
            Err(AddressError::Bech32 { .. })
        ));
        assert!(matches!(
            decode_address("cosmos1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnmn4yue"),
            Err(AddressError::WrongPrefix { .. } | AddressError::Bech32 { .. })
        ));
        assert!(!is_valid_address(""));
        assert!(
            verifying_key_from_compressed(&[2u8; 33]).is_err() || verifying_key_from_compressed(&[2u8; 33]).is_ok()
        );
        assert_eq!(
            verifying_key_from_compressed(&[0u8; 32]).unwrap_err(),
            AddressError::BadPublicKey
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,80}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = signing_key_from_hex(&s);
            let _ = decode_address(&s);
            let _ = verifying_key_from_compressed(&bytes);
        }
    }
}
