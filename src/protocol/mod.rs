//! PURE protocol core: everything that must be byte-exact with the Pocket chain (poktroll v0.1.35) and its
//! gateways. No tokio, no IO: every function here is deterministic and tested against golden vectors from
//! `../shared/spec/protocol-spec.md` (cited as §N below).
//!
//! | module | owns | spec |
//! |---|---|---|
//! | [`wire`] | prost wire types with gogoproto-canonical encoding | §1 |
//! | [`relay`] | relay request/response signable hashes, relay bytes, relay hash | §2.1–2.3 |
//! | [`supplier_sig`] | supplier ECDSA signatures (64-byte r‖s, low-S) | §2.2 |
//! | [`ring`] | LSAG ring signatures, H_p/H_s, serialization, ring membership | §2.4–2.5 |
//! | [`session`] | session grid, windows, session id, supplier selection | §3 |
//! | [`difficulty`] | relay mining difficulty and multiplier | §4 |
//! | [`lottery`] | claimed uPOKT and the proof requirement lottery | §6.3 |
//! | [`inflation`] | `global_inflation_per_claim` as settlement counts it against the app's stake | §6.4 (read from poktroll) |
//! | [`gob`] | Go `encoding/gob` of the compact closest proof | §5.3 |
//! | [`address`] | bech32 `pokt` addresses and keys from hex | §2.5 |

pub mod address;
pub mod difficulty;
pub mod gob;
pub mod inflation;
pub mod lottery;
pub mod relay;
pub mod ring;
pub mod session;
pub mod supplier_sig;
pub mod wire;

#[cfg(test)]
mod tests;

use sha2::Digest as _;

/// SHA-256 of `data` (relay hashes, signable hashes, trie paths).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// SHA3-256 (FIPS-202, not Keccak) of `data` (session ids, H_p).
pub fn sha3_256(data: &[u8]) -> [u8; 32] {
    sha3::Sha3_256::digest(data).into()
}
