//! The one integration-test binary (ripgrep style): one module per feature.

mod conformance_vectors;
mod tx_cosmrs_oracle;
