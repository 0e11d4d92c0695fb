//! The one integration-test binary (ripgrep style): one module per feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_id;
mod claim_delay;
mod configs;
mod conformance_vectors;
mod fee_check;
mod full_disk;
mod heights;
mod import_go;
mod localnet;
mod miner_process;
mod raft_chaos;
mod raft_full_disk;
mod raft_partition;
mod raft_throughput;
mod redis_ha;
mod redis_storage;
mod relay_server;
mod relayer;
mod relayer_abandoned;
mod relayer_grpc;
mod relayer_guards;
mod relayer_meter;
mod relayer_meter_redis;
mod relayer_optimistic;
mod relayer_pool;
mod relayer_redis_memory;
mod relayer_redis_replicas;
mod relayer_stream;
mod relayer_validation;
mod relayer_ws;
mod sim;
mod support;
mod tx_cosmrs_oracle;
mod tx_fees;
