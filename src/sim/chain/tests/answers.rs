//! What a node answers for a refused tx, as cosmos-sdk v0.53.7 and poktroll v0.1.35 write it: a failed Simulate
//! is gRPC `Unknown` with "<error> [<frame>] with gas used: '<n>'" (x/auth/tx/service.go `txServer.Simulate`), a
//! CheckTx refusal is a `BroadcastTx` answer with its code, codespace and `raw_log`, CometBFT's own refusals carry
//! no `raw_log` (client/broadcast.go `CheckCometError`), and a claim or proof message failing in a block leaves a
//! result of code 1 in codespace `undefined` with the log "internal" (poktroll's handlers return gRPC status
//! errors, which cosmossdk.io/errors v1 `ABCIInfo` redacts), its fee paid.

use super::*;
use crate::chain::grpc::GrpcError;
use crate::chain::query::ChainError;

/// The status message of a failed Simulate; panics unless its code is `Unknown`.
async fn simulate_refusal(f: &Fixture, tx_bytes: Vec<u8>) -> String {
    match f.client.simulate(tx_bytes).await {
        Err(ChainError::Grpc(GrpcError::Status { code, message, .. })) => {
            assert_eq!(code, tonic::Code::Unknown, "{message}");
            message
        }
        other => panic!("a Simulate refusal: {other:?}"),
    }
}

/// (error text, frame, gas used) of a Simulate status message "<text> [<frame>] with gas used: '<n>'".
fn parts(message: &str) -> (&str, &str, u64) {
    let (error, gas) = message
        .rsplit_once(" with gas used: '")
        .unwrap_or_else(|| panic!("the gas suffix: {message}"));
    let gas = gas.strip_suffix('\'').unwrap().parse().unwrap();
    let (text, frame) = error.rsplit_once(" [").unwrap_or_else(|| panic!("a frame: {message}"));
    (text, frame.strip_suffix(']').unwrap(), gas)
}

/// An ante refusal in Simulate: the SDK's text, the frame of the ante file that created it, and the gas metered
/// up to that decorator (the size and signature gas, not 0).
#[tokio::test]
async fn an_ante_refusal_is_simulated_as_unknown_with_its_frame_and_the_gas_used() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    let claim = claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root());
    let account = f.client.account(&f.supplier_address).await.unwrap();
    let tx = ordered_tx_at(&f, claim, 3, 0).await;
    let message = simulate_refusal(&f, tx.tx_bytes.clone()).await;
    let (text, frame, gas) = parts(&message);
    assert_eq!(
        text,
        format!(
            "account sequence mismatch, expected {}, got {}: incorrect account sequence",
            account.sequence,
            account.sequence + 3
        )
    );
    assert!(
        frame.starts_with("cosmos/cosmos-sdk@v0.53.7/x/auth/ante/sigverify.go:"),
        "{frame}"
    );
    assert_eq!(
        gas,
        tx.tx_bytes.len() as u64 * crate::sim::chain::ante::TX_SIZE_GAS_PER_BYTE
            + crate::sim::chain::ante::FEE_DEDUCTION_GAS
            + crate::sim::chain::ante::SIGNATURE_GAS
    );
    // CheckTx: the same text without a frame, in a `TxResponse`.
    let checked = f.client.broadcast(tx.tx_bytes).await.unwrap();
    assert_eq!(
        (checked.code, checked.codespace.as_str(), checked.raw_log.as_str()),
        (32, "sdk", text)
    );
}

/// A message refused when Simulate runs it: `runMsgs`' wrap naming its index around the handler's gRPC status
/// error (poktroll `CreateClaim`: the claim window is `codes.FailedPrecondition`), baseapp's frame, and the gas
/// of the ante handler and the message.
#[tokio::test]
async fn a_refused_message_is_simulated_with_its_index_and_grpc_status() {
    let f = fixture(0.0).await;
    // Before the claim window opens.
    let claim = claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root());
    let tx = signed_tx(&f, claim, &f.supplier).await;
    let message = simulate_refusal(&f, tx.tx_bytes.clone()).await;
    let (text, frame, gas) = parts(&message);
    let w = windows(&f);
    assert_eq!(
        text,
        format!(
            "failed to execute message; message index: 0: rpc error: code = FailedPrecondition desc = claim at \
             height {} outside the claim window [{}, {}]",
            f.chain.height(),
            w.claim_open,
            w.claim_close
        )
    );
    assert!(
        frame.starts_with("cosmos/cosmos-sdk@v0.53.7/baseapp/baseapp.go:"),
        "{frame}"
    );
    assert!(gas > crate::sim::chain::ante::SIGNATURE_GAS, "{message}");
}

/// The same claim included in a block (CheckTx runs no message): the tx fails with code 1, codespace
/// `undefined`, log "internal", and its fee is paid; the simulator's record keeps the reason.
#[tokio::test]
async fn a_message_failing_in_a_block_is_recorded_as_a_redacted_internal_error_and_pays_its_fee() {
    let f = fixture(0.0).await;
    let claim = claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root());
    let balance = f.chain.state().accounts[&f.supplier_address].balance;
    let hash = submit(&f, claim, &f.supplier).await;
    f.chain.produce_block();
    let result = f.client.get_tx(&hash).await.unwrap().unwrap();
    assert_eq!(
        (result.code, result.codespace.as_str(), result.raw_log.as_str()),
        (1, "undefined", "internal")
    );
    assert_eq!(
        f.chain.state().accounts[&f.supplier_address].balance,
        balance - 1,
        "fee paid"
    );
    let rejected = last_record(&f.chain, "claim").rejected.unwrap();
    assert!(rejected.contains("outside the claim window"), "{rejected}");
    // A tx that failed in its block left the node's cache: the same bytes go through CheckTx again, refused for
    // the unordered nonce its ante handler used in that block (not 19, "already in cache").
    let tx = f.chain.state().txs[&hash].tx.clone();
    let again = f.client.broadcast(tx).await.unwrap();
    assert_eq!(
        (again.code, again.raw_log.as_str()),
        (
            18,
            "failed to add unordered nonce: already used timeout: invalid request"
        )
    );
}

/// Broadcasting bytes the node already has is answered 19 with no `raw_log`.
#[tokio::test]
async fn a_tx_the_node_has_is_answered_19_without_raw_log() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    let claim = claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root());
    let tx = signed_tx(&f, claim, &f.supplier).await;
    assert_eq!(f.client.broadcast(tx.tx_bytes.clone()).await.unwrap().code, 0);
    let again = f.client.broadcast(tx.tx_bytes).await.unwrap();
    assert_eq!(
        (again.code, again.codespace.as_str(), again.raw_log.as_str()),
        (19, "sdk", "")
    );
}

/// A refusal before the ante handler and the ante handler's first checks (the timeout height) meter no gas.
#[tokio::test]
async fn a_timeout_height_refusal_is_simulated_with_no_gas_used() {
    let f = fixture(0.0).await;
    let open = windows(&f).claim_open;
    advance_to(&f.chain, open);
    let claim = claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root());
    let stale = ordered_tx(&f, claim, u64::try_from(open).unwrap() - 1).await;
    let message = simulate_refusal(&f, stale.tx_bytes).await;
    let (text, frame, gas) = parts(&message);
    assert_eq!(
        text,
        format!("block height: {open}, timeout height: {}: tx timeout height", open - 1)
    );
    assert!(
        frame.starts_with("cosmos/cosmos-sdk@v0.53.7/x/auth/ante/basic.go:"),
        "{frame}"
    );
    assert_eq!(gas, 0);
}
