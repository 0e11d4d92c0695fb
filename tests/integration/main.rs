//! The one integration-test binary (ripgrep style): one module per feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance_vectors;
mod localnet;
mod relayer;
mod tx_cosmrs_oracle;
