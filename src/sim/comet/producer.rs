//! An in-memory chain behind [`super::CometBackend`] and a timer that commits its blocks.
//!
//! Blocks are deterministic: block `H` has hash `SHA-256(chain_id ‖ u64_be(H))` (standing in for the CometBFT
//! block-ID hash that seeds session ids and proof paths, §3, §5.2) and time `genesis_time + (H − 1)·interval`,
//! whatever the wall clock does, so tests and benches see the same chain every run.
//!
//! Txs follow CometBFT's two steps: `broadcast_tx` runs the validator's `check_tx` (a rejection returns its
//! code and is not kept, like a failed CheckTx), accepted txs wait in the mempool, and the next block includes
//! them all, each with the code `deliver_tx` gives at that height (a failed tx is still included, with its
//! code, like a failed DeliverTx). The claim/proof rules come from the validator the simulator plugs in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{CometBackend, TxRecord};
use crate::chain::comet::{BlockInfo, BlockTime, BroadcastResult, TxResult};
use crate::protocol::sha256;

/// A tx refused by the validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRejection {
    /// Non-zero ABCI code.
    pub code: u32,
    /// Module codespace (e.g. `proof`).
    pub codespace: String,
    /// Error text.
    pub log: String,
}

/// The chain's tx rules, supplied by the simulator (claim and proof validation live elsewhere).
pub trait TxValidator: Send + Sync + 'static {
    /// CheckTx: decides whether `tx` enters the mempool. Accepts everything by default.
    fn check_tx(&self, _tx: &[u8]) -> Result<(), TxRejection> {
        Ok(())
    }
    /// DeliverTx: the outcome of `tx` included in `block` (its height is H_tx of the windows, §3). Called
    /// without the chain's lock held, so it may read the chain (e.g. the proof seed block hash).
    fn deliver_tx(&self, block: &BlockInfo, tx: &[u8]) -> Result<(), TxRejection>;
}

/// Accepts every tx with code 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl TxValidator for AcceptAll {
    fn deliver_tx(&self, _block: &BlockInfo, _tx: &[u8]) -> Result<(), TxRejection> {
        Ok(())
    }
}

impl<F> TxValidator for F
where
    F: Fn(&BlockInfo, &[u8]) -> Result<(), TxRejection> + Send + Sync + 'static,
{
    fn deliver_tx(&self, block: &BlockInfo, tx: &[u8]) -> Result<(), TxRejection> {
        self(block, tx)
    }
}

/// Parameters of a [`MemoryChain`].
#[derive(Clone, Debug)]
pub struct MemoryChainConfig {
    /// Chain id in headers and `status`.
    pub chain_id: String,
    /// Time of block 1.
    pub genesis_time: BlockTime,
    /// Block time step, and the [`BlockProducer`] period.
    pub block_interval: Duration,
    /// Mempool capacity; further broadcasts get CometBFT's "mempool is full" error.
    pub max_mempool_txs: usize,
    /// Capacity of the new-block broadcast; a subscriber further behind loses its subscription.
    pub event_capacity: usize,
}

impl Default for MemoryChainConfig {
    fn default() -> Self {
        Self {
            chain_id: "pocket-sim".into(),
            genesis_time: BlockTime::new(1_700_000_000, 0),
            block_interval: Duration::from_millis(50),
            max_mempool_txs: 10_000,
            event_capacity: 1024,
        }
    }
}

/// Mutable chain state.
#[derive(Default)]
struct ChainState {
    /// Block `H` at index `H − 1`.
    blocks: Vec<BlockInfo>,
    /// Txs of block `H` at index `H − 1`.
    block_txs: Vec<Vec<Vec<u8>>>,
    /// Accepted, not yet included, in arrival order.
    mempool: Vec<([u8; 32], Vec<u8>)>,
    /// Hashes in `mempool`, for duplicate detection.
    mempool_hashes: HashSet<[u8; 32]>,
    /// Included txs by hash.
    txs: HashMap<[u8; 32], TxRecord>,
}

/// An in-memory chain implementing [`CometBackend`].
pub struct MemoryChain {
    config: MemoryChainConfig,
    validator: Arc<dyn TxValidator>,
    state: Mutex<ChainState>,
    /// Serialises [`Self::produce_block`] (validation runs outside `state`'s lock).
    producing: Mutex<()>,
    events: broadcast::Sender<BlockInfo>,
}

impl std::fmt::Debug for MemoryChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryChain")
            .field("config", &self.config)
            .field("height", &self.height())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data here (every update is one push/insert).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryChain {
    /// A chain with no blocks yet.
    pub fn new(config: MemoryChainConfig, validator: Arc<dyn TxValidator>) -> Arc<Self> {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Arc::new(Self {
            config,
            validator,
            state: Mutex::new(ChainState::default()),
            producing: Mutex::new(()),
            events,
        })
    }

    /// The deterministic block hash: `SHA-256(chain_id ‖ u64_be(height))`.
    pub fn block_hash(chain_id: &str, height: i64) -> [u8; 32] {
        let mut pre = chain_id.as_bytes().to_vec();
        pre.extend_from_slice(&height.to_be_bytes());
        sha256(&pre)
    }

    /// The configuration.
    pub fn config(&self) -> &MemoryChainConfig {
        &self.config
    }

    /// The latest height (0 before the first block).
    pub fn height(&self) -> i64 {
        i64::try_from(lock(&self.state).blocks.len()).unwrap_or(i64::MAX)
    }

    /// Commits the next block with every mempool tx, then publishes it to subscribers.
    pub fn produce_block(&self) -> BlockInfo {
        let _producing = lock(&self.producing);
        let (block, pending) = {
            let mut st = lock(&self.state);
            let height = i64::try_from(st.blocks.len()).unwrap_or(i64::MAX - 1) + 1;
            let steps = u32::try_from(height - 1).unwrap_or(u32::MAX);
            let block = BlockInfo {
                height,
                hash: Self::block_hash(&self.config.chain_id, height),
                time: self
                    .config
                    .genesis_time
                    .plus(self.config.block_interval.saturating_mul(steps)),
                chain_id: self.config.chain_id.clone(),
            };
            // Hashes stay in `mempool_hashes` until committed, so a re-broadcast meanwhile is a duplicate.
            (block, std::mem::take(&mut st.mempool))
        };
        let mut records = Vec::with_capacity(pending.len());
        for (index, (hash, tx)) in pending.into_iter().enumerate() {
            let (code, codespace, log) = match self.validator.deliver_tx(&block, &tx) {
                Ok(()) => (0, String::new(), String::new()),
                Err(r) => (r.code, r.codespace, r.log),
            };
            let result = TxResult {
                hash,
                height: block.height,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                code,
                log,
                codespace,
            };
            records.push(TxRecord { result, tx });
        }
        {
            let mut st = lock(&self.state);
            st.block_txs.push(records.iter().map(|r| r.tx.clone()).collect());
            for r in records {
                st.mempool_hashes.remove(&r.result.hash);
                st.txs.insert(r.result.hash, r);
            }
            st.blocks.push(block.clone());
        }
        // No subscriber is fine.
        let _ = self.events.send(block.clone());
        block
    }

    fn index(height: i64) -> Option<usize> {
        usize::try_from(height.checked_sub(1)?).ok()
    }
}

impl CometBackend for MemoryChain {
    fn chain_id(&self) -> String {
        self.config.chain_id.clone()
    }

    fn latest(&self) -> Option<BlockInfo> {
        lock(&self.state).blocks.last().cloned()
    }

    fn block(&self, height: i64) -> Option<BlockInfo> {
        lock(&self.state).blocks.get(Self::index(height)?).cloned()
    }

    fn block_txs(&self, height: i64) -> Vec<Vec<u8>> {
        Self::index(height)
            .and_then(|i| lock(&self.state).block_txs.get(i).cloned())
            .unwrap_or_default()
    }

    fn broadcast_tx(&self, tx: Vec<u8>) -> Result<BroadcastResult, String> {
        let hash = sha256(&tx);
        {
            let st = lock(&self.state);
            if st.mempool_hashes.contains(&hash) || st.txs.contains_key(&hash) {
                return Err("tx already exists in cache".into());
            }
        }
        if let Err(r) = self.validator.check_tx(&tx) {
            return Ok(BroadcastResult {
                code: r.code,
                log: r.log,
                codespace: r.codespace,
                hash,
            });
        }
        let mut st = lock(&self.state);
        if st.mempool.len() >= self.config.max_mempool_txs {
            return Err(format!(
                "mempool is full: number of txs {} (max: {})",
                st.mempool.len(),
                self.config.max_mempool_txs
            ));
        }
        if !st.mempool_hashes.insert(hash) {
            return Err("tx already exists in cache".into());
        }
        st.mempool.push((hash, tx));
        Ok(BroadcastResult {
            code: 0,
            log: String::new(),
            codespace: String::new(),
            hash,
        })
    }

    fn tx(&self, hash: &[u8; 32]) -> Option<TxRecord> {
        lock(&self.state).txs.get(hash).cloned()
    }

    fn subscribe_blocks(&self) -> broadcast::Receiver<BlockInfo> {
        self.events.subscribe()
    }
}

/// Commits a block of a [`MemoryChain`] every `block_interval` until stopped or dropped.
#[derive(Debug)]
pub struct BlockProducer {
    task: JoinHandle<()>,
}

impl BlockProducer {
    /// Starts producing on the current runtime; the first block comes one interval from now.
    pub fn start(chain: Arc<MemoryChain>) -> Self {
        let period = chain.config.block_interval.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            // After a stall, keep the cadence rather than bursting blocks.
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                chain.produce_block();
            }
        });
        Self { task }
    }

    /// Stops producing (no block is produced after this returns).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for BlockProducer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
