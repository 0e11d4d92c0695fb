//! The simulator chain behind the CometBFT RPC server ([`crate::sim::comet`]): `status`, `block?height=` with the
//! same deterministic block-ID hash the gRPC `GetBlock` serves (it seeds session ids and proof paths, so both
//! must agree), `broadcast_tx_sync` into the simulator's mempool with CheckTx codes, `tx?hash=`, and the
//! new-block broadcast fed by [`SimChain::produce_block`].
//!
//! Lock discipline: every method takes the state lock once, copies what it needs and releases it before calling
//! anything else that locks (a nested lock of the same mutex deadlocks).

use tokio::sync::broadcast;

use super::{Admission, ChainState, SimChain, block_time_of};
use crate::chain::comet::{BlockInfo, BlockTime, BroadcastResult, TxResult};
use crate::sim::comet::{CometBackend, TxRecord};

/// The block at `height` in `s` as CometBFT reports it (caller holds the lock).
pub(super) fn block_info(s: &ChainState, height: i64) -> Option<BlockInfo> {
    let hash = *s.block_hashes.get(&height)?;
    let t = block_time_of(s, height);
    Some(BlockInfo {
        height,
        hash,
        time: BlockTime::new(t.seconds, u32::try_from(t.nanos).unwrap_or(0)),
        chain_id: s.genesis.chain_id.clone(),
    })
}

impl CometBackend for SimChain {
    fn chain_id(&self) -> String {
        self.state().genesis.chain_id.clone()
    }

    fn latest(&self) -> Option<BlockInfo> {
        let s = self.state();
        block_info(&s, s.height)
    }

    fn block(&self, height: i64) -> Option<BlockInfo> {
        block_info(&self.state(), height)
    }

    fn block_txs(&self, height: i64) -> Vec<Vec<u8>> {
        self.state().block_txs.get(&height).cloned().unwrap_or_default()
    }

    fn finalize_block_events(&self, height: i64) -> Vec<crate::chain::comet::AbciEvent> {
        self.state().finalize_events.get(&height).cloned().unwrap_or_default()
    }

    fn lowest_height(&self) -> i64 {
        self.state().lowest_served_height.max(1)
    }

    fn highest_height(&self) -> i64 {
        let s = self.state();
        (s.height - s.comet_lag_blocks.max(0)).max(0)
    }

    fn broadcast_tx(&self, tx: Vec<u8>) -> Result<BroadcastResult, String> {
        let hash = crate::protocol::sha256(&tx);
        match self.submit_tx(tx) {
            Admission::Accepted => Ok(BroadcastResult {
                code: 0,
                log: String::new(),
                codespace: String::new(),
                hash,
            }),
            Admission::Duplicate => Err("tx already exists in cache".into()),
            Admission::MempoolFull => Err(format!(
                "mempool is full: number of txs {0} (max: {0})",
                super::MAX_MEMPOOL_TXS
            )),
            // CometBFT v0.38 `mempool.ErrTxTooLarge`, an RPC error like the two above.
            Admission::TooLarge { max, size } => Err(format!("Tx too large. Max size is {max}, but got {size}")),
            Admission::Rejected { code, codespace, log } => Ok(BroadcastResult {
                code,
                log,
                codespace,
                hash,
            }),
        }
    }

    fn tx(&self, hash: &[u8; 32]) -> Option<TxRecord> {
        let r = self.state().txs.get(&hex::encode_upper(hash)).cloned()?;
        Some(TxRecord {
            result: TxResult {
                hash: *hash,
                height: r.height,
                index: r.index,
                code: r.code,
                log: r.log,
                codespace: r.codespace,
            },
            tx: r.tx,
        })
    }

    fn subscribe_blocks(&self) -> broadcast::Receiver<BlockInfo> {
        SimChain::subscribe_blocks(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::tx::{Ordering, TxPlan, build_signed_tx};
    use crate::protocol::wire;
    use crate::sim::chain::genesis::*;
    use crate::sim::chain::{actor, block_hash};

    fn key_hex(label: &str) -> String {
        hex::encode(crate::protocol::sha256(label.as_bytes()))
    }

    fn chain() -> SimChain {
        let genesis = Genesis {
            chain_id: "pocket-sim".into(),
            block_time_ms: 50,
            shared_params: GenesisSharedParams::default(),
            proof_params: GenesisProofParams::default(),
            num_suppliers_per_session: 15,
            services: vec![GenesisService {
                id: "anvil".into(),
                compute_units_per_relay: 10,
                difficulty_target_hex: None,
            }],
            applications: vec![GenesisApplication {
                key_hex: key_hex("app"),
                stake_upokt: 1_000_000,
                services: vec!["anvil".into()],
                delegate_to: vec![],
            }],
            gateways: vec![],
            suppliers: vec![GenesisSupplier {
                key_hex: key_hex("supplier"),
                stake_upokt: 1_000_000,
                balance_upokt: 1_000_000,
                services: vec![GenesisSupplierService {
                    service_id: "anvil".into(),
                    url: "http://127.0.0.1:1".into(),
                }],
            }],
        };
        SimChain::new(genesis).unwrap()
    }

    fn ordered_tx(chain: &SimChain, sequence: u64, memo: &str) -> Vec<u8> {
        tx_with(
            chain,
            Ordering::Ordered {
                sequence,
                timeout_height: 0,
            },
            memo,
        )
    }

    fn tx_with(chain: &SimChain, ordering: Ordering, memo: &str) -> Vec<u8> {
        let (key, address, _) = actor(&key_hex("supplier")).unwrap();
        let number = chain.state().accounts[&address].number;
        let msg = wire::Any::pack(
            wire::MSG_CREATE_CLAIM_TYPE_URL,
            // Passes `ValidateBasic` (so CheckTx only runs the ante checks) and fails when run: no such session.
            &wire::MsgCreateClaim {
                supplier_operator_address: address.clone(),
                session_header: Some(wire::SessionHeader {
                    application_address: address,
                    service_id: "anvil".into(),
                    session_id: "no-such-session".into(),
                    session_start_block_height: 1,
                    session_end_block_height: 2,
                }),
                root_hash: [[7; 32].as_slice(), &10u64.to_be_bytes(), &1u64.to_be_bytes()].concat(),
            },
        );
        let plan = TxPlan {
            messages: vec![msg],
            memo: memo.into(),
            gas_limit: 100_000,
            fee_amount: 0,
            fee_denom: "upokt".into(),
            ordering,
            chain_id: "pocket-sim".into(),
            account_number: number,
        };
        build_signed_tx(&key, &plan).unwrap().tx_bytes
    }

    #[test]
    fn blocks_match_the_grpc_hash_and_are_published() {
        let c = chain();
        let mut events = CometBackend::subscribe_blocks(&c);
        assert_eq!(c.latest().unwrap().height, 1);
        let h = c.produce_block();
        let event = events.try_recv().unwrap();
        assert_eq!(event.height, h);
        assert_eq!(event.hash, block_hash("pocket-sim", h));
        assert_eq!(Some(event.clone()), CometBackend::block(&c, h));
        let t = c.block_time(h);
        assert_eq!(
            (event.time.seconds, i64::from(event.time.nanos)),
            (t.seconds, i64::from(t.nanos))
        );
        assert_eq!(CometBackend::block(&c, h + 1), None);
        assert_eq!(c.chain_id(), "pocket-sim");
    }

    #[test]
    fn check_tx_codes_sequences_and_inclusion() {
        let c = chain();
        // Undecodable bytes: CheckTx code 2, not kept.
        let bad = c.broadcast_tx(vec![0xff, 0x01]).unwrap();
        assert_eq!((bad.code, bad.codespace.as_str()), (2, "sdk"), "{}", bad.log);
        // Wrong sequence: code 32 with the SDK's text.
        let wrong = c.broadcast_tx(ordered_tx(&c, 3, "a")).unwrap();
        assert_eq!(wrong.code, 32);
        assert_eq!(
            wrong.log,
            "account sequence mismatch, expected 0, got 3: incorrect account sequence"
        );
        // Two ordered txs in one block: the check state expects 0 then 1.
        let first = c.broadcast_tx(ordered_tx(&c, 0, "a")).unwrap();
        assert_eq!(first.code, 0, "{}", first.log);
        let second = c.broadcast_tx(ordered_tx(&c, 1, "b")).unwrap();
        assert_eq!(second.code, 0, "{}", second.log);
        assert_eq!(
            c.broadcast_tx(ordered_tx(&c, 1, "b")),
            Err("tx already exists in cache".into())
        );
        let height = c.produce_block();
        assert_eq!(c.block_txs(height).len(), 2);
        let rec = c.tx(&first.hash).unwrap();
        assert_eq!((rec.result.height, rec.result.index), (height, 0));
        // The claim itself fails when run: included with a failure code, but the sequence is consumed.
        assert_ne!(rec.result.code, 0);
        assert_eq!(c.tx(&second.hash).unwrap().result.index, 1);
        let (_, address, _) = actor(&key_hex("supplier")).unwrap();
        assert_eq!(c.state().accounts[&address].sequence, 2);
        assert_eq!(c.broadcast_tx(ordered_tx(&c, 1, "c")).unwrap().code, 32);
        assert_eq!(c.broadcast_tx(ordered_tx(&c, 2, "c")).unwrap().code, 0);
        assert!(c.tx(&[0; 32]).is_none());
    }

    #[test]
    fn unordered_txs_need_a_timeout_and_no_sequence() {
        use prost::Message as _;
        let c = chain();
        let t = c.block_time(c.height());
        let block_time = crate::chain::tx::Timestamp {
            seconds: t.seconds,
            nanos: t.nanos,
        };
        let ok = c
            .broadcast_tx(tx_with(&c, Ordering::unordered(block_time, 60), "u"))
            .unwrap();
        assert_eq!(ok.code, 0, "{}", ok.log);
        // An ordered tx with sequence 0 is still fine: unordered txs do not use the sequence.
        assert_eq!(c.broadcast_tx(ordered_tx(&c, 0, "o")).unwrap().code, 0);
        // Tamper with an unordered tx: drop its timeout, or give it a sequence (re-signing is not needed to see
        // the ante checks run first).
        let raw =
            crate::chain::tx::TxRaw::decode(tx_with(&c, Ordering::unordered(block_time, 60), "x").as_slice()).unwrap();
        let mut body = crate::chain::tx::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
        body.timeout_timestamp = None;
        let no_timeout = crate::chain::tx::TxRaw {
            body_bytes: body.encode_to_vec(),
            ..raw.clone()
        };
        let r = c.broadcast_tx(no_timeout.encode_to_vec()).unwrap();
        // cosmos-sdk v0.53 `SigVerificationDecorator.verifyUnorderedNonce`: `ErrInvalidRequest` (18).
        assert_eq!(
            (r.code, r.log.as_str()),
            (
                18,
                "unordered transaction must have timeout_timestamp set: invalid request"
            )
        );
        let mut auth = crate::chain::tx::AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap();
        auth.signer_infos[0].sequence = 1;
        let with_sequence = crate::chain::tx::TxRaw {
            auth_info_bytes: auth.encode_to_vec(),
            ..raw
        };
        let r = c.broadcast_tx(with_sequence.encode_to_vec()).unwrap();
        assert!(r.code != 0 && r.log.contains("sequence 0"), "{}", r.log);
    }
}
