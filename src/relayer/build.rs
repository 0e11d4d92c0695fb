//! Building a [`Relayer`]: from the process configuration, from explicit services and options, or the simplest
//! one (tests). Apart from the handler so the request path reads on its own.

use super::*;

impl Relayer {
    /// The relayer of a whole process configuration: every `services.*` entry with its backends per rpc type
    /// (`Rpc-Type` header → `backends.{grpc|websocket|jsonrpc|rest|cometbft}`, else `default_backend`), backend
    /// `headers`, `max_retries` (connection failures only), the timeouts of its `timeout_profile` (else
    /// `default_request_timeout_seconds` and `http_transport.*`), its pool (`pool_profile` else `http_transport`,
    /// Go defaults: 500 connections and 100 idle per host, 90 s idle timeout, 5 s dial, 30 s keep-alive),
    /// `max_body_size_bytes` (else `default_max_body_size_bytes`) for requests and backend answers, and its
    /// `validation_mode` (else `default_validation_mode`); plus `relay_log.*` (batching, `durable_ack`) and
    /// `relay_meter.*` (metering in `storage.kv`, shared by every relayer on the same storage).
    ///
    /// - `chain`: the chain query client (its caches keep validation off the network on the hot path).
    /// - `suppliers`: the supplier operator keys (hot-reloadable; a supplier removed from it is refused at once).
    /// - `storage`: relay mined relays go to `storage.relay_log`, meters live in `storage.kv`.
    /// - `height`: the current block height (timing checks, meter expiry); the caller keeps it fresh and should
    ///   call [`ChainClient::invalidate_applications`] on each new block (delegation changes).
    /// - `telemetry`: registry for the `ha_relayer_*` metrics (one relayer per registry).
    ///
    /// Call [`Config::validate`] first; this fails only on what it cannot build. Must be called inside a tokio
    /// runtime (it starts the relay log appender and the meter sync task; both stop when the relayer is dropped).
    /// Serve it with [`Relayer::router`] on `config.listen_addr`.
    pub fn from_config(
        config: &Config,
        chain: Arc<ChainClient>,
        suppliers: crate::keys::Keyring,
        storage: &storage::Storage,
        height: watch::Receiver<i64>,
        telemetry: &Telemetry,
    ) -> Result<Self, RelayerBuildError> {
        let services = routes::services_from_config(config)?;
        Self::with_services(
            chain,
            suppliers,
            services,
            RelayerOptions::from_config(config),
            storage,
            height,
            telemetry,
        )
    }

    /// The lower-level constructor: explicit [`Service`]s and [`RelayerOptions`].
    pub fn with_services(
        chain: Arc<ChainClient>,
        suppliers: crate::keys::Keyring,
        services: HashMap<String, Arc<Service>>,
        options: RelayerOptions,
        storage: &storage::Storage,
        height: watch::Receiver<i64>,
        telemetry: &Telemetry,
    ) -> Result<Self, RelayerBuildError> {
        Self::build(
            chain,
            suppliers,
            services,
            options,
            Arc::clone(&storage.relay_log),
            Some(Arc::clone(&storage.kv)),
            height,
            telemetry,
        )
    }

    /// The simplest relayer (tests; `relay-miner localnet` builds its own from a config): one backend URL per
    /// service, eager validation, durable ack with default batching, no meter.
    pub fn new(
        chain: Arc<ChainClient>,
        suppliers: crate::keys::Keyring,
        services: HashMap<String, ServiceRoute>,
        relay_log: Arc<dyn storage::RelayLog>,
        height: watch::Receiver<i64>,
        telemetry: &Telemetry,
    ) -> Result<Self, TelemetryError> {
        let tls = routes::backend_tls(None).map_err(|e| TelemetryError::from(prometheus::Error::Msg(e.to_string())))?;
        let services = services
            .into_iter()
            .map(|(id, route)| {
                let backend = Backend::new(RpcType::JsonRpc, route.backend_url, PoolSettings::default(), &tls)?;
                let service = Service::single(
                    id.clone(),
                    ValidationMode::Eager,
                    backend,
                    route.timeout,
                    route.max_body_bytes,
                );
                Ok((id, Arc::new(service)))
            })
            .collect::<Result<_, RouteError>>()
            .map_err(|e| TelemetryError::from(prometheus::Error::Msg(e.to_string())))?;
        match Self::build(
            chain,
            suppliers,
            services,
            RelayerOptions::default(),
            relay_log,
            None,
            height,
            telemetry,
        ) {
            Ok(r) => Ok(r),
            Err(RelayerBuildError::Telemetry(e)) => Err(e),
            Err(RelayerBuildError::Route(e)) => Err(TelemetryError::from(prometheus::Error::Msg(e.to_string()))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        chain: Arc<ChainClient>,
        suppliers: crate::keys::Keyring,
        services: HashMap<String, Arc<Service>>,
        options: RelayerOptions,
        relay_log: Arc<dyn storage::RelayLog>,
        kv: Option<Arc<dyn storage::KvStore>>,
        height: watch::Receiver<i64>,
        telemetry: &Telemetry,
    ) -> Result<Self, RelayerBuildError> {
        let metrics = Arc::new(Metrics::new(telemetry)?);
        let appender = log::LogAppender::spawn(
            relay_log,
            options.batch,
            metrics.clone(),
            telemetry.heartbeat("relay_log_appender"),
        );
        let meter = match (options.meter, kv) {
            (Some(m), Some(kv)) => Some(
                RelayMeter::spawn(
                    kv,
                    m.fail_behavior,
                    m.cache_ttl,
                    m.sync_interval,
                    height.clone(),
                    metrics.clone(),
                )
                .with_heartbeat(telemetry.heartbeat("relay_meter_sync")),
            ),
            _ => None,
        };
        for service in services.values() {
            for backend in service.all_backends() {
                health::start(&service.id, backend, &metrics);
            }
        }
        let max_request_bytes = services.values().map(|s| s.max_body_bytes).max().unwrap_or(10 << 20);
        // `ha_relayer_current_block_height` follows the height relays are validated at (ends with the sender).
        let mut watched = height.clone();
        let current_height = metrics.current_height.clone();
        tokio::spawn(async move {
            loop {
                current_height.set(*watched.borrow_and_update());
                if watched.changed().await.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            chain,
            suppliers,
            services,
            max_request_bytes,
            body_read_timeout: options.body_read_timeout,
            body_budget: options.max_body_bytes_in_flight.map(|bytes| {
                budget::BodyBudget::new(bytes, options.body_budget_wait, metrics.body_bytes_in_flight.clone())
            }),
            appender,
            durable_ack: options.durable_ack,
            claim_delay_blocks: options.claim_delay_blocks.max(0),
            submission_buffer_blocks: options.submission_buffer_blocks.max(0),
            max_mined_relay_bytes: options.max_mined_relay_bytes,
            meter,
            costs: costs::CostCache::default(),
            height,
            optimistic: Arc::new(Semaphore::new(OPTIMISTIC_IN_FLIGHT)),
            recent: Arc::default(),
            validated_sessions: sessions::ValidatedSessions::new(
                sessions::CAPACITY,
                metrics.optimistic_sessions.clone(),
            ),
            next_session_waiters: Semaphore::new(NEXT_SESSION_WAITERS),
            ring_verifier: crate::protocol::ring::fast::FastRing::default(),
            metrics,
            detached: detach::Detachments::default(),
            streams_stop: watch::channel(false).0,
            grpc_metrics: grpc::GrpcMetrics::new(telemetry)?,
            ws_metrics: ws::WsMetrics::new(telemetry)?,
            ws_slots: ws::Slots::new(options.max_websocket_connections),
        })
    }
}
