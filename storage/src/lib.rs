//! Storage contract and backends for relay-miner (see the crate docs of each module).
#![forbid(unsafe_code)]

pub mod error;
pub mod nodes;

pub use error::StorageError;
pub use nodes::{MemoryNodeStore, NodeBatch, NodeStore};
