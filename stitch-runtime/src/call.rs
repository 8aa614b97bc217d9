//! The one call pipeline every stitch runs, top to bottom:
//! resolve the request → send (within the timeout) → check the status → decode.
//! Later policies slot in between these steps (cache and coalescing before sending, throttle and
//! auth around each attempt); the generated code never changes.

use crate::endpoint::Endpoint;
use crate::error::{Error, Result, TimeoutBound};
use crate::http::request::{Prepared, RequestParts};
use crate::http::response::{Decode, RawResponse};
use crate::runtime::{ClientCore, Runtime};
use std::time::Instant;
use tracing::{field, Instrument};

/// Runs one stitch call.
#[doc(hidden)]
pub async fn call<D: Decode>(client: &ClientCore, request: RequestParts) -> Result<D::Output> {
    let endpoint = request.endpoint;
    let span = tracing::info_span!(
        "stitch",
        stitch = endpoint.name,
        method = endpoint.method.as_str(),
        url.template = endpoint.template,
        status = field::Empty,
        elapsed_ms = field::Empty,
    );
    let started = Instant::now();
    let outcome = run::<D>(client.runtime(), request)
        .instrument(span.clone())
        .await;
    span.record("elapsed_ms", started.elapsed().as_secs_f64() * 1e3);
    outcome
}

/// A free stitch's call, on the process-wide runtime.
#[doc(hidden)]
pub async fn call_global<D: Decode>(request: RequestParts) -> Result<D::Output> {
    call::<D>(crate::runtime::global()?, request).await
}

async fn run<D: Decode>(runtime: &Runtime, request: RequestParts) -> Result<D::Output> {
    let endpoint = request.endpoint;
    let prepared = request.prepare(runtime)?;
    let raw = match endpoint.timeout.or(runtime.timeout()) {
        None => send(runtime, endpoint, prepared).await?,
        Some(limit) => tokio::time::timeout(limit, send(runtime, endpoint, prepared))
            .await
            .map_err(|_| Error::Timeout {
                stitch: endpoint.name,
                bound: TimeoutBound::Total,
                after: limit,
            })??,
    };
    D::decode(endpoint, raw)
}

/// Sends the request and reads the whole body; a non-2xx status becomes [`Error::Status`].
async fn send(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    prepared: Prepared,
) -> Result<RawResponse> {
    let Prepared { url, headers, body } = prepared;
    let transport = |source: reqwest::Error, url: &url::Url| Error::Transport {
        stitch: endpoint.name,
        url: url.to_string(),
        source,
    };
    let mut builder = runtime
        .http_client()
        .request(endpoint.method.to_http(), url.clone())
        .headers(headers);
    if let Some(body) = body {
        builder = builder.body(body);
    }
    let response = builder.send().await.map_err(|e| transport(e, &url))?;
    let status = response.status();
    tracing::Span::current().record("status", status.as_u16());
    let headers = response.headers().clone();
    let final_url = response.url().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport(e, &final_url))?;
    if !status.is_success() {
        let limit = runtime.error_body_limit().min(body.len());
        return Err(Error::Status {
            stitch: endpoint.name,
            method: endpoint.method.as_str(),
            url: final_url.to_string(),
            status,
            headers,
            body: String::from_utf8_lossy(&body[..limit]).into_owned(),
        });
    }
    Ok(RawResponse {
        status,
        headers,
        url: final_url,
        body,
    })
}
