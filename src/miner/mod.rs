//! The miner (issue 7): consumes the relay log, builds one trie per (supplier, session) and drives every session
//! through claim and proof: the pure [`lifecycle`] engine and its async [`driver`].

pub mod driver;
pub mod lifecycle;
pub mod metrics;
pub mod runtime;
