//! Forwarding a relay's `POKTHTTPRequest` to the service's backend (§2.7) and wrapping the answer as a
//! `POKTHTTPResponse`: hop-by-hop headers dropped, backend headers added, pooled keep-alive client with a per-host
//! connection cap, retries on connection failures only, header and whole-request timeouts, body limits that never
//! buffer past the service's `max_body_size_bytes`.

use std::time::Instant;

use axum::body::Bytes;
use axum::http::HeaderMap;
use http_body_util::BodyExt as _;

use super::Relayer;
use super::error::RelayError;
use super::routes::{Backend, Service};
use crate::protocol::wire::{HttpHeader, PoktHttpRequest, PoktHttpResponse};

impl Relayer {
    pub(super) async fn forward(
        &self,
        service: &Service,
        backend: &Backend,
        payload: PoktHttpRequest,
    ) -> Result<PoktHttpResponse, RelayError> {
        let started = Instant::now();
        let result = tokio::time::timeout(service.request_timeout, self.forward_inner(service, backend, payload))
            .await
            .unwrap_or(Err(RelayError::BackendTimeout(service.request_timeout)));
        let (outcome, status) = match &result {
            Ok(r) if r.status_code >= 500 => ("5xx", r.status_code.to_string()),
            Ok(r) => ("ok", r.status_code.to_string()),
            Err(e) => (e.code().1, String::new()),
        };
        self.metrics
            .backend_requests
            .with_label_values(&[&service.id, outcome, &status])
            .inc();
        self.metrics
            .backend_latency
            .with_label_values(&[&service.id, outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn forward_inner(
        &self,
        service: &Service,
        backend: &Backend,
        payload: PoktHttpRequest,
    ) -> Result<PoktHttpResponse, RelayError> {
        let path = if payload.url.is_empty() || payload.url == "/" {
            String::new()
        } else if payload.url.starts_with('/') {
            payload.url.clone()
        } else {
            format!("/{}", payload.url)
        };
        let uri: http::Uri = format!("{}{}", backend.url.trim_end_matches('/'), path)
            .parse()
            .map_err(|e| RelayError::Malformed(format!("payload url {:?}: {e}", payload.url)))?;
        let method = if payload.method.is_empty() {
            http::Method::POST
        } else {
            http::Method::from_bytes(payload.method.as_bytes())
                .map_err(|e| RelayError::Malformed(format!("payload method: {e}")))?
        };
        let mut headers = HeaderMap::with_capacity(payload.header.len() + backend.headers.len());
        for (name, header) in &payload.header {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| RelayError::Malformed(format!("payload header {name:?}: {e}")))?;
            if is_hop_by_hop(&name) {
                continue;
            }
            for value in &header.values {
                let value = http::HeaderValue::from_str(value)
                    .map_err(|e| RelayError::Malformed(format!("payload header {name}: {e}")))?;
                headers.append(name.clone(), value);
            }
        }
        for (name, value) in &backend.headers {
            headers.insert(name.clone(), value.clone());
        }
        let body = Bytes::from(payload.body_bz);
        let _permit = backend
            .permits
            .acquire()
            .await
            .map_err(|_| RelayError::Backend("backend connection pool closed".into()))?;
        let mut attempt = 0;
        let response = loop {
            let mut request = http::Request::new(http_body_util::Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            match tokio::time::timeout(service.response_header_timeout, backend.client.request(request)).await {
                Err(_) => return Err(RelayError::BackendTimeout(service.response_header_timeout)),
                Ok(Ok(response)) => break response,
                Ok(Err(e)) if e.is_connect() && attempt < backend.max_retries => attempt += 1,
                Ok(Err(e)) => return Err(RelayError::Backend(error_chain(&e))),
            }
        };
        let status = response.status().as_u16();
        let limit = service.max_body_bytes;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(RelayError::ResponseTooLarge { limit });
        }
        let mut header = std::collections::BTreeMap::new();
        for (name, value) in response.headers() {
            let entry = header.entry(name.as_str().to_string()).or_insert_with(|| HttpHeader {
                key: name.as_str().to_string(),
                values: Vec::new(),
            });
            entry
                .values
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let body = match http_body_util::Limited::new(response.into_body(), limit)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(RelayError::ResponseTooLarge { limit });
            }
            Err(e) => return Err(RelayError::Backend(format!("response body: {e}"))),
        };
        Ok(PoktHttpResponse {
            status_code: u32::from(status),
            header,
            body_bz: body.to_vec(),
        })
    }
}

fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header::*;
    [
        HOST,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        CONNECTION,
        UPGRADE,
        TE,
        TRAILER,
        PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
