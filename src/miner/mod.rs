//! The miner (issue 7): consumes the relay log, builds one trie per (supplier, session) and drives every session
//! through claim and proof. Today: the pure [`lifecycle`] engine.

pub mod lifecycle;
