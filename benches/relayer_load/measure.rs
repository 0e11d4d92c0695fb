//! The bench's measuring tools: its knobs from the environment, process CPU and memory from `/proc/self`, the
//! relayer's phase histograms read back from its telemetry, percentiles, and the two load generators (closed loop
//! at a fixed concurrency, open loop at a fixed rate).

use super::*;

pub(super) fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub(super) fn key_hex(label: &str) -> String {
    hex::encode(sha256(label.as_bytes()))
}

/// Process CPU time (user + system) from /proc/self/stat.
pub(super) fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the `(comm)` field: state is index 0, utime 11, stime 12 (fields 14 and 15 of proc(5)).
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_micros(ticks * 10_000) // USER_HZ = 100 on Linux
}

/// Resident and peak resident memory of the process in MiB (`VmRSS`, `VmHWM` of /proc/self/status).
pub(super) fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The relayer's per-phase latency histograms (summed over labels), then the relay WAL's: an append's wait for
/// the WAL thread, and one record's `pwrite` + `fdatasync` (absent with `RELAYER_BENCH_WAL=0`).
pub(super) const PHASES: [&str; 6] = [
    "ha_relayer_relay_pre_backend_seconds",
    "ha_relayer_backend_latency_seconds",
    "ha_relayer_relay_post_backend_seconds",
    "ha_relayer_relay_latency_seconds",
    "ha_storage_wal_queue_seconds",
    "ha_storage_wal_write_seconds",
];

/// Cumulative bucket counts `(le, count)` of histogram `name`, summed over its label sets.
pub(super) fn buckets(telemetry: &Telemetry, name: &str) -> Vec<(f64, u64)> {
    let text = telemetry.render_metrics();
    let prefix = format!("{name}_bucket{{");
    let mut sums: Vec<(f64, u64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("+Inf");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let count: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        match sums.iter_mut().find(|(l, _)| *l == le) {
            Some(entry) => entry.1 += count,
            None => sums.push((le, count)),
        }
    }
    sums.sort_by(|a, b| a.0.total_cmp(&b.0));
    sums
}

/// Sum (seconds) and count of histogram `name`, summed over its label sets.
pub(super) fn sum_count(telemetry: &Telemetry, name: &str) -> (f64, u64) {
    let text = telemetry.render_metrics();
    let value = |suffix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{suffix}")))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    (value("_sum"), value("_count") as u64)
}

/// The smallest bucket bound holding quantile `q` of a cumulative histogram.
pub(super) fn bucket_quantile(cumulative: &[(f64, u64)], q: f64) -> String {
    let total = cumulative.last().map_or(0, |(_, c)| *c);
    let target = (total as f64 * q).ceil() as u64;
    cumulative
        .iter()
        .find(|(_, c)| *c >= target.max(1))
        .map_or("-".to_string(), |(le, _)| {
            format!("{:?}", Duration::from_secs_f64(le.min(1e6)))
        })
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(super) struct Run {
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
    pub(super) latencies: Vec<Duration>,
    pub(super) failures: usize,
}

impl Run {
    /// A run that started at `started` with the process at `cpu0` of CPU and just ended (latencies sorted).
    fn ended(started: Instant, cpu0: Duration, mut latencies: Vec<Duration>, failures: usize) -> Self {
        let wall = started.elapsed();
        let cpu = cpu_time().saturating_sub(cpu0);
        latencies.sort();
        Self {
            wall,
            cpu,
            latencies,
            failures,
        }
    }
}

/// How the generator's requests go on the wire: POSTed relays (`Rpc-Type: 4`, HTTP/1.1), or gRPC calls (HTTP/2,
/// `RELAYER_BENCH_TRANSPORT=grpc`: `SendRelay` to the relayer, `demo.Echo/Echo` straight to the backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wire {
    Http,
    Grpc,
}

impl Wire {
    /// A request of `body` to `url`.
    pub(super) fn request(self, url: &str, body: bytes::Bytes) -> http::Request<http_body_util::Full<bytes::Bytes>> {
        let request = http::Request::post(url);
        let request = match self {
            Wire::Http => request
                .header("content-type", "application/x-protobuf")
                .header("rpc-type", "4"),
            Wire::Grpc => request
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("rpc-type", "1"),
        };
        request.body(http_body_util::Full::new(body)).unwrap()
    }

    /// Reads the whole answer; whether it succeeded (a 2xx, and for gRPC `grpc-status: 0`, in the trailers or
    /// in a trailers-only head).
    pub(super) async fn ok(self, response: http::Response<hyper::body::Incoming>) -> bool {
        let success = response.status().is_success();
        let head_status = response.headers().get("grpc-status").cloned();
        let collected = response.into_body().collect().await;
        match self {
            Wire::Http => success && collected.is_ok(),
            Wire::Grpc => {
                let trailer_status = collected
                    .ok()
                    .and_then(|c| c.trailers().and_then(|t| t.get("grpc-status").cloned()));
                success && head_status.or(trailer_status).is_some_and(|v| v == "0")
            }
        }
    }
}

/// Sends every body in `bodies` to `url` from `concurrency` workers; the first `warmup` are not measured.
pub(super) async fn load(
    client: &Client,
    wire: Wire,
    url: &str,
    bodies: Arc<Vec<bytes::Bytes>>,
    concurrency: usize,
    warmup: usize,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let run_phase = |limit: usize| {
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let client = client.clone();
            let url = url.to_string();
            let bodies = Arc::clone(&bodies);
            let next = Arc::clone(&next);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    let request = wire.request(&url, bodies[i].clone());
                    let started = Instant::now();
                    match client.request(request).await {
                        Ok(response) => {
                            let ok = wire.ok(response).await;
                            latencies.push(started.elapsed());
                            if !ok {
                                failures += 1;
                            }
                        }
                        Err(_) => failures += 1,
                    }
                }
                (latencies, failures)
            }));
        }
        tasks
    };
    for t in run_phase(warmup) {
        t.await.unwrap();
    }
    // Every worker overshot the warm-up counter by one: restart exactly after it so no relay is skipped.
    next.store(warmup, Ordering::Relaxed);
    let cpu0 = cpu_time();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for t in run_phase(bodies.len()) {
        let (l, f) = t.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    Run::ended(started, cpu0, latencies, failures)
}

/// Open-loop load: `rate` requests per second (sent in ticks of at least 1 ms) for `bodies.len()` requests; latency from
/// the moment each request is sent.
pub(super) async fn paced(client: &Client, wire: Wire, url: &str, bodies: Vec<bytes::Bytes>, rate: usize) -> Run {
    let rate = rate.max(1);
    // A 1 ms ticker; each tick sends what is due by then (rate × elapsed), so any rate is exact on average.
    let cpu0 = cpu_time();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(bodies.len());
    let mut bodies = bodies.into_iter();
    let mut sent_so_far = 0usize;
    'send: loop {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64).ceil() as usize;
        while sent_so_far < due {
            let Some(body) = bodies.next() else { break 'send };
            sent_so_far += 1;
            let client = client.clone();
            let request = wire.request(url, body);
            tasks.push(tokio::spawn(async move {
                let sent = Instant::now();
                match client.request(request).await {
                    Ok(response) => {
                        let ok = wire.ok(response).await;
                        (Some((sent.duration_since(started), sent.elapsed())), ok)
                    }
                    Err(_) => (None, false),
                }
            }));
        }
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    let mut timeline = String::new();
    for t in tasks {
        let (l, ok) = t.await.unwrap();
        if let Some((at, latency)) = l {
            timeline.push_str(&format!("{},{}\n", at.as_micros(), latency.as_micros()));
        }
        latencies.extend(l.map(|(_, latency)| latency));
        if !ok {
            failures += 1;
        }
    }
    let run = Run::ended(started, cpu0, latencies, failures);
    if let Ok(dir) = std::env::var("RELAYER_BENCH_TIMELINE") {
        let direct = url.ends_with("/v1/echo") || url.ends_with(relay_miner::sim::backend::grpc::ECHO_PATH);
        let name = if direct { "direct" } else { "relayer" };
        std::fs::write(format!("{dir}/{name}.csv"), timeline).unwrap();
        std::fs::write(format!("{dir}/{name}.start"), format!("{started:?}")).unwrap();
    }
    run
}
