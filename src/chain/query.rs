//! Typed pocket/cosmos queries over gRPC (§1.3) with caches keyed the way the protocol is keyed: params,
//! difficulty, compute units and blocks *at height* (immutable once the height exists: cached for an hour, so
//! a long run keeps the heights it still asks about, not every height it ever saw; shared params of a height
//! beyond the current session are never cached, see [`ChainClient::shared_params_at`]), sessions per (app, service,
//! session end) for 10 minutes, applications and account keys with short TTLs. Not-found answers are cached
//! briefly and never forever; failed reads are never cached (lessons.md).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use super::cache::{Lookup, RefreshCache, TtlCache};
use super::grpc::{GrpcClient, GrpcError};
use crate::protocol::inflation::InflationPerClaim;
use crate::protocol::wire::{self, method, tendermint_method};

pub use claims::ClaimAnswer;

/// Errors of chain queries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// The gRPC call failed.
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    /// The chain has no such entity.
    #[error("{0} not found on chain")]
    NotFound(String),
    /// The chain answered something unusable.
    #[error("unexpected chain response: {0}")]
    BadResponse(String),
    /// The node answering had not reached the height the query is about, so its answer may not be the chain's
    /// (a load-balanced endpoint's lagging backend): asked again later.
    #[error("the node answered {query} at height {height} from height {served}, too far behind to know it")]
    Behind {
        /// What was asked.
        query: &'static str,
        /// The height asked about.
        height: i64,
        /// The height the node answered from (`x-cosmos-block-height`).
        served: i64,
    },
}

impl ChainError {
    /// Whether retrying can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Grpc(e) => e.is_retryable(),
            Self::Behind { .. } => true,
            _ => false,
        }
    }
}

/// A committed block as the miner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// Height.
    pub height: i64,
    /// Block-id hash (32 bytes).
    pub hash: Vec<u8>,
    /// Block time.
    pub time: wire::BlockTime,
}

/// The chain's tip as the node's status query gives it: no block is read ([`ChainClient::tip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTip {
    /// The latest committed height.
    pub height: i64,
    /// That block's header time (unordered tx timeouts anchor on it, lessons.md).
    pub time: wire::BlockTime,
}

/// A bank `Balance` or `SpendableBalanceByDenom` request (the same fields).
fn balance_request(address: &str, denom: &str) -> wire::QueryBalanceRequest {
    wire::QueryBalanceRequest {
        address: address.to_string(),
        denom: denom.to_string(),
    }
}

/// The amount of a bank query's answer for `address` (none, or an empty amount: 0).
fn coin_amount(address: &str, coin: Option<wire::Coin>) -> Result<u128, ChainError> {
    match coin {
        None => Ok(0),
        Some(coin) if coin.amount.is_empty() => Ok(0),
        Some(coin) => coin
            .amount
            .parse()
            .map_err(|e| ChainError::BadResponse(format!("balance of {address}: {:?}: {e}", coin.amount))),
    }
}

/// Cache lifetimes.
/// Values at a height never change; the TTL only lets heights nobody asks about any more leave the cache.
const AT_HEIGHT_TTL: Duration = Duration::from_secs(3600);

/// How many times an at-height query is asked of a node behind the height before giving up for now.
const BEHIND_ATTEMPTS: usize = 3;
const SESSION_TTL: Duration = Duration::from_secs(600);
const ENTITY_TTL: Duration = Duration::from_secs(10);
const NOT_FOUND_TTL: Duration = Duration::from_secs(2);
/// How long a stale application (past its TTL or from before the last block) stays usable while one caller
/// refreshes it or the chain is unreachable.
const APPLICATION_STALE_FOR: Duration = Duration::from_secs(30);
/// How long the tokenomics params are used before they are read again (governance changes them rarely; the relay
/// meter's budget follows within this).
const TOKENOMICS_TTL: Duration = Duration::from_secs(60);
/// How long stale tokenomics params stay usable while one caller refreshes them.
const TOKENOMICS_STALE_FOR: Duration = Duration::from_secs(60);
/// After a failed read, how long the last known value is used before the node is asked again (one read per this
/// while a node is down, not one per relay).
const TOKENOMICS_RETRY: Duration = Duration::from_secs(5);

/// The chain query client shared by relayer and miner.
#[derive(Debug)]
pub struct ChainClient {
    grpc: GrpcClient,
    shared_at: TtlCache<i64, wire::SharedParams>,
    difficulty_at: TtlCache<(String, i64), Vec<u8>>,
    compute_units_at: TtlCache<(String, i64), u64>,
    /// Keyed by (app, service, session end height).
    sessions: TtlCache<(String, String, i64), wire::Session>,
    applications: RefreshCache<String, Option<wire::Application>>,
    pubkeys: TtlCache<String, Option<[u8; 33]>>,
    blocks: TtlCache<i64, BlockInfo>,
    /// The tokenomics `global_inflation_per_claim` (one entry), read by the relay meter on every relay.
    inflation: RefreshCache<(), InflationPerClaim>,
    /// The last `global_inflation_per_claim` read, used for as long as the node cannot answer (see
    /// [`ChainClient::global_inflation_per_claim`]).
    last_inflation: std::sync::Mutex<Option<InflationPerClaim>>,
    /// Highest block height known to exist (0: none yet); bounds what [`ChainClient::shared_params_at`] caches.
    latest_height: AtomicI64,
    /// The highest height [`ChainClient::shared_params_at`] cached, with its params: every other height of its
    /// session has the same params, so they are answered without a query ([`ChainClient::same_session_params`]).
    last_shared: std::sync::Mutex<Option<(i64, wire::SharedParams)>>,
    /// The chain id txs are signed for, once [`ChainClient::expect_chain_id`] set it: blocks of any other chain
    /// are refused from then on.
    expected_chain_id: std::sync::OnceLock<String>,
    /// The tip height at which the node's chain id was last found to be the expected one ([`ChainClient::tip`]);
    /// 0: never.
    chain_checked_at: AtomicI64,
    /// The last tips [`ChainClient::tip`] gave: the chain's recent pace ([`ChainClient::pace_reference`]).
    pace: super::pace::TipPace,
    /// When the node last answered `SpendableBalanceByDenom` with `Unimplemented`: [`ChainClient::spendable_balance`]
    /// asks `Balance` until [`SPENDABLE_RETRY`] after it (warned once per such answer).
    spendable_unimplemented: std::sync::Mutex<Option<Instant>>,
}

/// How long [`ChainClient::spendable_balance`] asks `Balance` after the node answered the spendable balance with
/// `Unimplemented` before asking it again.
pub const SPENDABLE_RETRY: Duration = Duration::from_secs(600);

/// gRPC codes that say the node is down, slow or busy (the query itself may be served): not a reason to ask
/// another query instead.
fn transient_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
            | tonic::Code::Unknown
            | tonic::Code::Internal
    )
}

impl ChainClient {
    /// A client of the gRPC endpoint `url`, every call bounded by `timeout` (plaintext for `http://`, TLS for
    /// `https://`).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ChainError> {
        Self::with_tls(url, timeout, &super::grpc::GrpcTls::plaintext_or_https())
    }

    /// A client of the gRPC endpoint `url` reached as `tls` says (`pocket_node.grpc_insecure`, `tls_ca_file`).
    pub fn with_tls(url: &str, timeout: Duration, tls: &super::grpc::GrpcTls) -> Result<Self, ChainError> {
        Ok(Self {
            grpc: GrpcClient::with_tls(url, timeout, tls)?,
            shared_at: TtlCache::new(4096),
            difficulty_at: TtlCache::new(16_384),
            compute_units_at: TtlCache::new(16_384),
            sessions: TtlCache::new(65_536),
            applications: RefreshCache::new(65_536, APPLICATION_STALE_FOR),
            pubkeys: TtlCache::new(65_536),
            blocks: TtlCache::new(4096),
            inflation: RefreshCache::new(1, TOKENOMICS_STALE_FOR),
            last_inflation: std::sync::Mutex::new(None),
            latest_height: AtomicI64::new(0),
            last_shared: std::sync::Mutex::new(None),
            expected_chain_id: std::sync::OnceLock::new(),
            chain_checked_at: AtomicI64::new(0),
            pace: super::pace::TipPace::default(),
            spendable_unimplemented: std::sync::Mutex::new(None),
        })
    }

    /// Entries each cache holds, by cache name (expired ones not yet swept included): the
    /// `ha_chain_cache_entries` gauge ([`super::gauges`]).
    pub fn cache_entries(&self) -> [(&'static str, usize); 7] {
        [
            ("shared_params", self.shared_at.len()),
            ("difficulty", self.difficulty_at.len()),
            ("compute_units", self.compute_units_at.len()),
            ("sessions", self.sessions.len()),
            ("applications", self.applications.len()),
            ("account_keys", self.pubkeys.len()),
            ("blocks", self.blocks.len()),
        ]
    }

    /// The raw gRPC client (for tx calls).
    pub fn grpc(&self) -> &GrpcClient {
        &self.grpc
    }

    /// Records that block `height` exists (the block watch calls it for each new block; [`ChainClient::block`]
    /// and [`ChainClient::latest_block`] do it themselves). Heights only go up.
    pub fn observe_height(&self, height: i64) {
        self.latest_height.fetch_max(height, Ordering::Relaxed);
    }

    /// The highest block height known to exist (0 before any).
    pub fn latest_height(&self) -> i64 {
        self.latest_height.load(Ordering::Relaxed)
    }

    /// Current proof params (not cached: read once per claim).
    pub async fn proof_params(&self) -> Result<wire::ProofParams, ChainError> {
        let response: wire::QueryProofParamsResponse = self
            .grpc
            .unary(method::PROOF_PARAMS, wire::QueryParamsRequest {})
            .await?;
        response
            .params
            .ok_or_else(|| ChainError::BadResponse("proof Params without params".into()))
    }

    /// The current tokenomics `global_inflation_per_claim` as settlement uses it ([`InflationPerClaim`]): what the
    /// relay meter's budget must leave for the inflation the chain counts against the application's stake.
    ///
    /// Fresh for a minute, then one caller reads it again while the others keep the stale value. When that read
    /// fails, the last value read is used, for as long as the node cannot answer (asked again every
    /// `TOKENOMICS_RETRY`, 5 s): only governance changes it, and refusing every relay of a running session because a
    /// node is restarting would lose paid work the caches can still serve. Only when nothing was ever read is a
    /// failed read an error (the relay is refused as when the shared params cannot be read: the meter never
    /// guesses a budget). A value the chain could not settle with (NaN, infinite) is a bad response.
    pub async fn global_inflation_per_claim(&self) -> Result<InflationPerClaim, ChainError> {
        let (stale, _guard) = match self.inflation.lookup(&()) {
            Lookup::Fresh(i) | Lookup::Stale(i) => return Ok(i),
            Lookup::Refresh(i, guard) => (Some(i), Some(guard)),
            Lookup::Miss => (None, None),
        };
        let read = async {
            let response: wire::QueryTokenomicsParamsResponse = self
                .grpc
                .unary(method::TOKENOMICS_PARAMS, wire::QueryParamsRequest {})
                .await?;
            let params = response
                .params
                .ok_or_else(|| ChainError::BadResponse("tokenomics Params without params".into()))?;
            InflationPerClaim::from_param(params.global_inflation_per_claim)
                .map_err(|e| ChainError::BadResponse(e.to_string()))
        };
        let last = || *self.last_inflation.lock().unwrap_or_else(|p| p.into_inner());
        match (read.await, stale.or_else(last)) {
            (Ok(inflation), _) => {
                self.inflation.insert((), inflation, TOKENOMICS_TTL);
                *self.last_inflation.lock().unwrap_or_else(|p| p.into_inner()) = Some(inflation);
                Ok(inflation)
            }
            (Err(e), Some(known)) => {
                tracing::warn!(error = %e, "tokenomics params read failed; using the last value read");
                self.inflation.insert((), known, TOKENOMICS_RETRY);
                Ok(known)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// The session of (app, service) at `height` (§2.6 step 3).
    ///
    /// Cached per session, not per height: every height of a session has the same session, and the relayer asks
    /// at the current height, so a per-height key would hold one copy (with its supplier list) per block and
    /// application until the cache filled up. The session's last height comes from the shared params at `height`
    /// (cached), never from a request's header, so a forged header cannot place a session under another key.
    pub async fn session(&self, app: &str, service: &str, height: i64) -> Result<wire::Session, ChainError> {
        let session_end = if height > 0 {
            let params = self.shared_params_for_relays(height).await?;
            crate::protocol::session::SessionGrid::new(&params)
                .map_err(|e| ChainError::BadResponse(format!("shared params at {height}: {e}")))?
                .session_end(height)
        } else {
            height
        };
        let key = (app.to_string(), service.to_string(), session_end);
        if let Some(s) = self.sessions.get(&key) {
            return Ok(s);
        }
        let request = wire::QueryGetSessionRequest {
            application_address: app.to_string(),
            service_id: service.to_string(),
            block_height: height,
        };
        let response: wire::QueryGetSessionResponse = match self.grpc.unary(method::GET_SESSION, request).await {
            Err(e) if e.is_not_found() => return Err(ChainError::NotFound(format!("session of {app}/{service}"))),
            other => other?,
        };
        let session = response
            .session
            .ok_or_else(|| ChainError::BadResponse("GetSession without session".into()))?;
        if height > 0 {
            self.sessions.insert(key, session.clone(), Some(SESSION_TTL));
        }
        Ok(session)
    }

    /// The application (current state), `None` when not staked.
    ///
    /// After its TTL or a new block ([`ChainClient::invalidate_applications`]) the cached value is stale: one
    /// caller reads it again while the others keep the stale value (for at most 30 s), and
    /// if that read fails the stale value is used and the next caller retries.
    pub async fn application(&self, address: &str) -> Result<Option<wire::Application>, ChainError> {
        let key = address.to_string();
        let (stale, _guard) = match self.applications.lookup(&key) {
            Lookup::Fresh(a) | Lookup::Stale(a) => return Ok(a),
            Lookup::Refresh(a, guard) => (Some(a), Some(guard)),
            Lookup::Miss => (None, None),
        };
        let request = wire::QueryGetApplicationRequest {
            address: address.to_string(),
        };
        let result: Result<wire::QueryGetApplicationResponse, _> = self.grpc.unary(method::APPLICATION, request).await;
        let app = match result {
            Ok(r) => r.application,
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                return match stale {
                    Some(a) => {
                        tracing::warn!(error = %e, address, "application refresh failed; using the cached value");
                        Ok(a)
                    }
                    None => Err(e.into()),
                };
            }
        };
        let ttl = if app.is_some() { ENTITY_TTL } else { NOT_FOUND_TTL };
        self.applications.insert(key, app.clone(), ttl);
        Ok(app)
    }

    /// The gateway (current state), `None` when not staked. Not cached: gateways are read rarely.
    pub async fn gateway(&self, address: &str) -> Result<Option<wire::Gateway>, ChainError> {
        let request = wire::QueryGetGatewayRequest {
            address: address.to_string(),
            ..Default::default()
        };
        match self
            .grpc
            .unary::<_, wire::QueryGetGatewayResponse>(method::GATEWAY, request)
            .await
        {
            Ok(r) => Ok(r.gateway),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The supplier (current state, with its services), `None` when not staked. Not cached.
    pub async fn supplier(&self, operator_address: &str) -> Result<Option<wire::Supplier>, ChainError> {
        let request = wire::QueryGetSupplierRequest {
            operator_address: operator_address.to_string(),
            ..Default::default()
        };
        match self
            .grpc
            .unary::<_, wire::QueryGetSupplierResponse>(method::SUPPLIER, request)
            .await
        {
            Ok(r) => Ok(r.supplier),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The service (current state), `None` when unknown. Not cached; the per-height compute units and
    /// difficulty the hot path needs have their own at-height caches.
    pub async fn service(&self, id: &str) -> Result<Option<wire::Service>, ChainError> {
        let request = wire::QueryGetServiceRequest {
            id: id.to_string(),
            ..Default::default()
        };
        match self
            .grpc
            .unary::<_, wire::QueryGetServiceResponse>(method::SERVICE, request)
            .await
        {
            Ok(r) => Ok(r.service),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks cached applications stale (new block: delegations may have changed); each is read again by the
    /// next caller that needs it while concurrent callers keep the previous value.
    pub fn invalidate_applications(&self) {
        self.applications.mark_stale();
    }

    /// The account's 33-byte public key, `None` when the account never signed a tx (or does not exist).
    pub async fn account_pubkey(&self, address: &str) -> Result<Option<[u8; 33]>, ChainError> {
        if let Some(k) = self.pubkeys.get(&address.to_string()) {
            return Ok(k);
        }
        let request = wire::QueryAccountRequest {
            address: address.to_string(),
        };
        let result: Result<wire::QueryAccountResponse, _> = self.grpc.unary(method::ACCOUNT, request).await;
        let key = match result {
            Ok(r) => {
                let base = base_account(r)?;
                match base.pub_key {
                    None => None,
                    Some(any) => {
                        let pk = <crate::chain::tx::Secp256k1PubKey as prost::Message>::decode(any.value.as_slice())
                            .map_err(|e| ChainError::BadResponse(format!("PubKey: {e}")))?;
                        Some(
                            pk.key
                                .try_into()
                                .map_err(|_| ChainError::BadResponse("pubkey not 33 bytes".into()))?,
                        )
                    }
                }
            }
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        // A key never changes once set; absence may end at the account's first tx.
        let ttl = if key.is_some() { None } else { Some(NOT_FOUND_TTL) };
        self.pubkeys.insert(address.to_string(), key, ttl);
        Ok(key)
    }

    /// The balance of `address` in `denom` (bank `Balance`: all it holds, coins a vesting schedule still locks
    /// included; 0 when it holds none). Not cached.
    pub async fn balance(&self, address: &str, denom: &str) -> Result<u128, ChainError> {
        let response: wire::QueryBalanceResponse = self
            .grpc
            .unary(method::BALANCE, balance_request(address, denom))
            .await?;
        coin_amount(address, response.balance)
    }

    /// What `address` can spend of `denom` (bank `SpendableBalanceByDenom`: locked vesting coins left out, as the
    /// ante handler deducts fees and x/proof checks the proof submission fee; 0 when it holds none). Not cached.
    ///
    /// A node that does not serve it (gRPC `Unimplemented`) is asked [`ChainClient::balance`], the total, instead,
    /// with a WARN, and asked again [`SPENDABLE_RETRY`] later: an `Unimplemented` can also be a proxy's 404 during a
    /// node restart (tonic maps HTTP 404 to it), which must not turn the check off for the process's life. Any
    /// other answer refusing the query itself (a gateway allowing only some methods: `PermissionDenied`,
    /// `NotFound`, ...) is answered from `Balance` for this call. The funds checks then miss locked coins, as they
    /// did before. A node that is down or slow (transport errors, `Unavailable`, deadlines) is an error, as for any
    /// query.
    pub async fn spendable_balance(&self, address: &str, denom: &str) -> Result<u128, ChainError> {
        let skip = {
            let since = self.spendable_unimplemented.lock().unwrap_or_else(|p| p.into_inner());
            since.is_some_and(|at| at.elapsed() < SPENDABLE_RETRY)
        };
        if !skip {
            let answer: Result<wire::QueryBalanceResponse, GrpcError> = self
                .grpc
                .unary(method::SPENDABLE_BALANCE_BY_DENOM, balance_request(address, denom))
                .await;
            match answer {
                Ok(response) => {
                    *self.spendable_unimplemented.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    return coin_amount(address, response.balance);
                }
                Err(GrpcError::Status { code, message, .. }) if !transient_code(code) => {
                    if code == tonic::Code::Unimplemented {
                        *self.spendable_unimplemented.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    }
                    tracing::warn!(
                        code = ?code,
                        error = message,
                        retry_after_s = SPENDABLE_RETRY.as_secs(),
                        "the node does not serve the spendable balance (bank SpendableBalanceByDenom): the funds \
                         checks read the total balance instead, which counts coins a vesting schedule still locks"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.balance(address, denom).await
    }

    /// Account number and sequence (for ordered txs and SignDoc).
    pub async fn account(&self, address: &str) -> Result<wire::BaseAccount, ChainError> {
        let request = wire::QueryAccountRequest {
            address: address.to_string(),
        };
        let response: wire::QueryAccountResponse = match self.grpc.unary(method::ACCOUNT, request).await {
            Err(e) if e.is_not_found() => return Err(ChainError::NotFound(format!("account {address}"))),
            other => other?,
        };
        base_account(response)
    }

    /// The relay mining difficulty target of `service` at `height` (session start, §4).
    pub async fn difficulty_target_at(&self, service: &str, height: i64) -> Result<Vec<u8>, ChainError> {
        let key = (service.to_string(), height);
        if let Some(t) = self.difficulty_at.get(&key) {
            return Ok(t);
        }
        let request = wire::QueryGetRelayMiningDifficultyAtHeightRequest {
            service_id: service.to_string(),
            block_height: height,
        };
        let response: wire::QueryGetRelayMiningDifficultyResponse = self
            .at_height("difficulty", method::RELAY_MINING_DIFFICULTY_AT_HEIGHT, request, height)
            .await?;
        let target = response
            .relay_mining_difficulty
            .map(|d| d.target_hash)
            .filter(|t| t.len() == 32)
            .ok_or_else(|| ChainError::BadResponse(format!("difficulty of {service} without a 32-byte target")))?;
        if height > 0 {
            self.difficulty_at.insert(key, target.clone(), Some(AT_HEIGHT_TTL));
        }
        Ok(target)
    }

    /// An at-height history query (`…AtHeight`) answered by a node that knew `height`'s entry: the chain writes
    /// the entry a session start takes (a difficulty retarget at settlement) in the end block just before it,
    /// and a node that has not committed that block answers the entry before, which is cached for the whole
    /// session and would mine relays with the wrong target (an invalid proof, a slash) and value the claim
    /// wrongly for the proof requirement. So the answer must come from a node at `height − 1` or later
    /// (`x-cosmos-block-height`); a load balancer may send a repeat elsewhere, so a node behind is asked up to
    /// [`BEHIND_ATTEMPTS`] times before [`ChainError::Behind`] (retryable). An answer without the header (a proxy
    /// that strips it) is taken as before.
    async fn at_height<Req, Resp>(
        &self,
        query: &'static str,
        path: &'static str,
        request: Req,
        height: i64,
    ) -> Result<Resp, ChainError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut served = i64::MIN;
        for _ in 0..BEHIND_ATTEMPTS {
            let (response, at) = self.grpc.unary_at(path, request.clone()).await?;
            match at {
                Some(at) if at < height - 1 => served = at,
                _ => return Ok(response),
            }
        }
        tracing::debug!(
            query,
            height,
            served,
            "the node answering is behind the height asked about"
        );
        Err(ChainError::Behind { query, height, served })
    }

    /// Compute units per relay of `service` at `height` (session start, §5).
    pub async fn compute_units_at(&self, service: &str, height: i64) -> Result<u64, ChainError> {
        let key = (service.to_string(), height);
        if let Some(cu) = self.compute_units_at.get(&key) {
            return Ok(cu);
        }
        let request = wire::QueryGetComputeUnitsPerRelayAtHeightRequest {
            service_id: service.to_string(),
            block_height: height,
        };
        let response: wire::QueryGetComputeUnitsPerRelayAtHeightResponse = self
            .at_height(
                "compute units per relay",
                method::COMPUTE_UNITS_PER_RELAY_AT_HEIGHT,
                request,
                height,
            )
            .await?;
        if response.compute_units_per_relay == 0 {
            return Err(ChainError::BadResponse(format!(
                "service {service} has 0 compute units at {height}"
            )));
        }
        if height > 0 {
            self.compute_units_at
                .insert(key, response.compute_units_per_relay, Some(AT_HEIGHT_TTL));
        }
        Ok(response.compute_units_per_relay)
    }

    /// The chain id of the node's latest block header.
    pub async fn node_chain_id(&self) -> Result<String, ChainError> {
        super::chain_id::node_chain_id(&self.grpc).await
    }

    /// Compares `configured` (`pocket_node.chain_id`) with the node's chain id ([`super::chain_id`]), and makes
    /// every later block read refuse a block of another chain, even when the node cannot be asked now
    /// (`Unchecked`): the miner reads a block before each tx, so none is signed for a chain it is not sent to.
    /// The first expectation set stays.
    pub async fn expect_chain_id(&self, configured: &str) -> Result<(), super::chain_id::ChainIdError> {
        let _ = self.expected_chain_id.set(configured.to_string());
        super::chain_id::check(&self.grpc, configured).await
    }

    /// Checks `transaction.claim_delay_blocks` (`delay`) against the claim window of the node's current shared
    /// params ([`super::claim_delay`]).
    pub async fn check_claim_delay(&self, delay: u64, buffer: u64) -> Result<(), super::claim_delay::ClaimDelayError> {
        super::claim_delay::check_node(&self.grpc, delay, buffer).await
    }

    /// The chain's tip (latest committed height and its block time) from the node's status query
    /// (`cosmos.base.node.v1beta1.Service/Status`): a few dozen bytes, where [`ChainClient::latest_block`]
    /// returns the whole block twice (MBs once proofs are in it). Callers that poll the height use this; a
    /// block is read only where its contents are needed (the hash of a seed block: [`ChainClient::block`]).
    ///
    /// The status carries no chain id. Once one is expected ([`ChainClient::expect_chain_id`]) it is checked
    /// against the node's `GetNodeInfo` (its `network`, again without a block) whenever the tip height differs
    /// from the one last checked: a node swapped behind its URL (another chain has other heights) is refused
    /// from its first tip on, as a block of another chain is, and polling an unchanged height costs one call.
    pub async fn tip(&self) -> Result<ChainTip, ChainError> {
        let response: wire::NodeStatusResponse =
            self.grpc.unary(method::NODE_STATUS, wire::NodeStatusRequest {}).await?;
        let tip = tip_of(&response)?;
        if let Some(expected) = self.expected_chain_id.get()
            && self.chain_checked_at.load(Ordering::Relaxed) != tip.height
        {
            let network = self.node_network().await?;
            if network != *expected {
                return Err(ChainError::BadResponse(format!(
                    "the node at height {} serves chain `{network}`, not the configured `{expected}` \
                     (pocket_node.chain_id)",
                    tip.height
                )));
            }
            self.chain_checked_at.store(tip.height, Ordering::Relaxed);
        }
        self.observe_height(tip.height);
        self.pace.observe(tip.height, tip.time);
        Ok(tip)
    }

    /// A tip seen before `height` (height, block time) to measure the chain's pace against, without reading a
    /// block ([`super::pace::TipPace::reference`]); `None` until two tips were seen.
    pub fn pace_reference(&self, height: i64) -> Option<(i64, wire::BlockTime)> {
        self.pace.reference(height)
    }

    /// The chain id the node says it serves (`GetNodeInfo`'s `default_node_info.network`).
    async fn node_network(&self) -> Result<String, ChainError> {
        let response: wire::GetNodeInfoResponse = self
            .grpc
            .unary(tendermint_method::GET_NODE_INFO, wire::GetNodeInfoRequest {})
            .await?;
        response
            .default_node_info
            .map(|i| i.network)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ChainError::BadResponse("GetNodeInfo without a network (chain id)".into()))
    }

    /// The latest committed block.
    pub async fn latest_block(&self) -> Result<BlockInfo, ChainError> {
        let response: wire::GetBlockResponse = self
            .grpc
            .unary(tendermint_method::GET_LATEST_BLOCK, wire::GetLatestBlockRequest {})
            .await?;
        let block = block_info(response, self.expected_chain_id.get())?;
        self.observe_height(block.height);
        self.blocks.insert(block.height, block.clone(), Some(AT_HEIGHT_TTL));
        Ok(block)
    }

    /// The block at `height` (its hash seeds session ids and proof paths).
    pub async fn block(&self, height: i64) -> Result<BlockInfo, ChainError> {
        if let Some(b) = self.blocks.get(&height) {
            return Ok(b);
        }
        let result: Result<wire::GetBlockResponse, _> = self
            .grpc
            .unary(
                tendermint_method::GET_BLOCK_BY_HEIGHT,
                wire::GetBlockByHeightRequest { height },
            )
            .await;
        let block = match result {
            Err(e) if e.is_not_found() => return Err(ChainError::NotFound(format!("block {height}"))),
            other => block_info(other?, self.expected_chain_id.get())?,
        };
        self.observe_height(block.height);
        self.blocks.insert(height, block.clone(), Some(AT_HEIGHT_TTL));
        Ok(block)
    }

    /// Simulates a tx; returns gas used.
    pub async fn simulate(&self, tx_bytes: Vec<u8>) -> Result<u64, ChainError> {
        let started = std::time::Instant::now();
        let response: Result<wire::SimulateResponse, _> = self
            .grpc
            .unary(method::SIMULATE, wire::SimulateRequest { tx_bytes })
            .await;
        tracing::debug!(elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "tx simulated");
        simulated_gas(response?)
    }

    /// Broadcasts a tx in SYNC mode (mempool admission only; inclusion is confirmed separately).
    pub async fn broadcast(&self, tx_bytes: Vec<u8>) -> Result<wire::TxResponse, ChainError> {
        let request = wire::BroadcastTxRequest {
            tx_bytes,
            mode: wire::BROADCAST_MODE_SYNC,
        };
        let started = std::time::Instant::now();
        let response: Result<wire::BroadcastTxResponse, _> = self.grpc.unary(method::BROADCAST_TX, request).await;
        tracing::debug!(elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "tx broadcast");
        response?
            .tx_response
            .ok_or_else(|| ChainError::BadResponse("BroadcastTx without tx_response".into()))
    }

    /// The result of an included tx, `None` while not included.
    pub async fn get_tx(&self, hash: &str) -> Result<Option<wire::TxResponse>, ChainError> {
        match self
            .grpc
            .unary::<_, wire::GetTxResponse>(method::GET_TX, wire::GetTxRequest { hash: hash.to_string() })
            .await
        {
            Ok(r) => Ok(r.tx_response),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The `BaseAccount` inside an `Account` query response (base, module or vesting account: [`super::account`]).
fn base_account(response: wire::QueryAccountResponse) -> Result<wire::BaseAccount, ChainError> {
    let account = response
        .account
        .ok_or_else(|| ChainError::BadResponse("Account without account".into()))?;
    super::account::base_account(&account)
}

/// A status answer as [`ChainTip`]: a height of 0 (a node still at genesis) or one that does not fit an `i64`,
/// or no time, is unusable.
fn tip_of(response: &wire::NodeStatusResponse) -> Result<ChainTip, ChainError> {
    let height = i64::try_from(response.height)
        .ok()
        .filter(|h| *h > 0)
        .ok_or_else(|| ChainError::BadResponse(format!("node status at height {}", response.height)))?;
    let time = response
        .timestamp
        .ok_or_else(|| ChainError::BadResponse(format!("node status at height {height} without a time")))?;
    Ok(ChainTip { height, time })
}

/// A block answer as [`BlockInfo`]; with `expected_chain_id`, a block of another chain is refused.
fn block_info(response: wire::GetBlockResponse, expected_chain_id: Option<&String>) -> Result<BlockInfo, ChainError> {
    let hash = response.block_id.map(|b| b.hash).unwrap_or_default();
    let header = response
        .block
        .and_then(|b| b.header)
        .ok_or_else(|| ChainError::BadResponse("block without header".into()))?;
    if hash.len() != 32 || header.height <= 0 {
        return Err(ChainError::BadResponse(format!(
            "block {} with a {}-byte hash",
            header.height,
            hash.len()
        )));
    }
    if let Some(expected) = expected_chain_id
        && header.chain_id != *expected
    {
        return Err(ChainError::BadResponse(format!(
            "block {} is of chain `{}`, not the configured `{expected}` (pocket_node.chain_id)",
            header.height, header.chain_id
        )));
    }
    Ok(BlockInfo {
        height: header.height,
        hash,
        time: header.time.unwrap_or_default(),
    })
}

/// The gas a Simulate answer reports. An answer without `gas_info` (or with 0 gas) is malformed: taking it as 0
/// would build a tx with no gas that every node refuses, again each block, until the window closed.
fn simulated_gas(response: wire::SimulateResponse) -> Result<u64, ChainError> {
    match response.gas_info.map(|g| g.gas_used) {
        Some(gas) if gas > 0 => Ok(gas),
        _ => Err(ChainError::BadResponse("Simulate answered without gas used".into())),
    }
}

#[cfg(test)]
mod behind_tests;
mod claims;
#[cfg(test)]
mod inflation_tests;
mod shared;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tip_tests;
