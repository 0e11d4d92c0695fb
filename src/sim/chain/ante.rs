//! The simulator's ante handler: what a node checks of a tx before its messages run, in cosmos-sdk v0.53.7's
//! order (`x/auth/ante/ante.go` `NewAnteHandler`: `SetUpContextDecorator`, `ValidateBasicDecorator`,
//! `TxTimeoutHeightDecorator`, `ValidateMemoDecorator`, `ConsumeGasForTxSizeDecorator`, `DeductFeeDecorator`,
//! `SetPubKeyDecorator` … `SigGasConsumeDecorator`, `SigVerificationDecorator`, `IncrementSequenceDecorator`), with
//! each refusal's registered code, its text (`err.Error()`: what CheckTx, `BroadcastTx` and a block's result
//! carry) and the gas the node had metered when it refused (what a failed Simulate reports, see
//! [`Refusal::simulate_status_message`]).
//!
//! Gas model (the simulator's, not the SDK's exact costs): nothing before `ConsumeGasForTxSizeDecorator` (so a
//! timeout-height refusal, like a refusal before the ante handler, reports 0), then [`TX_SIZE_GAS_PER_BYTE`] per
//! byte, [`FEE_DEDUCTION_GAS`] for a non-zero fee, [`SIGNATURE_GAS`] for the account reads and the signature, and
//! [`MESSAGE_GAS`] per message run; [`gas_used`] is their sum, the same in Simulate and in a block.

use k256::ecdsa::signature::Verifier as _;
use prost::Message as _;

use super::ChainState;
use super::validate_basic::{Refusal, frame};
use crate::chain::tx::{AuthInfo, SignDoc, TxBody, TxRaw};
use crate::protocol::{address, wire};

/// Which state a tx is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// CheckTx: sequences and unordered nonces count txs already admitted to the mempool.
    Check,
    /// Simulate: as CheckTx, but unordered nonces are not checked (the SDK skips them in simulate mode), no
    /// minimum gas price applies and signatures are not verified (`SigVerificationDecorator`: `!simulate`).
    Simulate,
    /// DeliverTx: committed sequences and unordered nonces.
    Deliver,
}

/// x/auth `DefaultTxSizeCostPerByte`: `ConsumeGasForTxSizeDecorator` meters this much per tx byte.
pub const TX_SIZE_GAS_PER_BYTE: u64 = 10;
/// Gas of deducting a non-zero fee: the bank send from the payer to the fee collector (account and balance
/// reads and writes, ~10k gas with the SDK's KV gas costs). cosmos-sdk's `DeductFeeDecorator` skips the send for
/// a zero fee, in Simulate too, so a draft simulated with a zero fee is estimated without it.
pub const FEE_DEDUCTION_GAS: u64 = 10_000;
/// The simulator's gas of the signature decorators (account and params reads, the secp256k1 verification).
pub const SIGNATURE_GAS: u64 = 50_000;
/// The simulator's gas of running one claim or proof message.
pub const MESSAGE_GAS: u64 = 20_000;

/// Gas a tx uses, the same in Simulate and in a block: every ante decorator, then its messages.
pub(super) fn gas_used(tx_len: usize, messages: usize, fee: u128) -> u64 {
    ante_gas(tx_len, fee) + MESSAGE_GAS * messages as u64
}

/// Gas the ante handler meters for a tx of `tx_len` bytes paying `fee` (every decorator passed).
pub(super) fn ante_gas(tx_len: usize, fee: u128) -> u64 {
    let fee_gas = if fee == 0 { 0 } else { FEE_DEDUCTION_GAS };
    tx_len as u64 * TX_SIZE_GAS_PER_BYTE + fee_gas + SIGNATURE_GAS
}

/// The sequence the next ordered tx of `signer` must carry in `mode`.
pub(super) fn expected_sequence(s: &ChainState, signer: &str, mode: Mode) -> u64 {
    let committed = s.accounts.get(signer).map_or(0, |a| a.sequence);
    match mode {
        Mode::Check | Mode::Simulate => s.check_sequences.get(signer).copied().unwrap_or(committed),
        Mode::Deliver => committed,
    }
}

/// Checks a tx as a node's `runTx` does before its messages run, in `mode`: the tx decoder's signer addresses and
/// the messages' `ValidateBasic` ([`super::validate_basic::before_ante`]), then the ante handler ([`ante`]).
/// Returns the signer address, the decoded body and the upokt fee, or the refusal with its code.
pub(super) fn check_tx(s: &ChainState, tx_bytes: &[u8], mode: Mode) -> Result<(String, TxBody, u128), Refusal> {
    // A tx that does not decode is refused by the ante step's own decoding, with its code.
    if let Some(body) = TxRaw::decode(tx_bytes)
        .ok()
        .and_then(|raw| TxBody::decode(raw.body_bytes.as_slice()).ok())
    {
        super::validate_basic::before_ante(&body)?;
    }
    ante(s, tx_bytes, mode)
}

/// cosmos-sdk `sdkerrors` codes the ante handler refuses with (codespace `sdk`).
const SDK_TX_DECODE: u32 = 2; // ErrTxDecode "tx parse error"
const SDK_UNAUTHORIZED: u32 = 4; // ErrUnauthorized "unauthorized"
const SDK_INSUFFICIENT_FUNDS: u32 = 5; // ErrInsufficientFunds "insufficient funds"
const SDK_UNKNOWN_REQUEST: u32 = 6; // ErrUnknownRequest "unknown request"
const SDK_UNKNOWN_ADDRESS: u32 = 9; // ErrUnknownAddress "unknown address"
const SDK_OUT_OF_GAS: u32 = 11; // ErrOutOfGas "out of gas"
const SDK_INSUFFICIENT_FEE: u32 = 13; // ErrInsufficientFee "insufficient fee"
const SDK_INVALID_REQUEST: u32 = 18; // ErrInvalidRequest "invalid request"
const SDK_TX_TIMEOUT_HEIGHT: u32 = 30; // ErrTxTimeoutHeight "tx timeout height"
const SDK_WRONG_SEQUENCE: u32 = 32; // ErrWrongSequence "incorrect account sequence"

/// A refusal of the ante handler (codespace `sdk`) with the gas metered so far.
fn refused(code: u32, log: String, gas_used: u64, frame: &'static str) -> Refusal {
    Refusal {
        code,
        codespace: "sdk",
        log,
        gas_used,
        frame,
    }
}

/// x/auth/ante's refusal of a tx whose ante gas `gas` passed its `gas_limit`: cosmos-sdk `ErrOutOfGas` (code 11),
/// as baseapp's out-of-gas recovery wraps the meter's panic, naming the `location` that metered past the limit.
/// Not in simulate mode (an infinite gas meter).
fn out_of_gas(mode: Mode, gas_limit: u64, gas: u64, location: &str) -> Result<(), Refusal> {
    if mode == Mode::Simulate || gas <= gas_limit {
        return Ok(());
    }
    Err(refused(
        SDK_OUT_OF_GAS,
        format!("out of gas in location: {location}; gasWanted: {gas_limit}, gasUsed: {gas}: out of gas"),
        gas,
        frame::ERROR_WRAP,
    ))
}

/// Authenticates a tx (the ante handler's checks, in the SDK's order): returns the signer address, decoded body
/// and upokt fee, or the refusal.
fn ante(s: &ChainState, tx_bytes: &[u8], mode: Mode) -> Result<(String, TxBody, u128), Refusal> {
    // Nothing is metered before `ConsumeGasForTxSizeDecorator`.
    let decode = |what: &str, e: String| {
        refused(
            SDK_TX_DECODE,
            format!("{what}: {e}: tx parse error"),
            0,
            frame::ERROR_WRAP,
        )
    };
    let unauthorized =
        |log: &str, gas| refused(SDK_UNAUTHORIZED, format!("{log}: unauthorized"), gas, frame::SIGVERIFY);
    let raw = TxRaw::decode(tx_bytes).map_err(|e| decode("tx", e.to_string()))?;
    let body = TxBody::decode(raw.body_bytes.as_slice()).map_err(|e| decode("tx body", e.to_string()))?;
    let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).map_err(|e| decode("auth info", e.to_string()))?;
    for msg in &body.messages {
        if msg.type_url != wire::MSG_CREATE_CLAIM_TYPE_URL && msg.type_url != wire::MSG_SUBMIT_PROOF_TYPE_URL {
            // The simulator knows no other message (a node would not resolve its type URL).
            return Err(refused(
                SDK_UNKNOWN_REQUEST,
                format!("unsupported message {}: unknown request", msg.type_url),
                0,
                frame::ERROR_WRAPF,
            ));
        }
    }
    let signer_info = auth
        .signer_infos
        .first()
        .ok_or_else(|| unauthorized("tx without signer", 0))?;
    let pubkey_any = signer_info
        .public_key
        .as_ref()
        .ok_or_else(|| unauthorized("signer without public key", 0))?;
    let pubkey = crate::chain::tx::Secp256k1PubKey::decode(pubkey_any.value.as_slice())
        .map_err(|e| decode("public key", e.to_string()))?;
    let signer = address::address_from_public_key(&pubkey.key);
    // `TxTimeoutHeightDecorator` (x/auth/ante/basic.go): a tx whose `timeout_height` is below the height it runs at
    // is refused, code 30; at CheckTx and in Simulate that height is the last committed block's (the check state's
    // header), in a block the block's (`s.height` is both here). No gas metered yet.
    let at = u64::try_from(s.height).unwrap_or(0);
    if body.timeout_height > 0 && at > body.timeout_height {
        return Err(refused(
            SDK_TX_TIMEOUT_HEIGHT,
            format!(
                "block height: {at}, timeout height: {}: tx timeout height",
                body.timeout_height
            ),
            0,
            frame::BASIC,
        ));
    }
    // `ConsumeGasForTxSizeDecorator`. The gas meter `SetUpContextDecorator` set holds the tx's gas limit (in
    // simulate mode an infinite one): metering past it panics, and `runTx` recovers that as `ErrOutOfGas` (code
    // 11) before `DeductFeeDecorator` ran, so no fee is paid and CheckTx refuses the tx. A tx whose size alone
    // costs more than its limit (a proof carrying a large relay under a fixed gas limit) never enters a mempool.
    let gas_limit = auth.fee.as_ref().map_or(0, |f| f.gas_limit);
    let mut gas = tx_bytes.len() as u64 * TX_SIZE_GAS_PER_BYTE;
    out_of_gas(mode, gas_limit, gas, "txSize")?;
    let fee_coins = auth.fee.as_ref().map(|f| f.amount.as_slice()).unwrap_or_default();
    if mode == Mode::Check {
        // `DeductFeeDecorator`'s fee checker (x/auth/ante/validator_tx_fee.go `checkTxFeeWithValidatorMinGasPrices`):
        // the node's minimum gas price, only at CheckTx (not in simulate mode, and a block's DeliverTx has no
        // minimum).
        if let Some(refusal) = super::fees::insufficient_fee(&s.minimum_gas_prices, fee_coins, gas_limit) {
            return Err(refused(SDK_INSUFFICIENT_FEE, refusal, gas, frame::VALIDATOR_TX_FEE));
        }
    }
    // `DeductFeeDecorator`: the fee payer (the first signer) must exist (`ErrUnknownAddress.Wrapf`, fee.go).
    let account = s.accounts.get(&signer).ok_or_else(|| {
        refused(
            SDK_UNKNOWN_ADDRESS,
            format!("fee payer address: {signer} does not exist: unknown address"),
            gas,
            frame::ERROR_WRAPF,
        )
    })?;
    let fee: u128 = fee_coins
        .iter()
        .filter(|c| c.denom == "upokt")
        .filter_map(|c| c.amount.parse::<u128>().ok())
        .sum();
    // `DeductFees` wraps the bank's error (x/bank/keeper/send.go `subUnlockedCoins`: "spendable balance %s is
    // smaller than %s") in `ErrInsufficientFunds` once more; `%v` shows the frame of the inner, the bank's, error.
    if account.balance < fee {
        return Err(refused(
            SDK_INSUFFICIENT_FUNDS,
            format!(
                "spendable balance {}upokt is smaller than {fee}upokt: insufficient funds: insufficient funds",
                account.balance
            ),
            gas,
            frame::BANK_SEND,
        ));
    }
    if fee > 0 {
        gas += FEE_DEDUCTION_GAS;
    }
    // `SigGasConsumeDecorator` and the account reads before `SigVerificationDecorator`'s checks.
    gas += SIGNATURE_GAS;
    let invalid_request = |log: String| refused(SDK_INVALID_REQUEST, log, gas, frame::SIGVERIFY);
    if body.unordered {
        // `SigVerificationDecorator.verifyUnorderedNonce` (x/auth/ante/sigverify.go), its texts and code 18.
        let timeout = body.timeout_timestamp.ok_or_else(|| {
            invalid_request("unordered transaction must have timeout_timestamp set: invalid request".into())
        })?;
        let now = s.genesis_time + s.height * s.genesis.block_time_ms.max(1) as i64 / 1000;
        if timeout.seconds <= now {
            return Err(invalid_request(
                "unordered transaction has a timeout_timestamp that has already passed: invalid request".into(),
            ));
        }
        if timeout.seconds > now + crate::chain::tx::MAX_UNORDERED_TIMEOUT_SECS + 5 {
            return Err(invalid_request(
                "unordered tx ttl exceeds 10m0s: invalid request".into(),
            ));
        }
        if signer_info.sequence != 0 {
            return Err(unauthorized("unordered tx must have sequence 0", gas));
        }
        // cosmos-sdk v0.53 `verifyUnorderedNonce`: one nonce per (signer, timeout); Simulate does not check it.
        let nonce = ((timeout.seconds, timeout.nanos), signer.clone());
        let used = match mode {
            Mode::Simulate => false,
            Mode::Check => s.unordered_nonces.contains(&nonce) || s.check_unordered_nonces.contains(&nonce),
            Mode::Deliver => s.unordered_nonces.contains(&nonce),
        };
        if used {
            return Err(invalid_request(UNORDERED_NONCE_USED.into()));
        }
    } else {
        let expected = expected_sequence(s, &signer, mode);
        if signer_info.sequence != expected {
            return Err(refused(
                SDK_WRONG_SEQUENCE,
                format!(
                    "account sequence mismatch, expected {expected}, got {}: incorrect account sequence",
                    signer_info.sequence
                ),
                gas,
                frame::SIGVERIFY,
            ));
        }
    }
    // The signature, not in simulate mode (a draft for gas estimation needs none).
    if mode != Mode::Simulate {
        let doc = SignDoc {
            body_bytes: raw.body_bytes.clone(),
            auth_info_bytes: raw.auth_info_bytes.clone(),
            chain_id: s.genesis.chain_id.clone(),
            account_number: account.number,
        };
        let verified = raw.signatures.first().is_some_and(|signature| {
            let key = address::verifying_key_from_compressed(&pubkey.key);
            let sig = k256::ecdsa::Signature::from_slice(signature);
            matches!((key, sig), (Ok(key), Ok(sig)) if key.verify(&doc.encode_to_vec(), &sig).is_ok())
        });
        if !verified {
            return Err(unauthorized(
                &format!(
                    "signature verification failed; please verify account number ({}) and chain-id ({}): (unable to \
                     verify single signer signature)",
                    account.number, s.genesis.chain_id
                ),
                gas,
            ));
        }
    }
    for msg in &body.messages {
        let ok = match msg.type_url.as_str() {
            wire::MSG_CREATE_CLAIM_TYPE_URL => wire::MsgCreateClaim::decode(msg.value.as_slice())
                .map(|m| m.supplier_operator_address == signer)
                .unwrap_or(false),
            _ => wire::MsgSubmitProof::decode(msg.value.as_slice())
                .map(|m| m.supplier_operator_address == signer)
                .unwrap_or(false),
        };
        if !ok {
            return Err(unauthorized(
                "message signer is not the tx signer or message is malformed",
                gas,
            ));
        }
    }
    Ok((signer, body, fee))
}

/// The SDK's text for an unordered tx whose (signer, timeout) nonce is taken (`TryAddUnorderedNonce`).
const UNORDERED_NONCE_USED: &str = "failed to add unordered nonce: already used timeout: invalid request";

/// Records the unordered nonce of a tx [`check_tx`] accepted in `mode` (CheckTx: until the next block; DeliverTx:
/// until its timeout passes).
pub(super) fn record_unordered_nonce(s: &mut ChainState, signer: &str, body: &TxBody, mode: Mode) {
    let Some(timeout) = body.timeout_timestamp.filter(|_| body.unordered) else {
        return;
    };
    let nonce = ((timeout.seconds, timeout.nanos), signer.to_string());
    match mode {
        Mode::Check => s.check_unordered_nonces.insert(nonce),
        Mode::Deliver => s.unordered_nonces.insert(nonce),
        Mode::Simulate => false,
    };
}

/// Drops the committed unordered nonces whose timeout is before `block_time` (the SDK's pre-block
/// `RemoveExpiredUnorderedNonces`): a tx with such a timeout is refused anyway, and memory stays bounded.
pub(super) fn expire_unordered_nonces(s: &mut ChainState, block_time: (i64, i32)) {
    s.unordered_nonces = s.unordered_nonces.split_off(&(block_time, String::new()));
}

/// The gas limit a tx signed for (0 when it does not decode: `check_tx` refused it already).
pub(super) fn gas_limit_of(tx_bytes: &[u8]) -> u64 {
    TxRaw::decode(tx_bytes)
        .ok()
        .and_then(|raw| AuthInfo::decode(raw.auth_info_bytes.as_slice()).ok())
        .and_then(|auth| auth.fee)
        .map_or(0, |fee| fee.gas_limit)
}
