//! What one process runs: both roles (`relay-miner run`, the default), or one of them
//! (`relay-miner relayer`, `relay-miner miner`), as the Go fleet deploys them on Redis: relayers scaled
//! horizontally behind a load balancer, and a couple of miners of which the lease holder submits.
//!
//! Split roles need storage that several processes share: Redis. An embedded redb file is one process's, and in
//! raft mode the raft leader is the only miner that submits, so a relayer-only raft member that won an election
//! would leave every session unclaimed; both are refused at start, naming `storage.mode`.

use crate::config::StorageMode;

use super::NodeError;

/// The roles a process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Relayer and miner (`relay-miner run`).
    #[default]
    All,
    /// The relayer alone (`relay-miner relayer`): serves and records relays, never mines.
    Relayer,
    /// The miner alone (`relay-miner miner`): mines what relayers recorded, serves no relays.
    Miner,
}

impl Role {
    /// Whether the process serves relays.
    pub fn relays(self) -> bool {
        matches!(self, Self::All | Self::Relayer)
    }

    /// Whether the process runs a miner.
    pub fn mines(self) -> bool {
        matches!(self, Self::All | Self::Miner)
    }

    /// The subcommand that runs it.
    pub fn command(self) -> &'static str {
        match self {
            Self::All => "run",
            Self::Relayer => "relayer",
            Self::Miner => "miner",
        }
    }

    /// Refuses a split role on storage other processes cannot share (module docs).
    pub fn check(self, mode: StorageMode) -> Result<(), NodeError> {
        if self == Self::All || mode == StorageMode::Redis {
            return Ok(());
        }
        Err(NodeError::Config {
            key: "storage.mode",
            problem: format!(
                "`relay-miner {}` runs one role of a deployment sharing Redis storage; with {} storage run both \
                 roles in one process (`relay-miner run`)",
                self.command(),
                match mode {
                    StorageMode::Embedded => "embedded",
                    StorageMode::Raft => "raft",
                    StorageMode::Redis => "redis",
                }
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_roles_need_redis() {
        for mode in [StorageMode::Embedded, StorageMode::Raft, StorageMode::Redis] {
            assert!(Role::All.check(mode).is_ok());
        }
        for role in [Role::Relayer, Role::Miner] {
            assert!(role.check(StorageMode::Redis).is_ok());
            for mode in [StorageMode::Embedded, StorageMode::Raft] {
                let e = role.check(mode).unwrap_err().to_string();
                assert!(e.contains("storage.mode") && e.contains(role.command()), "{e}");
            }
        }
        assert!(Role::All.relays() && Role::All.mines());
        assert!(Role::Relayer.relays() && !Role::Relayer.mines());
        assert!(!Role::Miner.relays() && Role::Miner.mines());
    }
}
