//! What the miner shows operators on /metrics about its leadership, its re-sends and its progress per block, with
//! the Go fleet's metric names: leadership gains, losses and failed campaigns; first sends apart from re-sends;
//! the per-block gauges kept current in a block whose commands failed; sessions of suppliers without a key.

use super::*;

mod failed_block;
mod keyless;
mod leadership;
mod rebroadcasts;

/// The value of the series of `name` that carries every label of `labels` in a metrics rendering (`None`: no
/// such series).
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
