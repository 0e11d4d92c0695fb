use super::*;
use k256::elliptic_curve::PrimeField as _;

const APP_PRIV: &str = "2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a";
const APP_PUB: &str = "0397896e9b106df70124a856861cc9be52fac9980e2c7a118a36c19d0198692cc5";
const GW_PRIV: &str = "1a11ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ab11";
const GW_PUB: &str = "02bbbf99abdcddac27350bca272d7146187c091aacfc1c6f90819c9b6daf4fe846";

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../tests/vectors/protocol-test-vectors.json")).unwrap()
}

fn pub33(hex_str: &str) -> [u8; 33] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn scalar(hex_str: &str) -> Scalar {
    let bytes: [u8; 32] = hex::decode(hex_str).unwrap().try_into().unwrap();
    Scalar::from_repr(bytes.into()).unwrap()
}

fn compressed(p: &ProjectivePoint) -> String {
    hex::encode(p.to_affine().to_bytes())
}

#[test]
fn hash_to_scalar_golden_with_left_align_quirk() {
    assert_eq!(
        hex::encode(hash_to_scalar(b"pocket").unwrap().to_bytes()),
        "43913f269ab77ad581e23102878c906eacd55fd9e973714f0ebbe9b55ad56fef"
    );
    // 31-byte v: left-aligned (the canonical value would be 00bd13…8dd6).
    assert_eq!(
        hex::encode(hash_to_scalar(b"relay-msg-349").unwrap().to_bytes()),
        "bd133cd1452701ae1d3910e3ad3fb1a3dddd7fc62cce0521503d6f6e658dd600"
    );
}

#[test]
fn hash_to_curve_golden() {
    let v = vectors();
    for (point, expected) in v["ring_lsag"]["hash_to_curve"].as_object().unwrap() {
        assert_eq!(
            compressed(&hash_to_curve(&pub33(point)).unwrap()),
            expected.as_str().unwrap(),
            "{point}"
        );
    }
}

#[test]
fn placeholder_key_and_address() {
    let v = &vectors()["ring_lsag"]["placeholder"];
    let key = placeholder_signing_key().unwrap();
    assert_eq!(hex::encode(key.to_bytes()), v["priv"].as_str().unwrap());
    assert_eq!(hex::encode(placeholder_public_key()), v["pub"].as_str().unwrap());
    assert_eq!(
        placeholder_address(),
        v["address_string_HexBytes_upper"].as_str().unwrap()
    );
    assert_eq!(
        crate::protocol::address::address_from_public_key(&placeholder_public_key()),
        v["bech32"].as_str().unwrap()
    );
}

#[test]
fn deterministic_signature_golden_and_key_image() {
    let d = &vectors()["ring_lsag"]["deterministic_sig"];
    let ring = [pub33(APP_PUB), pub33(GW_PUB)];
    let message: [u8; 32] = hex::decode(d["msg"].as_str().unwrap()).unwrap().try_into().unwrap();
    let sig = RingSignature::sign_with(
        &ring,
        &message,
        &scalar(GW_PRIV),
        &scalar(d["u"].as_str().unwrap()),
        &[Some(scalar(d["decoy_s0"].as_str().unwrap())), None],
    )
    .unwrap();
    assert_eq!(hex::encode(sig.to_bytes()), d["sig"].as_str().unwrap());
    assert_eq!(
        hex::encode(sig.key_image()),
        vectors()["ring_lsag"]["key_image_gw"].as_str().unwrap()
    );
    assert_eq!(sig.to_bytes().len(), 199);
    sig.verify(&message).unwrap();
    let parsed = RingSignature::from_bytes(&sig.to_bytes()).unwrap();
    assert_eq!(parsed, sig);
}

#[test]
fn round_trips_for_several_ring_sizes_and_tamper_detection() {
    for n in [2usize, 3, 5] {
        let keys: Vec<Scalar> = (0..n).map(|_| super::random_scalar()).collect();
        let ring: Vec<[u8; 33]> = keys
            .iter()
            .map(|k| {
                let mut out = [0u8; 33];
                out.copy_from_slice(&(ProjectivePoint::GENERATOR * k).to_affine().to_bytes());
                out
            })
            .collect();
        let message = crate::protocol::sha256(format!("msg-{n}").as_bytes());
        let signer = n - 1;
        let sig = RingSignature::sign(&ring, &message, &keys[signer]).unwrap();
        let bytes = sig.to_bytes();
        assert_eq!(bytes.len(), 69 + 65 * n);
        verify_relay_ring_signature(&bytes, &message).unwrap();
        let mut other = message;
        other[0] ^= 1;
        assert_eq!(
            verify_relay_ring_signature(&bytes, &other).unwrap_err(),
            RingError::Invalid
        );
        // Flip one bit in every byte position: never verifies (c0, I, s_i or P_i changed).
        for i in 4..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            assert!(
                verify_relay_ring_signature(&tampered, &message).is_err(),
                "byte {i} of n={n}"
            );
        }
        // Trailing bytes are ignored, as in the reference.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"trailing");
        verify_relay_ring_signature(&longer, &message).unwrap();
    }
}

#[test]
fn duplicate_rings_and_any_order_verify() {
    let app = scalar(APP_PRIV);
    let ring = [pub33(APP_PUB), pub33(APP_PUB)];
    let message = crate::protocol::sha256(b"dup");
    let sig = RingSignature::sign(&ring, &message, &app).unwrap();
    sig.verify(&message).unwrap();
    let expected = [pub33(GW_PUB), pub33(APP_PUB)];
    verify_membership(sig.ring(), &expected).unwrap();
    assert!(matches!(
        verify_membership(sig.ring(), &[pub33(GW_PUB)]),
        Err(RingError::NotAMember(_))
    ));
}

#[test]
fn canonical_hs_negative_control() {
    // A signer using a canonical (right-aligned) H_s produces signatures the quirk-exact verifier rejects whenever
    // some challenge value has a leading zero byte. Simulate it: find a message where the left-align path is taken
    // and check the two hashes differ there.
    let mut found = false;
    for i in 0..5000u32 {
        let input = format!("relay-msg-{i}");
        let digest = <sha3::Sha3_512 as sha3::Digest>::digest(input.as_bytes());
        let canonical = <Scalar as k256::elliptic_curve::ops::Reduce<k256::elliptic_curve::bigint::U512>>::reduce(
            &k256::elliptic_curve::bigint::U512::from_be_slice(&digest),
        );
        let quirky = hash_to_scalar(input.as_bytes()).unwrap();
        if canonical.to_bytes()[0] == 0 {
            assert_ne!(canonical, quirky, "{input}");
            found = true;
        } else {
            assert_eq!(canonical, quirky, "{input}");
        }
    }
    assert!(found, "about 1/256 inputs take the left-align path");
}

#[test]
fn malformed_signatures_are_typed_errors() {
    assert!(matches!(
        RingSignature::from_bytes(&[]),
        Err(RingError::Truncated { .. })
    ));
    let mut zero_ring = vec![0u8; 69];
    zero_ring[36] = 2;
    assert_eq!(RingSignature::from_bytes(&zero_ring).unwrap_err(), RingError::EmptyRing);
    let mut huge = vec![0xffu8; 69];
    huge[36] = 2;
    assert!(matches!(
        RingSignature::from_bytes(&huge),
        Err(RingError::Truncated { .. })
    ));
    let sign_err = RingSignature::sign(&[pub33(APP_PUB)], &[0; 32], &scalar(APP_PRIV)).unwrap_err();
    assert_eq!(sign_err, RingError::RingTooSmall(1));
    let not_member = RingSignature::sign(&[pub33(APP_PUB), pub33(APP_PUB)], &[0; 32], &scalar(GW_PRIV)).unwrap_err();
    assert_eq!(not_member, RingError::SignerNotInRing);
}

#[test]
fn expected_ring_includes_pending_undelegations_and_placeholder() {
    let mut pending = BTreeMap::new();
    pending.insert(10u64, vec!["pokt1old".to_string()]);
    pending.insert(20u64, vec!["pokt1late".to_string(), "pokt1gw".to_string()]);
    let ring = expected_ring_addresses("pokt1app", &["pokt1gw".to_string()], &pending, 20);
    assert_eq!(ring, vec!["pokt1app", "pokt1gw", "pokt1late"]);
    let alone = expected_ring_addresses("pokt1app", &[], &BTreeMap::new(), 20);
    assert_eq!(
        alone,
        vec![placeholder_address().to_string(), "pokt1app".to_string()],
        "uppercase hex sorts first"
    );
}

use std::collections::BTreeMap;

proptest::proptest! {
    #[test]
    fn deserializer_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400), n in 0u32..6) {
        let mut input = n.to_be_bytes().to_vec();
        input.extend_from_slice(&bytes);
        if let Ok(sig) = RingSignature::from_bytes(&input) {
            let _ = sig.verify(&[7; 32]);
        }
        let _ = RingSignature::from_bytes(&bytes);
    }
}

/// §2.5 Deserialize: scalars are decoded with silent reduction mod n, so a signature whose s_i is written as
/// `s_i + n` (possible for s_i < 2²⁵⁶ − n) verifies as the canonical one does, on both verifiers (a gateway's
/// Go signer never writes one, but the chain accepts it, so refusing it would refuse relays the chain pays for).
/// The decoy s₀ = 5 is chosen so that `5 + n` fits in 32 bytes.
#[test]
fn a_non_canonical_scalar_is_reduced_mod_n_as_go_deserializes_it() {
    let ring = [pub33(APP_PUB), pub33(GW_PUB)];
    let message = *b"pocket-relay-signable-hash-32byt";
    let u = scalar(&hex::encode(crate::protocol::sha256(b"u-nonce")));
    let sig =
        RingSignature::sign_with(&ring, &message, &scalar(GW_PRIV), &u, &[Some(Scalar::from(5u64)), None]).unwrap();
    let canonical = sig.to_bytes();
    // u32 n ‖ c₀ ‖ I ‖ (s_i ‖ P_i)*: s₀ at 69..101.
    assert_eq!(hex::encode(&canonical[69..101]), format!("{:064x}", 5));
    // n + 5 = FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFE BAAEDCE6 AF48A03B BFD25E8C D0364146.
    let mut lifted = canonical.clone();
    lifted[69..101]
        .copy_from_slice(&hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364146").unwrap());
    let fast = super::fast::FastRing::default();
    for bytes in [&canonical, &lifted] {
        RingSignature::from_bytes(bytes).unwrap().verify(&message).unwrap();
        verify_relay_ring_signature(bytes, &message).unwrap();
        fast.verify(&RawRingSignature::parse(bytes).unwrap(), &message).unwrap();
    }
    assert_eq!(
        RingSignature::from_bytes(&lifted).unwrap(),
        sig,
        "the same signature once reduced"
    );
    // n + 6 is s₀ = 6: no longer the signature.
    let mut wrong = lifted;
    wrong[100] = 0x47;
    assert_eq!(
        RingSignature::from_bytes(&wrong).unwrap().verify(&message),
        Err(RingError::Invalid)
    );
    assert_eq!(
        fast.verify(&RawRingSignature::parse(&wrong).unwrap(), &message),
        Err(RingError::Invalid)
    );
}
