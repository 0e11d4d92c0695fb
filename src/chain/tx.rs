//! Cosmos SDK transactions for claims and proofs (§6.5): the handful of `cosmos.tx.v1beta1` messages we need as
//! hand-written prost structs, SIGN_MODE_DIRECT signing, fees from a gas price, and unordered or ordered txs.
//!
//! Why hand-written: cosmrs 0.22 pins the prost/k256 0.13 stack and SDK 0.50 protos, which lack SDK 0.53's
//! `TxBody.unordered` (field 4) and `timeout_timestamp` (field 5). Unordered txs (ADR-070) are what relay-miner
//! sends by default: no account sequence, so HA instances cannot race on sequence numbers (lessons.md), and the
//! timeout anchors on the chain's block time, never the wall clock. cosmos-sdk v0.53 keeps one unordered nonce per
//! (signer, `timeout_timestamp`) at nanosecond resolution, so every unordered tx of a signer needs its own timeout
//! ([`UnorderedTimeouts`]).
//!
//! Pure: no IO here; the chain client broadcasts the bytes this module builds.

use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::Signer as _;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{ToPrimitive as _, Zero as _};
use prost::Message as _;

pub use crate::protocol::wire::{Any, Coin};

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `cosmos.tx.v1beta1.TxBody` (SDK 0.53: `unordered` = 4, `timeout_timestamp` = 5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxBody {
    /// The messages, executed in order, atomically.
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Any>,
    /// Free-form memo.
    #[prost(string, tag = "2")]
    pub memo: String,
    /// Block height after which the tx is not included (ordered txs; 0 = none).
    #[prost(uint64, tag = "3")]
    pub timeout_height: u64,
    /// ADR-070 unordered tx: no sequence, replay protection by hash until `timeout_timestamp`.
    #[prost(bool, tag = "4")]
    pub unordered: bool,
    /// Required for unordered txs: block time after which the tx is invalid (≤ 10 min ahead).
    #[prost(message, optional, tag = "5")]
    pub timeout_timestamp: Option<Timestamp>,
}

/// `cosmos.tx.v1beta1.ModeInfo.Single`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ModeInfoSingle {
    /// Sign mode; 1 = SIGN_MODE_DIRECT.
    #[prost(int32, tag = "1")]
    pub mode: i32,
}

/// `cosmos.tx.v1beta1.ModeInfo` (only the `single` arm of the oneof is used).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ModeInfo {
    /// Single signer mode info.
    #[prost(message, optional, tag = "1")]
    pub single: Option<ModeInfoSingle>,
}

/// `cosmos.tx.v1beta1.SignerInfo`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignerInfo {
    /// `Any` of `/cosmos.crypto.secp256k1.PubKey`.
    #[prost(message, optional, tag = "1")]
    pub public_key: Option<Any>,
    /// How the signer signed.
    #[prost(message, optional, tag = "2")]
    pub mode_info: Option<ModeInfo>,
    /// Account sequence; 0 for unordered txs.
    #[prost(uint64, tag = "3")]
    pub sequence: u64,
}

/// `cosmos.tx.v1beta1.Fee`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Fee {
    /// Fee amount.
    #[prost(message, repeated, tag = "1")]
    pub amount: Vec<Coin>,
    /// Gas limit.
    #[prost(uint64, tag = "2")]
    pub gas_limit: u64,
    /// Fee payer (empty = first signer).
    #[prost(string, tag = "3")]
    pub payer: String,
    /// Fee granter.
    #[prost(string, tag = "4")]
    pub granter: String,
}

/// `cosmos.tx.v1beta1.AuthInfo`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AuthInfo {
    /// One entry per signer.
    #[prost(message, repeated, tag = "1")]
    pub signer_infos: Vec<SignerInfo>,
    /// The fee.
    #[prost(message, optional, tag = "2")]
    pub fee: Option<Fee>,
}

/// `cosmos.tx.v1beta1.SignDoc` (SIGN_MODE_DIRECT).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignDoc {
    /// Encoded `TxBody`.
    #[prost(bytes = "vec", tag = "1")]
    pub body_bytes: Vec<u8>,
    /// Encoded `AuthInfo`.
    #[prost(bytes = "vec", tag = "2")]
    pub auth_info_bytes: Vec<u8>,
    /// Chain id, e.g. `pocket`.
    #[prost(string, tag = "3")]
    pub chain_id: String,
    /// The signer's account number.
    #[prost(uint64, tag = "4")]
    pub account_number: u64,
}

/// `cosmos.tx.v1beta1.TxRaw`: what is broadcast and hashed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TxRaw {
    /// Encoded `TxBody`.
    #[prost(bytes = "vec", tag = "1")]
    pub body_bytes: Vec<u8>,
    /// Encoded `AuthInfo`.
    #[prost(bytes = "vec", tag = "2")]
    pub auth_info_bytes: Vec<u8>,
    /// One 64-byte r‖s signature per signer.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub signatures: Vec<Vec<u8>>,
}

/// `cosmos.tx.v1beta1.Tx` (decoded form, used by the simulator to read broadcast txs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tx {
    /// The body.
    #[prost(message, optional, tag = "1")]
    pub body: Option<TxBody>,
    /// Signer infos and fee.
    #[prost(message, optional, tag = "2")]
    pub auth_info: Option<AuthInfo>,
    /// Signatures.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub signatures: Vec<Vec<u8>>,
}

/// `cosmos.crypto.secp256k1.PubKey`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Secp256k1PubKey {
    /// 33-byte compressed key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// Type URL of a secp256k1 public key inside an `Any`.
pub const SECP256K1_PUBKEY_TYPE_URL: &str = "/cosmos.crypto.secp256k1.PubKey";
/// SIGN_MODE_DIRECT.
pub const SIGN_MODE_DIRECT: i32 = 1;
/// ADR-070: the chain refuses unordered txs whose timeout is further than this ahead of the block time.
pub const MAX_UNORDERED_TIMEOUT_SECS: i64 = 600;

/// Errors building a transaction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    /// A tx must carry at least one message.
    #[error("a transaction needs at least one message")]
    NoMessages,
    /// The unordered timeout is not after the block time or is more than 10 minutes ahead of it.
    #[error(
        "unordered tx timeout {offset_nanos} ns after block time must be in (0, {MAX_UNORDERED_TIMEOUT_SECS}] seconds"
    )]
    BadUnorderedTimeout {
        /// The timeout's offset from the block time in nanoseconds.
        offset_nanos: i128,
    },
    /// The gas price is not a non-negative decimal number.
    #[error("gas price `{0}` is not a non-negative decimal number")]
    BadGasPrice(String),
    /// The computed fee does not fit in u128.
    #[error("fee overflows")]
    FeeOverflow,
}

/// How the tx is protected against replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// ADR-070 unordered: sequence 0, `timeout_timestamp` = `timeout`. Build it with [`Ordering::unordered`] or,
    /// for txs a signer actually sends, [`UnorderedTimeouts::next`] (one timeout per tx).
    Unordered {
        /// The latest block time known from the chain (never the wall clock, lessons.md).
        block_time: Timestamp,
        /// The tx's `timeout_timestamp`: after `block_time`, at most 600 s after it.
        timeout: Timestamp,
        /// Optional `timeout_height` (0 = none): cosmos-sdk v0.53's `TxTimeoutHeightDecorator` checks it for
        /// unordered txs too, so a claim or proof held in a mempool past its window's close is refused for free
        /// instead of included and failed with its fee paid.
        timeout_height: u64,
    },
    /// Classic ordered tx with the account's current sequence.
    Ordered {
        /// Account sequence.
        sequence: u64,
        /// Optional timeout height (0 = none).
        timeout_height: u64,
    },
}

impl Ordering {
    /// Unordered with `timeout_timestamp` = `block_time` + `ttl_secs` (not checked here: [`build_signed_tx`]
    /// refuses a timeout outside (0, 600] s after the block time).
    pub fn unordered(block_time: Timestamp, ttl_secs: i64) -> Self {
        let timeout = from_unix_nanos(unix_nanos(block_time).saturating_add(i128::from(ttl_secs) * NANOS_PER_SEC));
        Self::Unordered {
            block_time,
            timeout,
            timeout_height: 0,
        }
    }

    /// The same ordering with `timeout_height` (0 = none), ordered or not.
    pub fn with_timeout_height(self, height: u64) -> Self {
        match self {
            Self::Unordered {
                block_time, timeout, ..
            } => Self::Unordered {
                block_time,
                timeout,
                timeout_height: height,
            },
            Self::Ordered { sequence, .. } => Self::Ordered {
                sequence,
                timeout_height: height,
            },
        }
    }
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

fn unix_nanos(t: Timestamp) -> i128 {
    i128::from(t.seconds) * NANOS_PER_SEC + i128::from(t.nanos)
}

fn from_unix_nanos(nanos: i128) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(nanos.div_euclid(NANOS_PER_SEC)).unwrap_or(i64::MAX),
        // In [0, 1e9): fits.
        nanos: i32::try_from(nanos.rem_euclid(NANOS_PER_SEC)).unwrap_or(0),
    }
}

/// The unordered timeouts of one signer, each strictly after the one before (nanosecond resolution).
///
/// cosmos-sdk v0.53 replays-protects unordered txs with one nonce per (signer, `timeout_timestamp`)
/// (`x/auth/ante` `verifyUnorderedNonce` → `TryAddUnorderedNonce`, keyed by the timeout's `UnixNano`): a second
/// tx of the signer with the same timeout fails CheckTx with code 18 (`ErrInvalidRequest`, "failed to add
/// unordered nonce: already used timeout"), while Simulate skips that check. Txs built while the latest block
/// is unchanged (a refused batch re-sent message by message, a claim and a proof due together) would all get
/// block time + TTL, and only the first would land. So each gets block time + TTL, or 1 ns after the signer's
/// previous timeout when that is not later.
///
/// Kept in memory only. Two processes of one signer would collide only when both send while the same block is
/// the latest: HA instances are fenced so only the leader sends, and a restarted or newly elected leader whose
/// first tx hits a timeout its predecessor used in that block is refused at CheckTx (code 18, no fee) and sends
/// again at the next block, with the next block's time.
#[derive(Debug, Default, Clone)]
pub struct UnorderedTimeouts {
    last: Option<Timestamp>,
}

impl UnorderedTimeouts {
    /// No timeout handed out yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ordering of the signer's next unordered tx: timeout `block_time` + `ttl_secs`, or 1 ns after the
    /// previous timeout handed out if that is not earlier.
    pub fn next(&mut self, block_time: Timestamp, ttl_secs: i64) -> Ordering {
        let wanted = unix_nanos(block_time).saturating_add(i128::from(ttl_secs) * NANOS_PER_SEC);
        let timeout = match self.last {
            Some(last) if unix_nanos(last) >= wanted => unix_nanos(last).saturating_add(1),
            _ => wanted,
        };
        let timeout = from_unix_nanos(timeout);
        self.last = Some(timeout);
        Ordering::Unordered {
            block_time,
            timeout,
            timeout_height: 0,
        }
    }
}

/// Everything needed to build and sign one tx.
#[derive(Debug, Clone)]
pub struct TxPlan {
    /// Messages (e.g. many `MsgCreateClaim` of one supplier).
    pub messages: Vec<Any>,
    /// Memo.
    pub memo: String,
    /// Gas limit.
    pub gas_limit: u64,
    /// Fee amount in `fee_denom`.
    pub fee_amount: u128,
    /// Fee denomination (`upokt`).
    pub fee_denom: String,
    /// Replay protection.
    pub ordering: Ordering,
    /// Chain id.
    pub chain_id: String,
    /// The signer's account number.
    pub account_number: u64,
}

/// A signed transaction ready to broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// Encoded `TxRaw`.
    pub tx_bytes: Vec<u8>,
    /// CometBFT tx hash: uppercase hex SHA-256 of `tx_bytes`.
    pub hash: String,
}

/// Builds, signs (SIGN_MODE_DIRECT, ECDSA over SHA-256 of the SignDoc, low-S r‖s) and encodes a tx (§6.5).
pub fn build_signed_tx(key: &SigningKey, plan: &TxPlan) -> Result<SignedTx, TxError> {
    if plan.messages.is_empty() {
        return Err(TxError::NoMessages);
    }
    let (unordered, timeout_timestamp, sequence, timeout_height) = match plan.ordering {
        Ordering::Unordered {
            block_time,
            timeout,
            timeout_height,
        } => {
            let offset_nanos = unix_nanos(timeout) - unix_nanos(block_time);
            if offset_nanos <= 0 || offset_nanos > i128::from(MAX_UNORDERED_TIMEOUT_SECS) * NANOS_PER_SEC {
                return Err(TxError::BadUnorderedTimeout { offset_nanos });
            }
            (true, Some(timeout), 0, timeout_height)
        }
        Ordering::Ordered {
            sequence,
            timeout_height,
        } => (false, None, sequence, timeout_height),
    };
    let body = TxBody {
        messages: plan.messages.clone(),
        memo: plan.memo.clone(),
        timeout_height,
        unordered,
        timeout_timestamp,
    };
    let pubkey = Secp256k1PubKey {
        key: key.verifying_key().to_sec1_bytes().to_vec(),
    };
    let auth_info = AuthInfo {
        signer_infos: vec![SignerInfo {
            public_key: Some(Any::pack(SECP256K1_PUBKEY_TYPE_URL, &pubkey)),
            mode_info: Some(ModeInfo {
                single: Some(ModeInfoSingle { mode: SIGN_MODE_DIRECT }),
            }),
            sequence,
        }],
        fee: Some(Fee {
            amount: if plan.fee_amount == 0 {
                Vec::new()
            } else {
                vec![Coin {
                    denom: plan.fee_denom.clone(),
                    amount: plan.fee_amount.to_string(),
                }]
            },
            gas_limit: plan.gas_limit,
            payer: String::new(),
            granter: String::new(),
        }),
    };
    let body_bytes = body.encode_to_vec();
    let auth_info_bytes = auth_info.encode_to_vec();
    let sign_doc = SignDoc {
        body_bytes: body_bytes.clone(),
        auth_info_bytes: auth_info_bytes.clone(),
        chain_id: plan.chain_id.clone(),
        account_number: plan.account_number,
    };
    let signature: k256::ecdsa::Signature = key.sign(&sign_doc.encode_to_vec());
    let raw = TxRaw {
        body_bytes,
        auth_info_bytes,
        signatures: vec![signature.to_bytes().to_vec()],
    };
    let tx_bytes = raw.encode_to_vec();
    let hash = tx_hash(&tx_bytes);
    Ok(SignedTx { tx_bytes, hash })
}

/// CometBFT tx hash: uppercase hex of SHA-256 of the tx bytes.
pub fn tx_hash(tx_bytes: &[u8]) -> String {
    hex::encode_upper(crate::protocol::sha256(tx_bytes))
}

/// The fee the signed tx `tx_bytes` (an encoded `TxRaw`) pays in `denom` (0 when it pays none in it); `None` when
/// the bytes or the amount do not decode.
pub fn fee_paid(tx_bytes: &[u8], denom: &str) -> Option<u128> {
    let raw = TxRaw::decode(tx_bytes).ok()?;
    let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).ok()?;
    let mut paid = 0u128;
    for coin in auth.fee.map(|fee| fee.amount).unwrap_or_default() {
        if coin.denom == denom {
            paid = paid.checked_add(coin.amount.parse().ok()?)?;
        }
    }
    Some(paid)
}

/// Parses a decimal gas price (`"0.000001"`, `"1"`, optionally suffixed with a denom like `"0.01upokt"`) into an
/// exact rational.
pub fn parse_gas_price(price: &str) -> Result<BigRational, TxError> {
    let bad = || TxError::BadGasPrice(price.to_string());
    let number: &str = price.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    if !int_part.chars().chain(frac_part.chars()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let digits = format!("{int_part}{frac_part}");
    let numerator: BigInt = digits.parse().map_err(|_| bad())?;
    let denominator = num_traits::pow(BigInt::from(10u8), frac_part.len());
    Ok(BigRational::new(numerator, denominator))
}

/// Fee = ceil(gas price × gas), as the Go relay miner computes it (§6.5).
pub fn fee_for_gas(gas_price: &BigRational, gas: u64) -> Result<u128, TxError> {
    let fee = (gas_price * BigRational::from_integer(BigInt::from(gas))).ceil();
    if fee.is_zero() {
        return Ok(0);
    }
    fee.to_integer().to_u128().ok_or(TxError::FeeOverflow)
}

/// Gas limit from a simulated gas use and a multiplier (e.g. 1.7), rounded up.
pub fn gas_limit_from_simulation(gas_used: u64, multiplier: f64) -> u64 {
    let scaled = (gas_used as f64 * multiplier).ceil();
    if scaled.is_finite() && scaled >= 0.0 && scaled < u64::MAX as f64 {
        scaled as u64
    } else {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::signature::Verifier as _;

    fn key() -> SigningKey {
        SigningKey::from_slice(&crate::protocol::sha256(b"demo-supplier-key")).unwrap()
    }

    fn plan(ordering: Ordering) -> TxPlan {
        TxPlan {
            messages: vec![Any {
                type_url: "/pocket.proof.MsgCreateClaim".into(),
                value: vec![0x0a, 0x01, 0x61],
            }],
            memo: "relay-miner".into(),
            gas_limit: 200_000,
            fee_amount: 1,
            fee_denom: "upokt".into(),
            ordering,
            chain_id: "pocket".into(),
            account_number: 7,
        }
    }

    /// The fee a kept tx pays is read back from its bytes (the funds checks count kept txs that may still land).
    #[test]
    fn the_fee_paid_is_read_back_from_the_signed_bytes() {
        let signed = build_signed_tx(
            &key(),
            &TxPlan {
                fee_amount: 1_234,
                ..plan(Ordering::Ordered {
                    sequence: 0,
                    timeout_height: 0,
                })
            },
        )
        .unwrap();
        assert_eq!(fee_paid(&signed.tx_bytes, "upokt"), Some(1_234));
        assert_eq!(fee_paid(&signed.tx_bytes, "uatom"), Some(0));
        assert_eq!(fee_paid(b"not a tx", "upokt"), None);
    }

    #[test]
    fn unordered_tx_has_timeout_timestamp_and_zero_sequence() {
        let block_time = Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        let signed = build_signed_tx(&key(), &plan(Ordering::unordered(block_time, 300))).unwrap();
        let raw = TxRaw::decode(signed.tx_bytes.as_slice()).unwrap();
        let body = TxBody::decode(raw.body_bytes.as_slice()).unwrap();
        assert!(body.unordered);
        assert_eq!(
            body.timeout_timestamp,
            Some(Timestamp {
                seconds: 1_700_000_300,
                nanos: 5
            })
        );
        // field 4 (bool) = 0x20 0x01 and field 5 (message) = 0x2a follow the memo in ascending tag order.
        let memo_end = raw.body_bytes.windows(11).position(|w| w == b"relay-miner").unwrap() + 11;
        assert_eq!(&raw.body_bytes[memo_end..memo_end + 3], &[0x20, 0x01, 0x2a]);
        // The whole body, assembled by hand from cosmos-sdk v0.53's tx.proto (§6.5): messages = 1 (Any: type_url 1,
        // value 2), memo = 2, unordered = 4, timeout_timestamp = 5 (Timestamp: seconds 1, nanos 2); no field 3
        // (timeout_height 0). Not prost's reading of our own structs: a tag or type slip would change these bytes.
        assert_eq!(
            hex::encode(&raw.body_bytes),
            "0a230a1c2f706f636b65742e70726f6f662e4d7367437265617465436c61696d12030a0161\
             120b72656c61792d6d696e6572\
             2001\
             2a0808ace4cfaa061005"
        );
        let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap();
        assert_eq!(auth.signer_infos[0].sequence, 0);
        assert_eq!(
            signed.hash,
            hex::encode_upper(crate::protocol::sha256(&signed.tx_bytes))
        );
    }

    #[test]
    fn signature_verifies_over_sign_doc_and_is_low_s() {
        let k = key();
        let p = plan(Ordering::Ordered {
            sequence: 3,
            timeout_height: 0,
        });
        let signed = build_signed_tx(&k, &p).unwrap();
        let raw = TxRaw::decode(signed.tx_bytes.as_slice()).unwrap();
        let doc = SignDoc {
            body_bytes: raw.body_bytes.clone(),
            auth_info_bytes: raw.auth_info_bytes.clone(),
            chain_id: "pocket".into(),
            account_number: 7,
        };
        let sig = k256::ecdsa::Signature::from_slice(&raw.signatures[0]).unwrap();
        assert!(sig.normalize_s() == sig, "signature must be low-S");
        k.verifying_key().verify(&doc.encode_to_vec(), &sig).unwrap();
        let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap();
        assert_eq!(auth.signer_infos[0].sequence, 3);
        assert_eq!(
            auth.fee.unwrap().amount,
            vec![Coin {
                denom: "upokt".into(),
                amount: "1".into()
            }]
        );
    }

    #[test]
    fn rejects_empty_and_bad_timeouts() {
        let mut p = plan(Ordering::Ordered {
            sequence: 0,
            timeout_height: 0,
        });
        p.messages.clear();
        assert_eq!(build_signed_tx(&key(), &p), Err(TxError::NoMessages));
        let block_time = Timestamp { seconds: 10, nanos: 0 };
        for ttl_secs in [0, -1, 601] {
            let p = plan(Ordering::unordered(block_time, ttl_secs));
            assert_eq!(
                build_signed_tx(&key(), &p),
                Err(TxError::BadUnorderedTimeout {
                    offset_nanos: i128::from(ttl_secs) * 1_000_000_000
                })
            );
        }
        let just_over = Ordering::Unordered {
            block_time,
            timeout: Timestamp { seconds: 610, nanos: 1 },
            timeout_height: 0,
        };
        assert_eq!(
            build_signed_tx(&key(), &plan(just_over)),
            Err(TxError::BadUnorderedTimeout {
                offset_nanos: 600_000_000_001
            })
        );
    }

    /// An unordered tx carries the `timeout_height` it was given beside its `timeout_timestamp` (cosmos-sdk
    /// v0.53 checks both for unordered txs), and none when given 0.
    #[test]
    fn an_unordered_tx_carries_its_timeout_height() {
        let block_time = Timestamp { seconds: 10, nanos: 0 };
        let body = |ordering: Ordering| {
            let signed = build_signed_tx(&key(), &plan(ordering)).unwrap();
            let raw = TxRaw::decode(signed.tx_bytes.as_slice()).unwrap();
            TxBody::decode(raw.body_bytes.as_slice()).unwrap()
        };
        let with = body(Ordering::unordered(block_time, 60).with_timeout_height(42));
        assert!(with.unordered);
        assert_eq!(with.timeout_height, 42);
        assert_eq!(with.timeout_timestamp, Some(Timestamp { seconds: 70, nanos: 0 }));
        assert_eq!(body(Ordering::unordered(block_time, 60)).timeout_height, 0);
        let ordered = Ordering::Ordered {
            sequence: 3,
            timeout_height: 0,
        };
        assert_eq!(body(ordered.with_timeout_height(9)).timeout_height, 9);
    }

    fn timeout_of(ordering: Ordering) -> Timestamp {
        let signed = build_signed_tx(&key(), &plan(ordering)).unwrap();
        let raw = TxRaw::decode(signed.tx_bytes.as_slice()).unwrap();
        TxBody::decode(raw.body_bytes.as_slice())
            .unwrap()
            .timeout_timestamp
            .unwrap()
    }

    /// The SDK keeps one unordered nonce per (signer, timeout): txs of one signer built while the latest block is
    /// the same each get their own timeout, strictly increasing; a later block starts again from its time + TTL.
    #[test]
    fn txs_built_in_the_same_block_get_distinct_increasing_timeouts() {
        let mut timeouts = UnorderedTimeouts::new();
        let block_time = Timestamp {
            seconds: 1_700_000_000,
            nanos: 999_999_999,
        };
        let first = timeout_of(timeouts.next(block_time, 120));
        let second = timeout_of(timeouts.next(block_time, 120));
        let third = timeout_of(timeouts.next(block_time, 120));
        assert_eq!(
            first,
            Timestamp {
                seconds: 1_700_000_120,
                nanos: 999_999_999
            }
        );
        assert_eq!(
            second,
            Timestamp {
                seconds: 1_700_000_121,
                nanos: 0
            },
            "1 ns later, carried into the seconds"
        );
        assert_eq!(
            third,
            Timestamp {
                seconds: 1_700_000_121,
                nanos: 1
            }
        );
        let next_block = Timestamp {
            seconds: 1_700_000_001,
            nanos: 0,
        };
        assert_eq!(
            timeout_of(timeouts.next(next_block, 120)),
            Timestamp {
                seconds: 1_700_000_121,
                nanos: 2
            },
            "never before a timeout already handed out"
        );
        let later_block = Timestamp {
            seconds: 1_700_000_010,
            nanos: 0,
        };
        assert_eq!(
            timeout_of(timeouts.next(later_block, 120)),
            Timestamp {
                seconds: 1_700_000_130,
                nanos: 0
            }
        );
    }

    #[test]
    fn fees_round_up_exactly() {
        let price = parse_gas_price("0.000001").unwrap();
        assert_eq!(fee_for_gas(&price, 0).unwrap(), 0);
        assert_eq!(fee_for_gas(&price, 1).unwrap(), 1);
        assert_eq!(fee_for_gas(&price, 1_000_000).unwrap(), 1);
        assert_eq!(fee_for_gas(&price, 1_000_001).unwrap(), 2);
        assert_eq!(fee_for_gas(&parse_gas_price("1upokt").unwrap(), 250).unwrap(), 250);
        assert_eq!(fee_for_gas(&parse_gas_price(".5").unwrap(), 3).unwrap(), 2);
        for bad in ["", "abc", "1.2.3", "-1", "1e5", "."] {
            assert!(parse_gas_price(bad).is_err(), "{bad}");
        }
        assert_eq!(gas_limit_from_simulation(100_000, 1.7), 170_000);
        assert_eq!(gas_limit_from_simulation(3, 1.5), 5);
    }
}
