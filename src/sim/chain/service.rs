//! The simulator's gRPC services on the real pocket/cosmos method paths (§1.3).

use tonic::Status;

use super::{Admission, SimChain, validate};
use crate::protocol::wire::{self, method, tendermint_method};
use crate::sim::grpc::GrpcRouter;

fn not_found(what: String) -> Status {
    Status::not_found(what)
}

/// A bank balance answer of `amount` uPOKT.
fn upokt_balance(amount: u128) -> wire::QueryBalanceResponse {
    wire::QueryBalanceResponse {
        balance: Some(wire::Coin {
            denom: "upokt".into(),
            amount: amount.to_string(),
        }),
    }
}

impl SimChain {
    /// gRPC requests the chain's [`router`]s received for the method `path` so far.
    pub fn grpc_calls(&self, path: &str) -> u64 {
        self.grpc_calls.get(path)
    }

    /// The request counts every [`router`] of this chain adds to.
    pub(crate) fn grpc_call_counts(&self) -> crate::sim::grpc::CallCounts {
        self.grpc_calls.clone()
    }

    /// Has every [`router`] of this chain fail its next `n` requests of the method `path` (e.g.
    /// [`method::PROOF_PARAMS`]) with `UNAVAILABLE`, as a node that cannot serve a query for a moment (0 disarms):
    /// for tests of what a client does when one read fails. Requests of other methods are answered.
    pub fn fail_grpc_next(&self, path: &str, n: u64) {
        self.grpc_faults.fail_next(path, n);
    }

    /// Requests of `path` still to fail ([`SimChain::fail_grpc_next`]).
    pub fn grpc_faults_pending(&self, path: &str) -> u64 {
        self.grpc_faults.pending(path)
    }
}

/// Every query and tx service the relay miner uses, backed by `chain`.
pub fn router(chain: SimChain) -> GrpcRouter {
    let h = chain.clone();
    let router = GrpcRouter::new()
        .counting_into(chain.grpc_call_counts())
        .failing_from(chain.grpc_faults.clone())
        .with_block_height(move || {
            let s = h.state();
            s.height - s.query_lag_blocks
        });
    let c = chain.clone();
    let router = router.unary(method::GET_SESSION, move |r: wire::QueryGetSessionRequest| {
        let c = c.clone();
        async move {
            let s = c.state();
            validate::hydrate_session(&s, &r.application_address, &r.service_id, r.block_height)
                .map(|session| wire::QueryGetSessionResponse { session: Some(session) })
                .map_err(Status::failed_precondition)
        }
    });
    let c = chain.clone();
    let router = router.unary(method::SHARED_PARAMS, move |_: wire::QueryParamsRequest| {
        let c = c.clone();
        async move {
            Ok(wire::QuerySharedParamsResponse {
                params: Some(c.state().shared.clone()),
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(
        method::SHARED_PARAMS_AT_HEIGHT,
        move |r: wire::QueryParamsAtHeightRequest| {
            let c = c.clone();
            async move {
                let s = c.state();
                // A lagging node (test knob) knows the entries written up to its height: up to the session
                // starting after it (the latest a change is written is the block before the start it takes).
                let height = match s.query_lag_blocks {
                    0 => r.height,
                    lag => r.height.min(s.height - lag + 1),
                };
                Ok(wire::QuerySharedParamsResponse {
                    params: Some(s.shared_at(height)),
                })
            }
        },
    );
    let c = chain.clone();
    let router = router.unary(method::SESSION_PARAMS, move |_: wire::QueryParamsRequest| {
        let c = c.clone();
        async move {
            let n = c.state().genesis.num_suppliers_per_session;
            Ok(wire::QuerySessionParamsResponse {
                params: Some(wire::SessionParams {
                    num_suppliers_per_session: n,
                }),
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(method::PROOF_PARAMS, move |_: wire::QueryParamsRequest| {
        let c = c.clone();
        async move {
            Ok(wire::QueryProofParamsResponse {
                params: Some(c.state().proof.clone()),
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(method::TOKENOMICS_PARAMS, move |_: wire::QueryParamsRequest| {
        let c = c.clone();
        async move {
            // The live params, as settlement reads them at its block (poktroll has no tokenomics ParamsAtHeight).
            let inflation = c.state().tokenomics.global_inflation_per_claim.as_f64();
            Ok(wire::QueryTokenomicsParamsResponse {
                params: Some(wire::TokenomicsParams {
                    global_inflation_per_claim: inflation,
                }),
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(method::APPLICATION, move |r: wire::QueryGetApplicationRequest| {
        let c = c.clone();
        async move {
            let app = c.state().applications.get(&r.address).cloned();
            app.map(|a| wire::QueryGetApplicationResponse { application: Some(a) })
                .ok_or_else(|| not_found(format!("application {}", r.address)))
        }
    });
    let c = chain.clone();
    let router = router.unary(method::GATEWAY, move |r: wire::QueryGetGatewayRequest| {
        let c = c.clone();
        async move {
            let gw = c.state().gateways.get(&r.address).cloned();
            gw.map(|g| wire::QueryGetGatewayResponse { gateway: Some(g) })
                .ok_or_else(|| not_found(format!("gateway {}", r.address)))
        }
    });
    let c = chain.clone();
    let router = router.unary(method::SUPPLIER, move |r: wire::QueryGetSupplierRequest| {
        let c = c.clone();
        async move {
            let sup = c.state().suppliers.get(&r.operator_address).cloned();
            sup.map(|s| wire::QueryGetSupplierResponse { supplier: Some(s) })
                .ok_or_else(|| not_found(format!("supplier {}", r.operator_address)))
        }
    });
    let c = chain.clone();
    let router = router.unary(method::SERVICE, move |r: wire::QueryGetServiceRequest| {
        let c = c.clone();
        async move {
            let svc = c.state().services.get(&r.id).cloned();
            svc.map(|s| wire::QueryGetServiceResponse { service: Some(s) })
                .ok_or_else(|| not_found(format!("service {}", r.id)))
        }
    });
    let c = chain.clone();
    // The live target without a height, else the one effective at `height` (its history, §4).
    let difficulty = move |service_id: String, height: Option<i64>| {
        let s = c.state();
        let target = match height {
            None => s.targets.get(&service_id).cloned(),
            // A lagging node (test knob) knows the entries written up to its height: up to the session starting
            // after it (the chain writes a start's entry at a settlement before it, in the block before at latest).
            Some(h) => s.target_at(&service_id, h.min(s.height - s.query_lag_blocks + 1)),
        }
        .ok_or_else(|| not_found(format!("service {service_id}")))?;
        Ok(wire::QueryGetRelayMiningDifficultyResponse {
            relay_mining_difficulty: Some(wire::RelayMiningDifficulty {
                service_id,
                block_height: height.unwrap_or(0),
                num_relays_ema: 0,
                target_hash: target,
            }),
        })
    };
    let d = difficulty.clone();
    let router = router.unary(
        method::RELAY_MINING_DIFFICULTY,
        move |r: wire::QueryGetRelayMiningDifficultyRequest| {
            let result = d(r.service_id, None);
            async move { result }
        },
    );
    let router = router.unary(
        method::RELAY_MINING_DIFFICULTY_AT_HEIGHT,
        move |r: wire::QueryGetRelayMiningDifficultyAtHeightRequest| {
            let result = difficulty(r.service_id, Some(r.block_height));
            async move { result }
        },
    );
    let c = chain.clone();
    let router = router.unary(
        method::COMPUTE_UNITS_PER_RELAY_AT_HEIGHT,
        move |r: wire::QueryGetComputeUnitsPerRelayAtHeightRequest| {
            let c = c.clone();
            async move {
                let s = c.state();
                let known = s.height - s.query_lag_blocks + 1;
                let cu = s.compute_units_at(&r.service_id, r.block_height.min(known));
                cu.map(
                    |compute_units_per_relay| wire::QueryGetComputeUnitsPerRelayAtHeightResponse {
                        compute_units_per_relay,
                    },
                )
                .ok_or_else(|| not_found(format!("service {}", r.service_id)))
            }
        },
    );
    let c = chain.clone();
    // As of the height the request pinned, else the node's (behind the chain by `query_lag_blocks`).
    let router = router.unary_at_height(method::CLAIM, move |r: wire::QueryGetClaimRequest, at: Option<i64>| {
        let c = c.clone();
        async move {
            let claim = c
                .state()
                .claim_at(&(r.session_id.clone(), r.supplier_operator_address.clone()), at);
            claim
                .map(|claim| wire::QueryGetClaimResponse { claim: Some(claim) })
                .ok_or_else(|| not_found(format!("claim of {} in {}", r.supplier_operator_address, r.session_id)))
        }
    });
    let c = chain.clone();
    let router = router.unary(method::ACCOUNT, move |r: wire::QueryAccountRequest| {
        let c = c.clone();
        async move {
            let account = c
                .state()
                .accounts
                .get(&r.address)
                .cloned()
                .ok_or_else(|| not_found(format!("account {}", r.address)))?;
            let base = wire::BaseAccount {
                address: r.address.clone(),
                pub_key: account.pubkey.map(|k| {
                    wire::Any::pack(
                        crate::chain::tx::SECP256K1_PUBKEY_TYPE_URL,
                        &crate::chain::tx::Secp256k1PubKey { key: k.to_vec() },
                    )
                }),
                account_number: account.number,
                sequence: account.sequence,
            };
            Ok(wire::QueryAccountResponse {
                account: Some(wire::Any::pack(wire::BASE_ACCOUNT_TYPE_URL, &base)),
            })
        }
    });
    let c = chain.clone();
    // All the account holds, locked coins included.
    let router = router.unary(method::BALANCE, move |r: wire::QueryBalanceRequest| {
        let c = c.clone();
        async move {
            let balance = c
                .state()
                .accounts
                .get(&r.address)
                .map_or(0, |a| a.balance.saturating_add(a.locked));
            Ok(upokt_balance(balance))
        }
    });
    let c = chain.clone();
    // What it can spend (the test knob `locked` left out), or `Unimplemented` as an older node answers.
    let router = router.unary(
        method::SPENDABLE_BALANCE_BY_DENOM,
        move |r: wire::QueryBalanceRequest| {
            let c = c.clone();
            async move {
                let s = c.state();
                if s.spendable_balance_unimplemented {
                    return Err(Status::unimplemented(
                        "unknown method SpendableBalanceByDenom for service cosmos.bank.v1beta1.Query",
                    ));
                }
                Ok(upokt_balance(s.accounts.get(&r.address).map_or(0, |a| a.balance)))
            }
        },
    );
    let c = chain.clone();
    let router = router.unary(method::SIMULATE, move |r: wire::SimulateRequest| {
        let c = c.clone();
        async move {
            let mut s = c.state();
            // Every failed simulation is answered as cosmos-sdk v0.53.7's tx service answers it: gRPC `Unknown`
            // with "<error under %v> with gas used: '<n>'" (x/auth/tx/service.go `txServer.Simulate`; module
            // `validate_basic` `simulate_failure`), whether the tx was refused before the ante handler (gas 0), by
            // it, or by one of its messages (baseapp `runMsgs`: "failed to execute message; message index: N: ...").
            if s.refuse_simulations > 0 {
                s.refuse_simulations -= 1;
                let refusal = validate::MsgError {
                    code: tonic::Code::FailedPrecondition,
                    text: format!("refused by the test knob at height {}: outside the window", s.height),
                };
                let gas = super::ante::ante_gas(r.tx_bytes.len(), 0) + super::ante::MESSAGE_GAS;
                return Err(Status::unknown(validate::simulate_message_failure(0, &refusal, gas)));
            }
            let (_, body, fee) = validate::check_tx(&s, &r.tx_bytes, validate::Mode::Simulate)
                .map_err(|refusal| Status::unknown(refusal.simulate_status_message()))?;
            // A node runs the messages too (at its last committed height); the gas metered up to the refused one.
            validate::simulate_messages(&mut s, &body).map_err(|(index, error)| {
                let gas = super::ante::ante_gas(r.tx_bytes.len(), fee) + super::ante::MESSAGE_GAS * (index as u64 + 1);
                Status::unknown(validate::simulate_message_failure(index, &error, gas))
            })?;
            let gas = validate::gas_used(r.tx_bytes.len(), body.messages.len(), fee);
            s.last_simulated_fee = Some(fee);
            Ok(wire::SimulateResponse {
                // Simulate meters on an infinite gas meter (x/auth/ante `SetGasMeter` in simulate mode), whose
                // `Limit()` is `math.MaxUint64`: that is the gas wanted a node reports.
                gas_info: Some(wire::GasInfo {
                    gas_wanted: u64::MAX,
                    gas_used: gas,
                }),
                result: Some(wire::AbciResult::default()),
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(method::NODE_CONFIG, move |_: wire::NodeConfigRequest| {
        let c = c.clone();
        async move {
            let s = c.state();
            if s.node_config_unavailable {
                return Err(Status::unimplemented(format!("unknown method {}", method::NODE_CONFIG)));
            }
            Ok(wire::NodeConfigResponse {
                minimum_gas_price: super::fees::dec_coins_string(&s.minimum_gas_prices),
                ..Default::default()
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(method::BROADCAST_TX, move |r: wire::BroadcastTxRequest| {
        let c = c.clone();
        async move {
            let txhash = crate::chain::tx::tx_hash(&r.tx_bytes);
            // cosmos-sdk v0.53 `client.TxServiceBroadcast` → `Context.BroadcastTxSync`: a CheckTx refusal is a
            // `TxResponse` with its code, codespace and `raw_log` (`NewResponseFormatBroadcastTx`), not a gRPC error;
            // CometBFT's own refusals before CheckTx (RPC errors) become a `TxResponse` with the SDK's code and no
            // `raw_log` (client/broadcast.go `CheckCometError`: 19 `ErrTxInMempoolCache` for "tx already exists in
            // cache", 20 `ErrMempoolIsFull`, 21 `ErrTxTooLarge`).
            let (code, codespace, raw_log) = match c.submit_tx(r.tx_bytes) {
                Admission::Accepted => (0, String::new(), String::new()),
                Admission::Duplicate => (19, "sdk".into(), String::new()),
                Admission::MempoolFull => (20, "sdk".into(), String::new()),
                Admission::TooLarge { .. } => (21, "sdk".into(), String::new()),
                Admission::Rejected { code, codespace, log } => (code, codespace, log),
            };
            let (lose_answer, block_first, fail_answer) = {
                let mut s = c.state();
                let lose = s.lose_broadcast_answers > 0;
                s.lose_broadcast_answers = s.lose_broadcast_answers.saturating_sub(1);
                let fail = s.fail_broadcast_answers > 0;
                s.fail_broadcast_answers = s.fail_broadcast_answers.saturating_sub(1);
                let block = s.blocks_after_broadcasts > 0;
                s.blocks_after_broadcasts = s.blocks_after_broadcasts.saturating_sub(1);
                (lose, block, fail)
            };
            if block_first {
                c.produce_block();
            }
            if lose_answer {
                // The tx went through CheckTx; its answer never reaches the caller, whose timeout ends the call.
                std::future::pending::<()>().await;
            }
            if fail_answer {
                return Err(Status::unknown("broadcast tx: post failed: connection reset by peer"));
            }
            Ok(wire::BroadcastTxResponse {
                tx_response: Some(wire::TxResponse {
                    txhash,
                    code,
                    codespace,
                    raw_log,
                    ..Default::default()
                }),
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(method::GET_TX, move |r: wire::GetTxRequest| {
        let c = c.clone();
        async move {
            let (result, index_disabled) = {
                let s = c.state();
                (s.txs.get(&r.hash.to_uppercase()).cloned(), s.tx_index_disabled)
            };
            if index_disabled {
                // What the SDK's tx service passes on from CometBFT's `/tx` with the indexer off.
                return Err(Status::unknown("transaction indexing is disabled"));
            }
            result
                .map(|t| wire::GetTxResponse {
                    tx_response: Some(wire::TxResponse {
                        height: t.height,
                        txhash: r.hash.to_uppercase(),
                        code: t.code,
                        codespace: t.codespace,
                        raw_log: t.log,
                        ..Default::default()
                    }),
                })
                .ok_or_else(|| not_found(format!("tx {}", r.hash)))
        }
    });
    let c = chain.clone();
    let block = move |height: i64| -> Result<wire::GetBlockResponse, Status> {
        let (h, hash, chain_id) = {
            let s = c.state();
            let h = if height <= 0 { s.height } else { height };
            let hash = *s.block_hashes.get(&h).ok_or_else(|| not_found(format!("block {h}")))?;
            (h, hash, s.genesis.chain_id.clone())
        };
        Ok(wire::GetBlockResponse {
            block_id: Some(wire::BlockId { hash: hash.to_vec() }),
            block: Some(wire::Block {
                header: Some(wire::BlockHeader {
                    chain_id,
                    height: h,
                    time: Some(c.block_time(h)),
                }),
            }),
        })
    };
    let c = chain.clone();
    // As cosmos-sdk's node service answers: the query context's height (the latest committed one) and that
    // block's header time and hashes; no block.
    let router = router.unary(method::NODE_STATUS, move |_: wire::NodeStatusRequest| {
        let c = c.clone();
        async move {
            let s = c.state();
            let height = u64::try_from(s.height).unwrap_or(0);
            let hash_of = |what: &str| {
                crate::protocol::sha256(format!("{what}/{}/{}", s.genesis.chain_id, s.height).as_bytes()).to_vec()
            };
            Ok(wire::NodeStatusResponse {
                earliest_store_height: 1,
                height,
                timestamp: Some(super::block_time_of(&s, s.height)),
                app_hash: hash_of("app"),
                validator_hash: hash_of("validators"),
            })
        }
    });
    let c = chain.clone();
    let router = router.unary(tendermint_method::GET_NODE_INFO, move |_: wire::GetNodeInfoRequest| {
        let network = c.state().genesis.chain_id.clone();
        async move {
            Ok(wire::GetNodeInfoResponse {
                default_node_info: Some(wire::DefaultNodeInfo {
                    default_node_id: "0000000000000000000000000000000000000000".into(),
                    network,
                    version: "0.38.17".into(),
                    moniker: "relay-miner-sim".into(),
                }),
            })
        }
    });
    let b = block.clone();
    let router = router.unary(
        tendermint_method::GET_LATEST_BLOCK,
        move |_: wire::GetLatestBlockRequest| {
            let result = b(0);
            async move { result }
        },
    );
    router.unary(
        tendermint_method::GET_BLOCK_BY_HEIGHT,
        move |r: wire::GetBlockByHeightRequest| {
            let result = if r.height <= 0 {
                Err(Status::invalid_argument("height must be positive"))
            } else {
                block(r.height)
            };
            async move { result }
        },
    )
}
