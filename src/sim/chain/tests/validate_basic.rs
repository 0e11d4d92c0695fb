//! The messages' `ValidateBasic` runs before the ante handler, in CheckTx, Simulate and a block alike (cosmos-sdk
//! v0.53 `runTx` → `validateBasicTxMsgs`): a claim or proof breaking one of poktroll v0.1.35's stateless rules is
//! refused with the registering module's codespace and code, and no fee is paid.

use super::*;
use crate::sim::chain::validate_basic::{create_claim_basic, submit_proof_basic};

/// An unordered tx of `messages` signed by the fixture's supplier.
async fn tx_of(f: &Fixture, messages: Vec<wire::Any>) -> crate::chain::tx::SignedTx {
    signed_tx_of(f, messages, &f.supplier, 120).await
}

/// What the node answers for a tx of `messages`: Simulate's error text (it must fail), then CheckTx's (code,
/// codespace, log); then the same bytes straight into a block (as from another node's mempool): its result's
/// (code, codespace, log). Asserts that no fee was paid, no message ran and nothing stayed in the mempool.
async fn refusals(f: &Fixture, messages: Vec<wire::Any>) -> (String, (u32, String, String), (u32, String, String)) {
    let tx = tx_of(f, messages).await;
    let balance = f.chain.state().accounts[&f.supplier_address].balance;
    let records = f.chain.records().len();
    let simulated = f.client.simulate(tx.tx_bytes.clone()).await.unwrap_err().to_string();
    let checked = f.client.broadcast(tx.tx_bytes.clone()).await.unwrap();
    assert!(f.chain.state().mempool.is_empty(), "refused before the mempool");
    f.chain.state().mempool.push(tx.tx_bytes);
    f.chain.produce_block();
    let delivered = f.client.get_tx(&tx.hash).await.unwrap().unwrap();
    assert_eq!(
        f.chain.state().accounts[&f.supplier_address].balance,
        balance,
        "no fee: refused before the ante handler"
    );
    assert_eq!(f.chain.records().len(), records, "no message ran");
    (
        simulated,
        (checked.code, checked.codespace, checked.raw_log),
        (delivered.code, delivered.codespace, delivered.raw_log),
    )
}

/// Asserts the node refuses `messages` with `code` in `codespace` and exactly `log` at CheckTx and in a block,
/// and with that text (no "message index": no message ran) at Simulate.
async fn assert_refused(f: &Fixture, messages: Vec<wire::Any>, code: u32, codespace: &str, log: &str) {
    let (simulated, checked, delivered) = refusals(f, messages).await;
    let expected = (code, codespace.to_string(), log.to_string());
    assert_eq!(checked, expected, "CheckTx");
    assert_eq!(delivered, expected, "in a block");
    // cosmos-sdk v0.53 `txServer.Simulate`: "%v with gas used: '%d'", the error's frame between its text and the
    // gas, nothing metered before the ante handler.
    let (text, rest) = simulated
        .split_once(" [")
        .unwrap_or_else(|| panic!("a frame: {simulated}"));
    assert!(text.ends_with(log), "Simulate: {simulated}");
    assert!(rest.ends_with("] with gas used: '0'"), "Simulate: {simulated}");
    assert!(!simulated.contains("message index"), "{simulated}");
}

fn claim_with(f: &Fixture, header: Option<wire::SessionHeader>, root: Vec<u8>) -> wire::Any {
    wire::Any::pack(
        wire::MSG_CREATE_CLAIM_TYPE_URL,
        &wire::MsgCreateClaim {
            supplier_operator_address: f.supplier_address.clone(),
            session_header: header,
            root_hash: root,
        },
    )
}

fn proof_with(f: &Fixture, header: Option<wire::SessionHeader>, proof: Vec<u8>) -> wire::Any {
    wire::Any::pack(
        wire::MSG_SUBMIT_PROOF_TYPE_URL,
        &wire::MsgSubmitProof {
            supplier_operator_address: f.supplier_address.clone(),
            session_header: header,
            proof,
        },
    )
}

/// A 48-byte root of `sum` and `count`.
fn root_of(sum: u64, count: u64) -> Vec<u8> {
    let mut root = vec![7u8; 32];
    root.extend_from_slice(&sum.to_be_bytes());
    root.extend_from_slice(&count.to_be_bytes());
    root
}

/// `address`'s account id under another bech32 prefix.
fn with_prefix(address: &str, hrp: &str) -> String {
    let id = address::decode_address(address).unwrap();
    bech32::encode::<bech32::Bech32>(bech32::Hrp::parse(hrp).unwrap(), &id).unwrap()
}

/// poktroll `MsgCreateClaim.ValidateBasic`: the root must be `TrieRootSize` (48) bytes with a non-zero count,
/// then a non-zero sum (`ErrProofInvalidClaimRootHash`, proof 1104).
#[tokio::test]
async fn a_claim_root_of_the_wrong_size_or_with_no_work_is_refused_with_proof_1104() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    let header = Some(f.header.clone());
    assert_refused(
        &f,
        vec![claim_with(&f, header.clone(), vec![1; 32])],
        1104,
        "proof",
        "expecting root hash to be 48 bytes, got 32 bytes: invalid root hash",
    )
    .await;
    let zero_count = root_of(10, 0);
    assert_refused(
        &f,
        vec![claim_with(&f, header.clone(), zero_count.clone())],
        1104,
        "proof",
        &format!(
            "has zero count in Merkle root (hex) {}: invalid root hash",
            hex::encode(&zero_count)
        ),
    )
    .await;
    let zero_sum = root_of(0, 3);
    assert_refused(
        &f,
        vec![claim_with(&f, header, zero_sum.clone())],
        1104,
        "proof",
        &format!(
            "has zero sum in Merkle root (hex) {}: invalid root hash",
            hex::encode(&zero_sum)
        ),
    )
    .await;
}

/// A change made to a good session header.
type HeaderChange<'a> = Box<dyn Fn(&mut wire::SessionHeader) + 'a>;

/// poktroll `SessionHeader.ValidateBasic`, wrapped by the claim as `ErrProofInvalidSessionHeader` (proof 1115)
/// with an "invalid session header: " prefix: nil header, application address, session id, service id, heights.
#[tokio::test]
async fn a_claim_with_a_bad_session_header_is_refused_with_proof_1115() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    let root = root_of(20, 2);
    let claim = |header: Option<wire::SessionHeader>| vec![claim_with(&f, header, root.clone())];
    let wrapped = |e: &str| format!("invalid session header: {e}: invalid session header");
    assert_refused(
        &f,
        claim(None),
        1115,
        "proof",
        "session header is nil: invalid session header",
    )
    .await;

    let cosmos = with_prefix(&f.header.application_address, "cosmos");
    let cases: Vec<(HeaderChange<'_>, String)> = vec![
        (
            Box::new(|h| h.application_address = cosmos.clone()),
            format!(
                "\"{cosmos}\"; (invalid Bech32 prefix; expected pokt, got cosmos): invalid application address for session"
            ),
        ),
        (
            Box::new(|h| h.application_address = String::new()),
            "\"\"; (empty address string is not allowed): invalid application address for session".into(),
        ),
        (
            Box::new(|h| h.session_id = String::new()),
            "\"\": invalid sessionId".into(),
        ),
        (
            Box::new(|h| h.service_id = String::new()),
            "empty service ID: invalid service ID".into(),
        ),
        (
            Box::new(|h| h.service_id = "an/vil".into()),
            "service ID 'an/vil' contains invalid characters: invalid service ID".into(),
        ),
        (
            Box::new(|h| h.service_id = "a".repeat(43)),
            format!(
                "service ID '{}' exceeds maximum length: 42: invalid service ID",
                "a".repeat(43)
            ),
        ),
        (
            Box::new(|h| h.session_start_block_height = 0),
            "sessions can only start at height 1 or greater: invalid block height for session".into(),
        ),
        (
            Box::new(|h| h.session_end_block_height = h.session_start_block_height),
            "session end block height cannot be less than or equal to session start block height: invalid block \
             height for session"
                .into(),
        ),
    ];
    for (change, error) in cases {
        let mut header = f.header.clone();
        change(&mut header);
        assert_refused(&f, claim(Some(header)), 1115, "proof", &wrapped(&error)).await;
    }
}

/// poktroll `MsgSubmitProof.ValidateBasic`: a header error is `ErrProofInvalidSessionHeader` without the claim's
/// prefix, an empty proof is `ErrProofInvalidProof` (proof 1108).
#[tokio::test]
async fn a_proof_with_a_bad_header_or_no_bytes_is_refused() {
    let f = fixture(1.0).await;
    let header = Some(f.header.clone());
    assert_refused(
        &f,
        vec![proof_with(&f, header, vec![])],
        1108,
        "proof",
        "proof cannot be empty: invalid proof",
    )
    .await;
    assert_refused(
        &f,
        vec![proof_with(&f, None, vec![1])],
        1115,
        "proof",
        "session header is nil: invalid session header",
    )
    .await;
    let mut no_id = f.header.clone();
    no_id.session_id = String::new();
    assert_refused(
        &f,
        vec![proof_with(&f, Some(no_id), vec![1])],
        1115,
        "proof",
        "\"\": invalid sessionId: invalid session header",
    )
    .await;
}

/// A supplier operator address that is not bech32 fails the tx decoder, which reads every message's signer
/// (cosmos-sdk v0.53 x/tx `Decode` → `GetSigners`): `ErrTxDecode` (sdk 2), before `ValidateBasic`. The messages'
/// own address rules (claim: `ErrProofInvalidAddress` proof 1101; proof: the SDK's `ErrInvalidAddress` 7) are
/// thus met only by a message the decoder let through; they are checked here directly.
#[tokio::test]
async fn a_supplier_address_that_is_not_bech32_is_refused_as_a_tx_decode_error() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    let bad = with_prefix(&f.supplier_address, "cosmos");
    let claim = wire::MsgCreateClaim {
        supplier_operator_address: bad.clone(),
        session_header: Some(f.header.clone()),
        root_hash: root_of(20, 2),
    };
    assert_refused(
        &f,
        vec![wire::Any::pack(wire::MSG_CREATE_CLAIM_TYPE_URL, &claim)],
        2,
        "sdk",
        "invalid Bech32 prefix; expected pokt, got cosmos: tx parse error",
    )
    .await;

    let refusal = create_claim_basic(&claim).unwrap_err();
    assert_eq!(
        (refusal.code, refusal.codespace, refusal.log.as_str()),
        (1101, "proof", format!("{bad}: invalid address").as_str())
    );
    let proof = wire::MsgSubmitProof {
        supplier_operator_address: "pokt1notbech32".into(),
        session_header: Some(f.header.clone()),
        proof: vec![1],
    };
    let refusal = submit_proof_basic(&proof).unwrap_err();
    assert_eq!((refusal.code, refusal.codespace), (7, "sdk"));
    assert!(
        refusal
            .log
            .starts_with("supplier operator address \"pokt1notbech32\", error: decoding bech32 failed: "),
        "{}",
        refusal.log
    );
    assert!(refusal.log.ends_with(": invalid address"), "{}", refusal.log);
}

/// `validateBasicTxMsgs` refuses a tx without messages (sdk 18), and a batch with one bad message whole: the
/// refusal names no message index (no message ran), so a client cannot tell which one it was from Simulate's
/// text alone, only from the module's code at CheckTx.
#[tokio::test]
async fn an_empty_tx_and_a_batch_with_one_bad_message_are_refused_whole() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    // No client here signs a tx without messages: the rule is checked on the body.
    let refusal = crate::sim::chain::validate_basic::before_ante(&crate::chain::tx::TxBody::default()).unwrap_err();
    assert_eq!(
        (refusal.code, refusal.codespace, refusal.log.as_str()),
        (18, "sdk", "must contain at least one message: invalid request")
    );
    let good = claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root());
    let bad = claim_with(&f, Some(f.header.clone()), vec![1; 47]);
    assert_refused(
        &f,
        vec![good.clone(), bad],
        1104,
        "proof",
        "expecting root hash to be 48 bytes, got 47 bytes: invalid root hash",
    )
    .await;
    // The good one alone passes every check.
    let tx = tx_of(&f, vec![good]).await;
    f.client.simulate(tx.tx_bytes.clone()).await.unwrap();
    assert_eq!(f.client.broadcast(tx.tx_bytes).await.unwrap().code, 0);
    f.chain.produce_block();
    assert_eq!(f.client.get_tx(&tx.hash).await.unwrap().unwrap().code, 0);
    assert!(on_chain_claim(&f).await.root_hash.len() == 48);
}
