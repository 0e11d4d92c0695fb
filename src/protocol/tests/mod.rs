//! Golden tests of spec rules whose expected values do not come from this crate: poktroll's own Go fixtures, or
//! values computed by independent Python models (hashlib only) shown next to each test or committed beside it.
//! One file per rule; each names the spec section and the Go code it mirrors.

mod golden_payload_hash;
mod golden_proof_limits;
mod golden_relay_fixtures;
mod golden_supplier_selection;
mod golden_wire;
