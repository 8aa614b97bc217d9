//! The one call pipeline every stitch runs, top to bottom:
//!
//! 1. derive the cache key (cached stitches only) — [`crate::cache::key`]
//! 2. in-process tier, then the shared store — hit: done, nothing sent
//! 3. join or lead the in-flight request for the key — [`crate::cache::coalesce`]
//! 4. resolve the request, send it within the timeout, check the status — [`crate::http`]
//! 5. decode, then store (only 2xx responses that decoded)
//!
//! Throttle and auth slot in around step 4 (once per attempt); the generated code never changes.

use crate::cache::coalesce::Role;
use crate::cache::key::{self, CacheKey};
use crate::cache::local::{StitchCache, Value};
use crate::cache::{self, CachePolicy};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result, TimeoutBound};
use crate::http::request::{Prepared, RequestParts};
use crate::http::response::{Decode, RawResponse};
use crate::resilience::circuit::{self, Transition};
use crate::runtime::{ClientCore, Runtime};
use crate::store::record;
use crate::throttle::limiter::Acquired;
use std::sync::Arc;
use std::time::Instant;
use tracing::{field, Instrument};

fn span(endpoint: &Endpoint) -> tracing::Span {
    tracing::info_span!(
        "stitch",
        stitch = endpoint.name,
        method = endpoint.method.as_str(),
        url.template = endpoint.template,
        cache = field::Empty,
        throttle_wait_ms = field::Empty,
        attempts = field::Empty,
        backoff_ms = field::Empty,
        circuit = field::Empty,
        status = field::Empty,
        elapsed_ms = field::Empty,
    )
}

/// Runs one call of an uncached stitch.
#[doc(hidden)]
pub async fn call<D: Decode>(client: &ClientCore, request: RequestParts) -> Result<D::Output> {
    if cache::invalidating() {
        return Err(invalidation_only(request.endpoint));
    }
    let request_endpoint = request.endpoint;
    let run = async {
        let raw = fetch(client.runtime(), request).await?;
        D::decode(raw.0, raw.1)
    };
    let span = span(request_endpoint);
    // No subscriber wants the span: skip its bookkeeping on the hot path.
    let started = (!span.is_disabled()).then(|| {
        span.record("cache", "bypass");
        Instant::now()
    });
    let outcome = run.instrument(span.clone()).await;
    if let Some(started) = started {
        span.record("elapsed_ms", started.elapsed().as_secs_f64() * 1e3);
    }
    outcome
}

/// Runs one call of a cached stitch: read-through cache and coalescing around [`call`]'s steps.
#[doc(hidden)]
pub async fn call_cached<D>(client: &ClientCore, request: RequestParts) -> Result<D::Output>
where
    D: Decode,
    D::Output: crate::__private::Cacheable,
{
    let endpoint = request.endpoint;
    let policy = match &endpoint.cache {
        Some(p) if !endpoint.sensitive => p,
        _ => return call::<D>(client, request).await,
    };
    let runtime = client.runtime();
    let generation = runtime.local().generation();
    let derive = |local: &StitchCache| {
        let static_digest =
            local.static_digest(endpoint, || key::static_digest(endpoint, policy, runtime));
        key::derive(
            &static_digest,
            endpoint,
            policy,
            &request,
            runtime,
            client.principal(),
            (generation, local.generation()),
        )
    };
    // The hit path: no reference count, no span bookkeeping unless a subscriber wants it.
    if !cache::invalidating() {
        let peeked = runtime.local().peek(endpoint.name, |local| {
            let key = derive(local);
            (key, local.get(&key).and_then(|v| typed::<D>(&v)))
        });
        if let Some((_, Some(value))) = peeked {
            let span = span(endpoint);
            if !span.is_disabled() {
                span.record("cache", "hit");
            }
            return Ok(value);
        }
    }
    let local = runtime.local().stitch(endpoint.name, policy);
    let key = derive(&local);
    if cache::invalidating() {
        let mut existed = local.remove(&key);
        if let Some(store) = runtime.store() {
            existed |= store.delete(&key.store_key()).await.unwrap_or(false);
        }
        cache::mark_invalidated(existed);
        return Err(invalidation_only(endpoint));
    }

    // The span bookkeeping is inline here and in `call` rather than in a shared async helper: one
    // more async layer moves the whole call future (measured: ~4 K instructions per call).
    let span = span(endpoint);
    let started = (!span.is_disabled()).then(Instant::now);
    let outcome = read_through::<D>(runtime, request, key, local, policy)
        .instrument(span.clone())
        .await;
    if let Some(started) = started {
        span.record("elapsed_ms", started.elapsed().as_secs_f64() * 1e3);
    }
    outcome
}

async fn read_through<D>(
    runtime: &Runtime,
    request: RequestParts,
    key: CacheKey,
    local: Arc<StitchCache>,
    policy: &'static CachePolicy,
) -> Result<D::Output>
where
    D: Decode,
    D::Output: crate::__private::Cacheable,
{
    let endpoint = request.endpoint;
    let span = tracing::Span::current();
    if let Some(value) = local.get(&key).and_then(|v| typed::<D>(&v)) {
        span.record("cache", "hit");
        return Ok(value);
    }
    if let Some(value) = from_store::<D>(runtime, endpoint, key, &local, policy).await {
        span.record("cache", "hit");
        return Ok(value);
    }
    let stored_local = local.clone();
    let fetch_store = {
        let runtime = runtime.clone();
        move || fetch_and_store::<D>(runtime, request, key, local, policy).instrument(span)
    };
    let (outcome, role) = if policy.coalesce && tokio::runtime::Handle::try_current().is_ok() {
        let stored = || stored_local.get(&key);
        runtime.flights().run(key, stored, fetch_store).await
    } else {
        (fetch_store().await, Role::Leader)
    };
    tracing::Span::current().record(
        "cache",
        match role {
            Role::Leader => "miss",
            Role::Follower => "coalesced",
            Role::Stored => "hit",
        },
    );

    // A value of another type under the same key (two stitches sharing a name and shape) is a
    // miss in spirit; report it rather than panic.
    typed::<D>(&outcome?).ok_or_else(|| Error::Config {
        stitch: endpoint.name,
        reason:
            "two stitches share this name but return different types; give one a distinct `name`"
                .into(),
    })
}

fn typed<D: Decode>(value: &Value) -> Option<D::Output>
where
    D::Output: Clone,
{
    value.downcast_ref::<D::Output>().cloned()
}

/// A shared-store hit, decoded into this process's type and kept in the in-process tier.
async fn from_store<D: Decode>(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    key: CacheKey,
    local: &StitchCache,
    policy: &CachePolicy,
) -> Option<D::Output>
where
    D::Output: crate::__private::Cacheable,
{
    let store = runtime.store()?;
    let bytes = match store.get(&key.store_key()).await {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(stitch = endpoint.name, error = %e, "cache store read failed; treating as a miss");
            return None;
        }
    };
    let raw = record::decode(bytes)?;
    let value = D::decode(endpoint, raw).ok()?;
    local.insert(key, Arc::new(value.clone()), policy);
    Some(value)
}

/// The leader's work: fetch, decode, then store in both tiers. Owned (`'static`) so it can run as
/// its own task under coalescing.
async fn fetch_and_store<D: Decode>(
    runtime: Runtime,
    request: RequestParts,
    key: CacheKey,
    local: Arc<StitchCache>,
    policy: &'static CachePolicy,
) -> Result<Value>
where
    D::Output: Sync,
{
    let (endpoint, raw) = fetch(&runtime, request).await?;
    let stored = runtime.store().map(|_| record::encode(&raw));
    let value: Value = Arc::new(D::decode(endpoint, raw)?);
    local.insert(key, value.clone(), policy);
    if let (Some(store), Some(bytes)) = (runtime.store(), stored) {
        if let Err(e) = store.set(&key.store_key(), bytes, policy.ttl).await {
            tracing::warn!(stitch = endpoint.name, error = %e, "cache store write failed");
        }
    }
    Ok(value)
}

/// A free stitch's call, on the process-wide runtime.
#[doc(hidden)]
pub async fn call_global<D: Decode>(request: RequestParts) -> Result<D::Output> {
    call::<D>(crate::runtime::global()?, request).await
}

/// A cached free stitch's call, on the process-wide runtime.
#[doc(hidden)]
pub async fn call_global_cached<D>(request: RequestParts) -> Result<D::Output>
where
    D: Decode,
    D::Output: crate::__private::Cacheable,
{
    call_cached::<D>(crate::runtime::global()?, request).await
}

fn invalidation_only(endpoint: &'static Endpoint) -> Error {
    Error::Config {
        stitch: endpoint.name,
        reason: "called inside `stitch::invalidate`: the entry was removed and nothing was sent"
            .into(),
    }
}

/// Resolves the request, then runs its attempts within the call's total timeout: the circuit
/// admits the call (or it fails fast), each attempt acquires the throttle, sends within the
/// per-attempt timeout and reads the body; retryable failures back off and try again.
async fn fetch(
    runtime: &Runtime,
    request: RequestParts,
) -> Result<(&'static Endpoint, RawResponse)> {
    let endpoint = request.endpoint;
    let prepared = request.prepare(runtime)?;
    let total = endpoint.timeout.or(runtime.timeout());
    let deadline = total.map(|t| tokio::time::Instant::now() + t);
    let admission = match &endpoint.circuit {
        Some(policy) => {
            shared_circuit(runtime, endpoint).await?;
            Some(runtime.circuits().admit(endpoint.name, policy)?)
        }
        None => None,
    };
    let attempts = attempts(runtime, endpoint, prepared, deadline);
    let outcome = match (deadline, total) {
        // Boxed so the common future stays small (the two arms would not share their space).
        (Some(deadline), Some(total)) => Box::pin(tokio::time::timeout_at(deadline, attempts))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    stitch: endpoint.name,
                    bound: TimeoutBound::Total,
                    after: total,
                })
            }),
        _ => attempts.await,
    };
    if let Some(admission) = admission {
        let transition = admission.report(&outcome);
        publish_circuit(runtime, endpoint, transition).await;
    }
    Ok((endpoint, outcome?))
}

/// With a shared store: fails fast while another runtime has the circuit open. A store error
/// admits the call (an outage of the store must not stop the upstream calls).
async fn shared_circuit(runtime: &Runtime, endpoint: &'static Endpoint) -> Result<()> {
    let Some(store) = runtime.store() else {
        return Ok(());
    };
    let Ok(Some(until)) = store.get(&circuit::store_key(endpoint.name)).await else {
        return Ok(());
    };
    let until_ms = std::str::from_utf8(&until)
        .ok()
        .and_then(|t| t.parse::<u64>().ok());
    let now_ms = unix_ms();
    match until_ms {
        Some(until) if until > now_ms => Err(Error::CircuitOpen {
            stitch: endpoint.name,
            retry_in: std::time::Duration::from_millis(until - now_ms),
        }),
        _ => Ok(()),
    }
}

/// Tells the other runtimes on the store that this circuit opened or closed.
async fn publish_circuit(runtime: &Runtime, endpoint: &'static Endpoint, transition: Transition) {
    let Some(store) = runtime.store() else { return };
    let key = circuit::store_key(endpoint.name);
    let result = match transition {
        Transition::Unchanged => return,
        Transition::Opened(cooldown) => {
            let until = unix_ms() + cooldown.as_millis() as u64;
            store.set(&key, until.to_string().into(), cooldown).await
        }
        Transition::Closed => store.delete(&key).await.map(|_| ()),
    };
    if let Err(e) = result {
        tracing::warn!(stitch = endpoint.name, error = %e, "could not share the circuit state");
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The attempt loop: retries what the policy retries while attempts and the retry budget last,
/// waiting the backoff (or the upstream's `Retry-After`) in between; a `401` with an `auth`
/// provider refreshes it once and redoes the attempt without counting it.
async fn attempts(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    prepared: Prepared,
    deadline: Option<tokio::time::Instant>,
) -> Result<RawResponse> {
    let span = tracing::Span::current();
    if endpoint.retry.is_some() {
        runtime.retry_budgets().deposit(endpoint.name);
    }
    let mut attempt = 1u32;
    let mut refreshed = false;
    let mut spare = Some(prepared);
    loop {
        span.record("attempts", attempt);
        // Only a call that may run again keeps a copy of its request.
        let again = endpoint.retry.is_some_and(|p| attempt < p.attempts)
            || (runtime.auth().is_some() && !refreshed);
        let request = if again { spare.clone() } else { spare.take() };
        // The loop only comes back after an attempt that kept a copy.
        let Some(request) = request else {
            return Err(Error::Config {
                stitch: endpoint.name,
                reason: "internal: attempt without a request".into(),
            });
        };
        let error = match one_attempt(runtime, endpoint, request, deadline).await {
            Ok(raw) => return Ok(raw),
            Err(e) => e,
        };
        let unauthorized = error.status().is_some_and(|s| s.as_u16() == 401);
        if let (Some(auth), false, true) = (runtime.auth(), refreshed, unauthorized) {
            refreshed = true;
            auth.refresh().await?;
            continue;
        }
        let Some(policy) = &endpoint.retry else {
            return Err(error);
        };
        if attempt >= policy.attempts || !policy.retries(&error) {
            return Err(error);
        }
        let wait = match (policy.respect_retry_after, error.retry_after()) {
            (true, Some(after)) => after,
            _ => policy.delay(attempt + 1),
        };
        if let Some(deadline) = deadline {
            // A wait that outlives the budget cannot end in success: report now (the error carries
            // the upstream's Retry-After).
            if tokio::time::Instant::now() + wait >= deadline {
                return Err(error);
            }
        }
        if !runtime.retry_budgets().withdraw(endpoint.name) {
            tracing::debug!(stitch = endpoint.name, "retry budget exhausted");
            return Err(error);
        }
        tracing::debug!(
            stitch = endpoint.name,
            attempt,
            backoff_ms = wait.as_millis() as u64,
            error = %error,
            "retrying"
        );
        span.record("backoff_ms", wait.as_secs_f64() * 1e3);
        Box::pin(tokio::time::sleep(wait)).await;
        attempt += 1;
    }
}

/// One attempt: throttle (waits count against the budget), auth, send within the per-attempt
/// timeout, read the body; the throttle is released when the attempt ends, however it ends.
async fn one_attempt(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    mut prepared: Prepared,
    deadline: Option<tokio::time::Instant>,
) -> Result<RawResponse> {
    let _permit = if endpoint.throttles.is_empty() {
        None
    } else {
        let host = host_key(&prepared.url);
        // The uncontended grant needs no future; waits are boxed so unthrottled calls carry a
        // smaller future.
        let permit = match runtime.limiters().try_acquire(endpoint, &host, deadline)? {
            Acquired::Now(permit) => permit,
            Acquired::Later(later) => Box::pin(later.wait()).await,
            Acquired::Contended => {
                Box::pin(runtime.limiters().acquire(endpoint, &host, deadline)).await?
            }
        };
        tracing::Span::current().record("throttle_wait_ms", permit.waited.as_secs_f64() * 1e3);
        Some(permit)
    };
    if let Some(auth) = runtime.auth() {
        auth.apply(&mut prepared.headers).await?;
    }
    match endpoint.each {
        None => send(runtime, endpoint, prepared).await,
        Some(each) => Box::pin(tokio::time::timeout(
            each,
            send(runtime, endpoint, prepared),
        ))
        .await
        .unwrap_or(Err(Error::Timeout {
            stitch: endpoint.name,
            bound: TimeoutBound::Each,
            after: each,
        })),
    }
}

/// A body of unknown length, read chunk by chunk up to `limit` (`Err(None)`: over the limit).
async fn read_chunked(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<bytes::Bytes, Option<reqwest::Error>> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if body.len() + chunk.len() > limit {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `host:port` of a URL: the key of `pool = "host"` throttles.
fn host_key(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Sends the request and reads the whole body; a non-2xx status becomes [`Error::Status`].
async fn send(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    prepared: Prepared,
) -> Result<RawResponse> {
    let Prepared { url, headers, body } = prepared;
    let transport = |source: reqwest::Error| Error::Transport {
        stitch: endpoint.name,
        url: source
            .url()
            .map_or_else(|| endpoint.template.to_owned(), url::Url::to_string),
        source: Arc::new(source),
    };
    let mut builder = runtime
        .http_client()
        .request(endpoint.method.to_http(), url)
        .headers(headers);
    if let Some(body) = body {
        builder = builder.body(body);
    }
    let mut response = builder.send().await.map_err(transport)?;
    let status = response.status();
    tracing::Span::current().record("status", status.as_u16());
    // Moved, not cloned: the response is consumed by reading its body.
    let headers = std::mem::take(response.headers_mut());
    let final_url = response.url().clone();
    // Read here rather than in a helper `async fn`: each layer would keep its own copy of the
    // response in the call's future.
    let limit = runtime.max_response_bytes();
    let too_large = || Error::BodyTooLarge {
        stitch: endpoint.name,
        limit,
    };
    let body_error = |e: reqwest::Error| Error::Transport {
        stitch: endpoint.name,
        url: final_url.to_string(),
        source: Arc::new(e),
    };
    let body = match response.content_length() {
        Some(n) if n > limit as u64 => return Err(too_large()),
        // A declared length within the limit: hyper reads exactly that much, in one buffer.
        Some(_) => response.bytes().await.map_err(body_error)?,
        None => Box::pin(read_chunked(response, limit))
            .await
            .map_err(|e| e.map_or_else(too_large, body_error))?,
    };
    if let Some(statuses) = endpoint.delegate {
        if statuses.contains(&status.as_u16()) {
            return Err(Error::RateLimited {
                stitch: endpoint.name,
                status,
                retry_after: crate::resilience::retry_after(&headers),
            });
        }
    }
    if !status.is_success() {
        let limit = runtime.error_body_limit().min(body.len());
        return Err(Error::Status {
            stitch: endpoint.name,
            method: endpoint.method.as_str(),
            url: final_url.to_string(),
            status,
            headers: Box::new(headers),
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
