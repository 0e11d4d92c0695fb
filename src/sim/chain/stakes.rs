//! Reads of the actors' stakes, in uPOKT: what settlement burns (an application's) and slashes (a supplier's),
//! compared before and after a block by the simulator's tests and the miner's.

use super::SimChain;
use crate::protocol::wire;

impl SimChain {
    /// What the supplier operating at `address` has staked (`None`: no such supplier, or no readable stake).
    pub fn supplier_stake(&self, address: &str) -> Option<u128> {
        upokt(self.state().suppliers.get(address)?.stake.as_ref())
    }

    /// What the application at `address` has staked (`None`: no such application, or no readable stake).
    pub fn application_stake(&self, address: &str) -> Option<u128> {
        upokt(self.state().applications.get(address)?.stake.as_ref())
    }
}

/// The amount of a uPOKT coin (the simulator stakes and pays in uPOKT only); `None` when absent or unparsable.
pub(super) fn upokt(stake: Option<&wire::Coin>) -> Option<u128> {
    stake?.amount.parse().ok()
}
