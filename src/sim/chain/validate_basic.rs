//! The stateless checks a node runs on a tx's messages before its ante handler (so before any fee is charged),
//! in CheckTx, Simulate and a block alike: cosmos-sdk v0.53 `baseapp.runTx` decodes the tx (the x/tx decoder
//! reads every message's signer address, `x/tx/decode/decode.go` `Decode` → `GetSigners`) and then runs
//! `validateBasicTxMsgs` (at least one message, then each message's `ValidateBasic`). A refusal here carries the
//! registering module's codespace and code, which is how a client tells a message's fault from the tx's.
//!
//! The rules are poktroll v0.1.35's (`x/proof/types/message_create_claim.go`, `x/proof/types/message_submit_proof.go`,
//! `x/session/types/session_header.go`, `x/shared/types/service.go` `IsValidServiceId`), with the error texts
//! cosmos-sdk's `errorsmod` gives a wrapped registered error ("{wrap}: {registered description}").

use prost::Message as _;

use crate::chain::tx::TxBody;
use crate::protocol::wire::{self, SessionHeader};

/// A refusal as the node reports it: ABCI code, its codespace, and the log text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// Non-zero ABCI code.
    pub code: u32,
    /// Module that registered the code (`sdk`, `proof`, ...).
    pub codespace: &'static str,
    /// The error text (`err.Error()`: CheckTx's and a block result's `raw_log`).
    pub log: String,
    /// Gas the node had metered when it refused: 0 before the ante handler (`validateBasicTxMsgs`, the tx decoder)
    /// and in its first decorators (module `ante`).
    pub gas_used: u64,
    /// Where the error was created, as `errorsmod` prints it after the text under `%v` ([`frame`]).
    pub frame: &'static str,
}

impl Refusal {
    /// A refusal before the ante handler, created by a registered error's `Wrapf` (poktroll's `ValidateBasic`).
    fn new(code: u32, codespace: &'static str, log: String) -> Self {
        Self {
            code,
            codespace,
            log,
            gas_used: 0,
            frame: frame::ERROR_WRAPF,
        }
    }

    /// The same refusal, its error created elsewhere.
    fn at(self, frame: &'static str) -> Self {
        Self { frame, ..self }
    }

    /// How cosmos-sdk v0.53's gRPC `Simulate` reports the refusal: the status message of its `codes.Unknown`
    /// ([`simulate_failure`] of the error under `%v`, with its frame, and the gas metered).
    pub fn simulate_status_message(&self) -> String {
        simulate_failure(&format!("{}{}", self.log, self.frame), self.gas_used)
    }
}

/// The status message of a failed simulation: cosmos-sdk v0.53 `x/auth/tx/service.go` `txServer.Simulate`
/// answers `status.Errorf(codes.Unknown, "%v with gas used: '%d'", err, gasInfo.GasUsed)` (since v0.50.3,
/// cosmos-sdk#18772: before, "%v With gas wanted: '%d' and gas used: '%d' "). `error_v` is the error as `%v` prints
/// it (its text, then its frame).
pub(super) fn simulate_failure(error_v: &str, gas_used: u64) -> String {
    format!("{error_v} with gas used: '{gas_used}'")
}

/// `%v` of a cosmossdk.io/errors v1 wrapped error appends ` [file:line]` of where its stack was first attached
/// (`errors/stacktrace.go` `wrappedError.Format` → `writeSimpleFrame`, the path cut after "github.com/", the
/// errors package's own `Wrap`/`Wrapf` trimmed). `err.Error()` has no frame, so CheckTx and block results carry
/// none; only a failed Simulate shows one. The files are where v0.53.7 / errors v1.0.2 create each error; the line
/// numbers are representative, not checked against those releases (no client may parse them).
pub(super) mod frame {
    /// A registered error's `(*Error).Wrapf` method (`ErrX.Wrapf(...)`): the method is not trimmed, so the frame
    /// is the errors package's own file.
    pub const ERROR_WRAPF: &str = " [cosmossdk.io/errors@v1.0.2/errors.go:155]";
    /// A registered error's `(*Error).Wrap` method.
    pub const ERROR_WRAP: &str = " [cosmossdk.io/errors@v1.0.2/errors.go:151]";
    /// `errorsmod.Wrap(f)` in baseapp (`validateBasicTxMsgs`, `runMsgs`'s "failed to execute message").
    pub const BASEAPP: &str = " [cosmos/cosmos-sdk@v0.53.7/baseapp/baseapp.go:1097]";
    /// `TxTimeoutHeightDecorator`.
    pub const BASIC: &str = " [cosmos/cosmos-sdk@v0.53.7/x/auth/ante/basic.go:238]";
    /// `checkTxFeeWithValidatorMinGasPrices`.
    pub const VALIDATOR_TX_FEE: &str = " [cosmos/cosmos-sdk@v0.53.7/x/auth/ante/validator_tx_fee.go:43]";
    /// The bank's "spendable balance ... is smaller than ..." that `DeductFees` wraps.
    pub const BANK_SEND: &str = " [cosmos/cosmos-sdk@v0.53.7/x/bank/keeper/send.go:278]";
    /// `SigVerificationDecorator` (sequence, unordered nonce, signature).
    pub const SIGVERIFY: &str = " [cosmos/cosmos-sdk@v0.53.7/x/auth/ante/sigverify.go:294]";
}

/// cosmos-sdk `sdkerrors` (codespace `sdk`) codes used here.
const SDK_TX_DECODE: u32 = 2; // ErrTxDecode "tx parse error"
const SDK_INVALID_ADDRESS: u32 = 7; // ErrInvalidAddress "invalid address"
const SDK_INVALID_REQUEST: u32 = 18; // ErrInvalidRequest "invalid request"

/// poktroll `x/proof/types/errors.go` (codespace `proof`).
const PROOF_INVALID_ADDRESS: u32 = 1101; // "invalid address"
const PROOF_INVALID_ROOT_HASH: u32 = 1104; // ErrProofInvalidClaimRootHash "invalid root hash"
const PROOF_INVALID_PROOF: u32 = 1108; // ErrProofInvalidProof "invalid proof"
const PROOF_INVALID_SESSION_HEADER: u32 = 1115; // ErrProofInvalidSessionHeader "invalid session header"

/// poktroll `pkg/crypto/protocol/hasher.go` `TrieRootSize`: a 32-byte SHA-256 digest, then the 8-byte sum and
/// the 8-byte count.
pub(super) const TRIE_ROOT_SIZE: usize = 48;

/// cosmos-sdk `sdk.AccAddressFromBech32` with the `pokt` prefix: `Err` with its text.
pub(super) fn acc_address_from_bech32(address: &str) -> Result<Vec<u8>, String> {
    use bech32::primitives::decode::CheckedHrpstring;
    if address.trim().is_empty() {
        return Err("empty address string is not allowed".into());
    }
    // cosmos-sdk `bech32.DecodeAndConvert`: a bech32 (not bech32m) checksum, up to 1023 characters.
    let checked =
        CheckedHrpstring::new::<bech32::Bech32>(address).map_err(|e| format!("decoding bech32 failed: {e}"))?;
    let hrp = checked.hrp().to_lowercase();
    if hrp != crate::protocol::address::HRP {
        return Err(format!(
            "invalid Bech32 prefix; expected {}, got {hrp}",
            crate::protocol::address::HRP
        ));
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    // `sdk.VerifyAddressFormat` (no custom verifier in poktroll's config); `ErrUnknownAddress` "unknown address".
    if bytes.is_empty() {
        return Err("addresses cannot be empty: unknown address".into());
    }
    if bytes.len() > 255 {
        return Err(format!(
            "address max length is 255, got {}: unknown address",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Go's `%q` of a string (the ASCII cases the simulator meets; other characters are written as they are).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// poktroll `SessionHeader.ValidateBasic` (`x/session/types/session_header.go`): the error text of the first
/// failing rule, as the session and shared modules register it.
pub(super) fn session_header_basic(header: &SessionHeader) -> Result<(), String> {
    if let Err(e) = acc_address_from_bech32(&header.application_address) {
        // ErrSessionInvalidAppAddress (session 1105).
        return Err(format!(
            "{}; ({e}): invalid application address for session",
            go_quote(&header.application_address)
        ));
    }
    if header.session_id.is_empty() {
        // ErrSessionInvalidSessionId (session 1108).
        return Err(format!("{}: invalid sessionId", go_quote(&header.session_id)));
    }
    // x/shared `IsValidServiceId`: non-empty, at most 42 characters of [a-zA-Z0-9_-] (ErrSharedInvalidServiceId).
    let service = &header.service_id;
    if service.is_empty() {
        return Err("empty service ID: invalid service ID".into());
    }
    if service.len() > 42 {
        return Err(format!(
            "service ID '{service}' exceeds maximum length: 42: invalid service ID"
        ));
    }
    if !service
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "service ID '{service}' contains invalid characters: invalid service ID"
        ));
    }
    // ErrSessionInvalidBlockHeight (session 1107).
    if header.session_start_block_height <= 0 {
        return Err("sessions can only start at height 1 or greater: invalid block height for session".into());
    }
    if header.session_end_block_height <= header.session_start_block_height {
        return Err(
            "session end block height cannot be less than or equal to session start block height: invalid block \
             height for session"
                .into(),
        );
    }
    Ok(())
}

/// poktroll `MsgCreateClaim.ValidateBasic` (`x/proof/types/message_create_claim.go`).
pub(super) fn create_claim_basic(msg: &wire::MsgCreateClaim) -> Result<(), Refusal> {
    let proof = |code, log: String| Refusal::new(code, "proof", log);
    if acc_address_from_bech32(&msg.supplier_operator_address).is_err() {
        return Err(proof(
            PROOF_INVALID_ADDRESS,
            format!("{}: invalid address", msg.supplier_operator_address),
        ));
    }
    let header = msg.session_header.as_ref().ok_or_else(|| {
        proof(
            PROOF_INVALID_SESSION_HEADER,
            "session header is nil: invalid session header".into(),
        )
    })?;
    session_header_basic(header).map_err(|e| {
        proof(
            PROOF_INVALID_SESSION_HEADER,
            format!("invalid session header: {e}: invalid session header"),
        )
    })?;
    let root = &msg.root_hash;
    if root.len() != TRIE_ROOT_SIZE {
        return Err(proof(
            PROOF_INVALID_ROOT_HASH,
            format!(
                "expecting root hash to be {TRIE_ROOT_SIZE} bytes, got {} bytes: invalid root hash",
                root.len()
            ),
        ));
    }
    let (sum, count) = crate::smst::hash::root_sum_count(root).unwrap_or_default();
    // Count first, then sum, as poktroll checks them.
    if count == 0 {
        return Err(proof(
            PROOF_INVALID_ROOT_HASH,
            format!(
                "has zero count in Merkle root (hex) {}: invalid root hash",
                hex::encode(root)
            ),
        ));
    }
    if sum == 0 {
        return Err(proof(
            PROOF_INVALID_ROOT_HASH,
            format!(
                "has zero sum in Merkle root (hex) {}: invalid root hash",
                hex::encode(root)
            ),
        ));
    }
    Ok(())
}

/// poktroll `MsgSubmitProof.ValidateBasic` (`x/proof/types/message_submit_proof.go`): its address error is the
/// SDK's `ErrInvalidAddress`, and the header error is not prefixed as the claim's is.
pub(super) fn submit_proof_basic(msg: &wire::MsgSubmitProof) -> Result<(), Refusal> {
    if let Err(e) = acc_address_from_bech32(&msg.supplier_operator_address) {
        return Err(Refusal::new(
            SDK_INVALID_ADDRESS,
            "sdk",
            format!(
                "supplier operator address {}, error: {e}: invalid address",
                go_quote(&msg.supplier_operator_address)
            ),
        ));
    }
    let proof = |code, log: String| Refusal::new(code, "proof", log);
    let header = msg.session_header.as_ref().ok_or_else(|| {
        proof(
            PROOF_INVALID_SESSION_HEADER,
            "session header is nil: invalid session header".into(),
        )
    })?;
    session_header_basic(header)
        .map_err(|e| proof(PROOF_INVALID_SESSION_HEADER, format!("{e}: invalid session header")))?;
    if msg.proof.is_empty() {
        return Err(proof(PROOF_INVALID_PROOF, "proof cannot be empty: invalid proof".into()).at(frame::ERROR_WRAP));
    }
    Ok(())
}

/// What runs before the ante handler, in order: the tx decoder's signer extraction (a claim's or proof's
/// `supplier_operator_address` is its `cosmos.msg.v1.signer` field: an address that does not decode fails the
/// whole tx as cosmos-sdk `ErrTxDecode`), then `validateBasicTxMsgs`. Messages of other types are left to the
/// ante checks; a message that does not decode is a tx decode failure.
pub(super) fn before_ante(body: &TxBody) -> Result<(), Refusal> {
    let decode_refusal =
        |reason: String| Refusal::new(SDK_TX_DECODE, "sdk", format!("{reason}: tx parse error")).at(frame::ERROR_WRAP);
    let mut claims_and_proofs = Vec::with_capacity(body.messages.len());
    for msg in &body.messages {
        let decoded = match msg.type_url.as_str() {
            wire::MSG_CREATE_CLAIM_TYPE_URL => wire::MsgCreateClaim::decode(msg.value.as_slice())
                .map(Basic::Claim)
                .map_err(|e| decode_refusal(e.to_string()))?,
            wire::MSG_SUBMIT_PROOF_TYPE_URL => wire::MsgSubmitProof::decode(msg.value.as_slice())
                .map(Basic::Proof)
                .map_err(|e| decode_refusal(e.to_string()))?,
            _ => continue,
        };
        acc_address_from_bech32(decoded.signer()).map_err(decode_refusal)?;
        claims_and_proofs.push(decoded);
    }
    // cosmos-sdk `validateBasicTxMsgs`.
    if body.messages.is_empty() {
        return Err(Refusal::new(
            SDK_INVALID_REQUEST,
            "sdk",
            "must contain at least one message: invalid request".into(),
        )
        .at(frame::BASEAPP));
    }
    for msg in &claims_and_proofs {
        match msg {
            Basic::Claim(m) => create_claim_basic(m)?,
            Basic::Proof(m) => submit_proof_basic(m)?,
        }
    }
    Ok(())
}

/// A decoded message `before_ante` checks.
enum Basic {
    Claim(wire::MsgCreateClaim),
    Proof(wire::MsgSubmitProof),
}

impl Basic {
    fn signer(&self) -> &str {
        match self {
            Self::Claim(m) => &m.supplier_operator_address,
            Self::Proof(m) => &m.supplier_operator_address,
        }
    }
}
