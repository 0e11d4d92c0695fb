//! Streamed HTTP answers (SSE, NDJSON) served as a stream of signed batches and mined as one relay.
//!
//! Inference backends answer `text/event-stream` or `application/x-ndjson` and the gateway needs the first tokens
//! at once; buffering the whole answer (module `forward`) would hold them back and hit the request timeout. When
//! the backend's `Content-Type` names one of those media types ([`is_streaming`]), the relayer answers with the
//! backend's status and headers (hop-by-hop ones dropped) and a body made of items, each a protobuf
//! `RelayResponse` followed by [`STREAM_DELIMITER`] (the Go relay miner's wire format). Each item is signed by the
//! supplier over `POKTHTTPResponse { status_code, header: {}, body_bz: batch }`, where a batch is the stream's
//! newline-terminated lines (each `\n` kept) accumulated until [`BATCH_AGE`] passed since the batch's first line,
//! or [`BATCH_BYTES`], or [`BATCH_LINES`], or the stream ended ([`Batcher`], pure). The batches' bodies
//! concatenated are the backend's body.
//!
//! The whole stream is **one relay**: the request and the stream's final item (the last batch, an empty one when
//! nothing is left, so the gateway always gets a signed item) go through the buffered relays' mining path
//! (`Relayer::mine`: the meter charge taken before forwarding, difficulty, 5xx served but not mined and refunded,
//! the claim-window refusal, `max_mined_relay_bytes`), as poktroll's relayer mines a stream with its last batch.
//! Any supplier-signed response to the request makes a valid relay; one signed over a single batch keeps the
//! relay's proof small however long the stream ran (a relay over the whole body of a long inference answer would
//! be too large to prove: served, never paid).
//!
//! Money rule (a relay the relayer answered is appended before it is acknowledged): the acknowledgement of a stream
//! is the end of its HTTP body. In `eager` mode the final item is written only once the relay's append returned
//! (durable with `relay_log.durable_ack`), then the body ends. When mining fails (storage error, claim window
//! passed…) the final item is a `RelayResponse` carrying the `RelayMinerError` instead. A stream still running one
//! block before the miner may build its session's claim (`transaction.claim_delay_blocks`) is mined then, with the
//! last item the gateway has, and goes on: a stream crossing its session's end is paid. In `optimistic` mode the
//! final item is written at once and the settlement (validation, metering, mining) runs after the body ended with
//! it, as for buffered relays served first; a stream still running one block before its claim may be built is
//! settled then, beside the stream, with the last item the gateway has (the session's windows are known: optimistic
//! mode serves first only relays of a session validated before, recorded with them).
//!
//! Decisions:
//! - The bytes a stream may deliver are bounded by the service's `max_body_size_bytes`. Past it the relayer stops
//!   reading the backend and ends the stream with a `response_too_large` item.
//! - A line longer than [`MAX_LINE`] ends the stream with a `backend_error` item; so does a backend body error.
//! - The service's request timeout applies between two lines (idle), not to the whole stream (the backend's head
//!   is still bounded by it): a backend silent that long ends the stream with a `backend_timeout` item. A gateway
//!   that does not take an item within the same time counts as gone.
//! - A stream broken in one of those ways before any item is refunded and mined nothing, as a buffered answer over
//!   the limit or a failed backend. One broken after items is mined with the last item delivered, then ends with
//!   the error item: the gateway holds supplier-signed responses of a relay served in part (its application got
//!   the tokens), so the relay is valid on chain and the work was done; leaving it unmined would serve it unpaid.
//! - The gateway leaving mid-stream (its connection dropped, e.g. its user cancelled an inference answer): the
//!   relayer stops reading the backend. A gateway that got an item holds a signed response of a relay served: the
//!   relay is mined with the last item it got (settled, in optimistic mode), as the stream's end would have mined
//!   it. One that left before any item is refunded and nothing is mined (counted in
//!   `ha_relayer_relays_dropped_total{reason="stream_abandoned"}`). Once the backend's stream ended, the mining
//!   runs to its end even if the gateway leaves meanwhile.
//! - The shutdown (`Relayer::stop_streams`, called when the relay server stops accepting and by
//!   `Relayer::drain_settlements`) ends every stream at its next step as if its backend's had ended: its relay is
//!   mined with what was delivered; one whose backend sent nothing yet ends with an error item instead, refunded
//!   (the application would pay for an empty answer). The relay server's drain waits for every response body, so a stream kept open
//!   by a backend (SSE keep-alive comments) would otherwise hold the shutdown.
//! - Every stream runs in a task counted by the relayer's `detach::Detachments`, which the shutdown's
//!   `Relayer::drain_settlements` waits for.
//! - A backend that compresses its stream anyway (`Content-Encoding`) is not streamed: module `forward` reads it
//!   whole and decodes it (its batches would be compressed bytes cut at arbitrary line ends).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body_util::BodyExt as _;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::protocol::session::SessionWindows;

pub(super) use super::forward::Forwarded;
use super::forward::{BackendHead, is_hop_by_hop};
use super::routes::Service;
use super::{RelayError, Relayer, Structure, Validated, budget, costs, error_response, meter};
use crate::protocol::relay;
use crate::protocol::wire::{PoktHttpResponse, RelayRequest, RelayResponse};

/// Ends every item of a streamed answer (the Go relay miner's `streamDelimiter`): a wire constant.
pub const STREAM_DELIMITER: &[u8] = b"||POKT_STREAM||";
/// A batch is signed and written once this long passed since its first line.
pub const BATCH_AGE: Duration = Duration::from_millis(100);
/// … or once it holds this many bytes.
pub const BATCH_BYTES: usize = 100 * 1024;
/// … or this many lines.
pub const BATCH_LINES: usize = 100;
/// A longer line (its `\n` included) ends the stream with an error.
pub const MAX_LINE: usize = 256 * 1024;
/// Signed items waiting for the gateway to read them, per stream.
const ITEMS_QUEUED: usize = 8;

/// Whether a backend answer with these headers is streamed: its `Content-Type`'s media type is
/// `text/event-stream` or `application/x-ndjson` (parameters and case ignored).
pub fn is_streaming(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = value.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("text/event-stream") || media.eq_ignore_ascii_case("application/x-ndjson")
}

/// A line longer than [`MAX_LINE`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a line of the streamed answer exceeds {MAX_LINE} bytes")]
pub struct LineTooLong;

/// Cuts a byte stream into batches of whole lines (pure: the caller passes the time each read happened at).
#[derive(Debug, Default)]
pub struct Batcher {
    /// Whole lines of the current batch.
    batch: Vec<u8>,
    /// Lines in `batch`.
    lines: usize,
    /// When the current batch's first line arrived.
    began: Option<Instant>,
    /// The line being read (no `\n` yet).
    partial: Vec<u8>,
    /// Lines taken so far, all batches together.
    lines_total: u64,
}

impl Batcher {
    /// Takes `data` read at `now`; returns the batches it completed, in order (by size, line count or age).
    pub fn push(&mut self, mut data: &[u8], now: Instant) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut out = Vec::new();
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            let (line, rest) = data.split_at(i + 1);
            if self.partial.len() + line.len() > MAX_LINE {
                return Err(LineTooLong);
            }
            self.began.get_or_insert(now);
            self.batch.append(&mut self.partial);
            self.batch.extend_from_slice(line);
            self.lines += 1;
            self.lines_total += 1;
            if self.batch.len() >= BATCH_BYTES || self.lines >= BATCH_LINES {
                out.push(self.take());
            }
            data = rest;
        }
        if self.partial.len() + data.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        self.partial.extend_from_slice(data);
        out.extend(self.flush_due(now));
        Ok(out)
    }

    /// When the current batch is due by age; `None` while it holds no line.
    pub fn deadline(&self) -> Option<Instant> {
        self.began.map(|b| b + BATCH_AGE)
    }

    /// The current batch when it is due by age at `now`.
    pub fn flush_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.deadline().filter(|d| now >= *d).map(|_| self.take())
    }

    /// Lines taken so far.
    pub fn lines(&self) -> u64 {
        self.lines_total
    }

    /// The stream ended: the last batch (with a last line lacking its `\n`), `None` when nothing is left.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        self.batch.append(&mut self.partial);
        (!self.batch.is_empty()).then_some(self.batch)
    }

    fn take(&mut self) -> Vec<u8> {
        self.lines = 0;
        self.began = None;
        std::mem::take(&mut self.batch)
    }
}

/// Resolves when `wait` (a `watch::Receiver::wait_for`) saw its condition; never when the watch's sender is gone
/// (nothing will change any more: a stream goes on as if nothing happened).
async fn until<T>(wait: impl std::future::Future<Output = Result<T, tokio::sync::watch::error::RecvError>>) {
    if wait.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One item of a streamed answer: the encoded `response` and [`STREAM_DELIMITER`].
pub fn frame(response: &RelayResponse) -> Bytes {
    let mut item = relay::encode_relay_response(response);
    item.extend_from_slice(STREAM_DELIMITER);
    Bytes::from(item)
}

/// What a relay is answered with: one signed `RelayResponse`, or a stream of them.
pub(super) enum Answer {
    Signed(Vec<u8>),
    Streamed(Response),
}

/// How a streamed relay is settled once its stream ended.
pub(super) enum Settle {
    /// Validated before forwarding, its meter charge taken: mined before the final batch is written.
    Eager(Eager),
    /// Served first: validated, metered and mined after the body ended (or one block before its session's claim may
    /// be built, if still running then). `windows`: the session's, as recorded when it was first validated.
    Optimistic {
        structure: Structure,
        arrival: i64,
        windows: SessionWindows,
    },
}

/// What mining an eagerly validated stream's relay needs (taken when it is mined).
pub(super) struct Eager {
    pub valid: Box<Validated>,
    pub costs: Arc<costs::SessionCosts>,
    pub charge: meter::Charge,
    pub arrival: i64,
}

/// A relay whose backend answers a stream.
pub(super) struct StreamJob {
    pub request: RelayRequest,
    pub key: k256::ecdsa::SigningKey,
    pub service: Arc<Service>,
    pub head: BackendHead,
    /// The `rpc_type` metric label.
    pub rt: &'static str,
    /// When the relay's request arrived (relay latency).
    pub started: std::time::Instant,
    /// The request's body bytes in the in-flight budget, held until the stream's work ended.
    pub reserved: budget::Reserved,
    pub settle: Settle,
}

/// How reading the backend's stream ended.
enum Ended {
    /// The backend's stream ended.
    Done,
    /// The gateway went away (or stopped reading).
    Left,
    /// The stream cannot go on: the error's item ends the body.
    Failed(RelayError),
}

impl Relayer {
    /// Mines a streamed relay validated before forwarding: `request` with `response` (module docs: an item the
    /// gateway has), the charge taken before forwarding settled by the outcome.
    async fn mine_eager(
        &self,
        request: &RelayRequest,
        response: &RelayResponse,
        status: u32,
        eager: Eager,
    ) -> Result<(), RelayError> {
        let Eager {
            valid,
            costs,
            charge,
            arrival,
        } = eager;
        self.mine(
            request,
            response,
            &valid,
            status,
            &costs,
            arrival,
            self.durable_ack,
            charge,
        )
        .await
    }

    /// Answers a relay whose backend streams: the response (the backend's status and headers) at once, its body
    /// fed by a task counted in the relayer's detachments (the shutdown waits for it).
    pub(super) fn serve_stream(self: &Arc<Self>, job: StreamJob) -> Response {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(ITEMS_QUEUED);
        let mut response = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
        *response.status_mut() = job.head.response.status();
        for (name, value) in job.head.response.headers() {
            // `Content-Length` included: the body is ours, not the backend's. `Content-Type` stays the backend's.
            if !is_hop_by_hop(name) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        let this = Arc::clone(self);
        self.detached.run(async move { this.stream(job, tx).await });
        response
    }

    /// Reads the backend's stream, writes its signed batches to `tx`, and settles the relay (module docs).
    async fn stream(self: &Arc<Self>, job: StreamJob, tx: mpsc::Sender<Result<Bytes, std::convert::Infallible>>) {
        let StreamJob {
            request,
            key,
            service,
            head,
            rt,
            started,
            reserved,
            settle,
        } = job;
        let _body_bytes = reserved;
        let answered = std::time::Instant::now();
        let BackendHead { response, _permit } = head;
        let status = u32::from(response.status().as_u16());
        let mut body = response.into_body();
        let idle = service.request_timeout;
        let limit = service.max_body_bytes;
        let header = request.meta.as_ref().and_then(|m| m.session_header.clone());
        let service_id = service.id.as_str();
        let mut batcher = Batcher::default();
        let mut delivered = 0usize;
        let mut idle_deadline = Instant::now() + idle;
        // A relay is mined one block before the miner may build its claim if its stream is still running then
        // (the stream goes on, the relay is in the claim); `settle` is `None` once it was settled.
        let windows = match &settle {
            Settle::Eager(Eager { valid, .. }) => valid.windows,
            Settle::Optimistic { windows, .. } => *windows,
        };
        let optimistic = matches!(settle, Settle::Optimistic { .. });
        let mine_before = crate::protocol::session::first_claim_send_height(
            windows.claim_open,
            windows.claim_close,
            self.claim_delay_blocks,
            self.submission_buffer_blocks,
        )
        .saturating_sub(1);
        let mut settle = Some(settle);
        let mut height = self.height.clone();
        let mut stopping = self.streams_stop.subscribe();
        // The last signed item written: what the relay is mined with when it is mined before its stream ended.
        let mut last_written: Option<RelayResponse> = None;
        // Whether the relay was mined (optimistic: its settlement started) before its stream ended.
        let mut mined_early = false;
        let write = |response: &RelayResponse| {
            let item = frame(response);
            let len = item.len();
            let tx = &tx;
            async move {
                match tokio::time::timeout(idle, tx.send(Ok(item))).await {
                    Ok(Ok(())) => {
                        self.metrics.streaming_bytes.inc_by(len as u64);
                        true
                    }
                    _ => false,
                }
            }
        };
        let sign = |batch: Vec<u8>| {
            self.metrics.streaming_batches.inc();
            let payload = PoktHttpResponse {
                status_code: status,
                header: Default::default(),
                body_bz: batch,
            };
            relay::sign_response(&request, payload.encode_to_vec(), &key)
        };
        let ended = loop {
            enum Step {
                Flush,
                Data(Bytes),
                End,
                Failed(RelayError),
                Left,
                MineNow,
            }
            let flush_at = batcher.deadline();
            let mine_at = settle.is_some().then_some(mine_before);
            let step = tokio::select! {
                biased;
                () = tx.closed() => Step::Left,
                // The shutdown's drain: the stream ends here, as if the backend's had, and its relay is mined (the
                // relay server's drain waits for this body to end); one that delivered nothing yet is not (the app
                // would pay for an empty answer): it ends with an error item, refunded.
                () = until(stopping.wait_for(|stop| *stop)) => match delivered {
                    0 => Step::Failed(RelayError::Backend(
                        "the relay miner shut down before the backend's stream sent anything".into(),
                    )),
                    _ => Step::End,
                },
                () = until(height.wait_for(|h| mine_at.is_some_and(|at| *h >= at))), if mine_at.is_some() => {
                    Step::MineNow
                }
                () = tokio::time::sleep_until(flush_at.unwrap_or(idle_deadline)), if flush_at.is_some() => Step::Flush,
                frame = tokio::time::timeout_at(idle_deadline, body.frame()) => match frame {
                    Err(_) => Step::Failed(RelayError::BackendTimeout(idle)),
                    Ok(None) => Step::End,
                    Ok(Some(Err(e))) => Step::Failed(RelayError::Backend(format!("response body: {e}"))),
                    // Trailers carry no body bytes.
                    Ok(Some(Ok(frame))) => Step::Data(frame.into_data().unwrap_or_default()),
                },
            };
            let now = Instant::now();
            let batches = match step {
                Step::End => break Ended::Done,
                Step::Left => break Ended::Left,
                Step::Failed(e) => break Ended::Failed(e),
                Step::MineNow => {
                    // Mined with the last item the gateway has (an empty batch written first when none was).
                    let response = match last_written.clone() {
                        Some(r) => r,
                        None => {
                            let r = sign(Vec::new());
                            if !write(&r).await {
                                break Ended::Left;
                            }
                            r
                        }
                    };
                    match settle.take() {
                        Some(Settle::Eager(eager)) => {
                            if let Err(e) = self.mine_eager(&request, &response, status, eager).await {
                                break Ended::Failed(e);
                            }
                            mined_early = true;
                        }
                        // Settled beside the stream (validation may retry chain reads for a while; the backend is
                        // read on meanwhile), in the detachments the shutdown's drain waits for.
                        Some(Settle::Optimistic { structure, arrival, .. }) => {
                            mined_early = true;
                            let this = Arc::clone(self);
                            let request = request.clone();
                            self.detached.run(async move {
                                this.settle_optimistic(request, response, structure, status, arrival)
                                    .await
                            });
                        }
                        None => {}
                    }
                    Vec::new()
                }
                Step::Flush => batcher.flush_due(now).into_iter().collect(),
                Step::Data(data) => {
                    if delivered + data.len() > limit {
                        break Ended::Failed(RelayError::ResponseTooLarge { limit });
                    }
                    delivered += data.len();
                    let lines = batcher.lines();
                    match batcher.push(&data, now) {
                        Ok(batches) => {
                            let taken = batcher.lines() - lines;
                            if taken > 0 {
                                self.metrics.streaming_chunks.inc_by(taken);
                                idle_deadline = now + idle;
                            }
                            batches
                        }
                        Err(e) => break Ended::Failed(RelayError::Backend(e.to_string())),
                    }
                }
            };
            let mut left = false;
            for batch in batches {
                let signed = sign(batch);
                if !write(&signed).await {
                    left = true;
                    break;
                }
                last_written = Some(signed);
            }
            if left {
                break Ended::Left;
            }
        };
        // The backend connection is not needed any more.
        drop(body);
        drop(_permit);
        let served = |this: &Self| {
            this.metrics
                .served
                .with_label_values(&[service_id, rt, &status.to_string()])
                .inc();
            this.metrics.streaming_served.with_label_values(&[service_id]).inc();
            this.metrics
                .latency
                .with_label_values(&[service_id, rt])
                .observe(started.elapsed().as_secs_f64());
            this.observe_phase(&this.metrics.post_backend, service_id, rt, answered);
            if optimistic {
                this.metrics
                    .served_optimistically
                    .with_label_values(&[service_id, rt])
                    .inc();
            }
        };
        // A broken stream (not a mining refusal before the claim, which took the settlement) is counted by reason.
        if let Ended::Failed(e) = &ended
            && (settle.is_some() || mined_early)
        {
            self.metrics
                .streams_broken
                .with_label_values(&[service_id, e.code().1])
                .inc();
        }
        // A relay mined before its stream ended (before its claim) stands, its charge kept, whatever happens next;
        // one not settled yet is refunded when its stream does not end well, unless the gateway left holding items.
        let settle = match (ended, settle, last_written) {
            (Ended::Done, settle, _) => settle,
            (Ended::Left, None, _) => {
                tracing::debug!(service_id, "gateway left a streamed relay mined before its claim");
                served(self);
                return;
            }
            (Ended::Failed(e), None, _) => {
                if mined_early {
                    tracing::debug!(error = %e, service_id, "streamed relay mined before its claim ended early");
                } else {
                    // Its mining before the claim failed (`mine` settled the charge).
                    self.count_rejected(service_id, rt, &e);
                    tracing::debug!(error = %e, service_id, "streamed relay not mined");
                }
                write(&error_response(&e, header)).await;
                return;
            }
            // The gateway holds signed responses of a relay served (in part) when it left after items (its user
            // cancelled the answer) or when the stream broke after items (the backend failed, went silent, or past
            // `max_body_size_bytes`): mined with the last item it got, as the stream's end would have been; a
            // broken stream's body then ends with the error item.
            (ended @ (Ended::Left | Ended::Failed(_)), Some(settle), Some(item)) => {
                let failed = match ended {
                    Ended::Failed(e) => Some(e),
                    _ => None,
                };
                match &failed {
                    None => tracing::debug!(
                        service_id,
                        "gateway left a streamed relay; mined with the last item it has"
                    ),
                    Some(e) => tracing::debug!(
                        error = %e,
                        service_id,
                        "streamed relay broken after items; mined with the last item delivered"
                    ),
                }
                match settle {
                    Settle::Eager(eager) => match self.mine_eager(&request, &item, status, eager).await {
                        Ok(()) => served(self),
                        Err(e) => {
                            self.count_rejected(service_id, rt, &e);
                            tracing::debug!(error = %e, service_id, "streamed relay not mined");
                        }
                    },
                    Settle::Optimistic { structure, arrival, .. } => {
                        served(self);
                        if let Some(e) = &failed {
                            // Settled beside the error item (a gateway slow to take it must not hold the
                            // settlement past the claim's height), in the detachments the shutdown waits for.
                            let this = Arc::clone(self);
                            self.detached.run(async move {
                                this.settle_optimistic(request, item, structure, status, arrival).await
                            });
                            write(&error_response(e, header.clone())).await;
                            return;
                        }
                        drop(tx);
                        self.settle_optimistic(request, item, structure, status, arrival).await;
                        return;
                    }
                }
                if let Some(e) = &failed {
                    write(&error_response(e, header)).await;
                }
                return;
            }
            (Ended::Left, Some(settle), None) => {
                self.metrics
                    .dropped
                    .with_label_values(&[service_id, "stream_abandoned"])
                    .inc();
                tracing::debug!(service_id, "gateway left a streamed relay before any item; not mined");
                if let Settle::Eager(Eager { charge, .. }) = settle {
                    self.refund(service_id, charge);
                }
                return;
            }
            (Ended::Failed(e), Some(settle), None) => {
                self.count_rejected(service_id, rt, &e);
                tracing::debug!(error = %e, service_id, "streamed relay ended before any item; not mined");
                if let Settle::Eager(Eager { charge, .. }) = settle {
                    self.refund(service_id, charge);
                }
                write(&error_response(&e, header)).await;
                return;
            }
        };
        // The final item: the stream's last batch (an empty one when nothing is left, so the gateway always gets a
        // signed item to verify). The relay is mined with it: a response the gateway holds, signed over one batch,
        // so its proof stays small however long the stream was (a relay signed over the whole body could be too
        // large to prove, served and never paid).
        let last = sign(batcher.finish().unwrap_or_default());
        match settle {
            // Mined (optimistic: settled) before the stream ended.
            None => {
                write(&last).await;
                served(self);
            }
            Some(Settle::Eager(eager)) => {
                let mined = self.mine_eager(&request, &last, status, eager).await;
                match mined {
                    Ok(()) => {
                        write(&last).await;
                        served(self);
                    }
                    Err(e) => {
                        self.count_rejected(service_id, rt, &e);
                        tracing::debug!(error = %e, service_id, "streamed relay not mined");
                        write(&error_response(&e, header)).await;
                    }
                }
            }
            Some(Settle::Optimistic { structure, arrival, .. }) => {
                write(&last).await;
                served(self);
                // The body ends here; the settlement goes on with the final item.
                drop(tx);
                self.settle_optimistic(request, last, structure, status, arrival).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lines(n: usize, len: usize) -> Vec<u8> {
        let mut line = vec![b'x'; len - 1];
        line.push(b'\n');
        line.repeat(n)
    }

    /// The Go relay miner's delimiter, byte for byte: gateways split on it.
    #[test]
    fn the_delimiter_is_the_go_wire_constant() {
        assert_eq!(STREAM_DELIMITER, b"||POKT_STREAM||");
        let response = RelayResponse {
            payload: b"batch".to_vec(),
            ..Default::default()
        };
        let item = frame(&response);
        let (encoded, delimiter) = item.split_at(item.len() - STREAM_DELIMITER.len());
        assert_eq!(delimiter, b"||POKT_STREAM||");
        assert_eq!(
            relay::decode_relay_response(encoded, 1 << 20).unwrap().payload,
            b"batch"
        );
    }

    #[test]
    fn streamed_media_types() {
        for (value, streamed) in [
            ("text/event-stream", true),
            ("Text/Event-Stream; charset=utf-8", true),
            ("application/x-ndjson", true),
            (" application/x-ndjson ;q=1", true),
            ("application/json", false),
            ("text/event-streams", false),
            ("", false),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_streaming(&headers), streamed, "{value:?}");
        }
        assert!(!is_streaming(&http::HeaderMap::new()));
    }

    /// Lines are batched whole, with their `\n`, a line split across reads included; nothing is due before
    /// [`BATCH_AGE`] passed since the batch's first line.
    #[test]
    fn a_batch_is_due_by_age_since_its_first_line() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        assert_eq!(b.push(b"data: a", t0).unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(b.deadline(), None, "no whole line yet");
        let t1 = t0 + Duration::from_millis(30);
        assert!(b.push(b"\n\ndata: b", t1).unwrap().is_empty());
        assert_eq!(b.deadline(), Some(t1 + BATCH_AGE));
        assert_eq!(b.flush_due(t1 + BATCH_AGE - Duration::from_millis(1)), None);
        assert_eq!(b.flush_due(t1 + BATCH_AGE).unwrap(), b"data: a\n\n");
        assert_eq!(b.deadline(), None);
        // A line arriving after the age passed joins the batch, which is then due.
        let t2 = t1 + Duration::from_secs(1);
        assert!(b.push(b"\n", t2).unwrap().is_empty());
        assert_eq!(b.push(b"c\n", t2 + BATCH_AGE).unwrap(), vec![b"data: b\nc\n".to_vec()]);
        assert_eq!(b.lines(), 4);
        // The end: the rest, a last line without `\n` included.
        assert!(b.push(b"tail", t2 + BATCH_AGE).unwrap().is_empty());
        assert_eq!(b.finish().unwrap(), b"tail");
        assert_eq!(Batcher::default().finish(), None);
    }

    #[test]
    fn a_batch_is_due_at_the_line_count() {
        let t = Instant::now();
        let mut b = Batcher::default();
        assert!(b.push(&lines(BATCH_LINES - 1, 10), t).unwrap().is_empty());
        let out = b.push(&lines(BATCH_LINES + 2, 10), t).unwrap();
        assert!(
            out == vec![lines(BATCH_LINES, 10), lines(BATCH_LINES, 10)],
            "{} batches",
            out.len()
        );
        assert_eq!(b.finish().unwrap(), lines(1, 10));
    }

    #[test]
    fn a_batch_is_due_at_its_size() {
        let t = Instant::now();
        let mut b = Batcher::default();
        // 10 lines of 10 KiB: 100 KiB exactly at the 10th.
        let out = b.push(&lines(11, 10 * 1024), t).unwrap();
        assert!(out == vec![lines(10, 10 * 1024)], "{} batches", out.len());
        assert!(b.finish().unwrap() == lines(1, 10 * 1024));
    }

    #[test]
    fn a_line_longer_than_the_limit_is_an_error() {
        let t = Instant::now();
        let mut b = Batcher::default();
        // The longest line, due at once by its size.
        let out = b.push(&lines(1, MAX_LINE), t).unwrap();
        assert!(out == vec![lines(1, MAX_LINE)], "{} batches", out.len());
        let mut b = Batcher::default();
        assert_eq!(b.push(&lines(1, MAX_LINE + 1), t), Err(LineTooLong));
        // Split across reads, never ended.
        let mut b = Batcher::default();
        assert!(b.push(&vec![b'x'; MAX_LINE], t).is_ok());
        assert_eq!(b.push(b"x", t), Err(LineTooLong));
    }
}
