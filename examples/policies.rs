//! Policies on one seam: a read-through cache with coalescing, a throttle, and retries — against
//! a local upstream that counts its requests and fails now and then, so it runs offline.
//!
//! Run with `cargo run -p stitch-examples --example policies`.

use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch::Client;

#[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
#[allow(dead_code)] // fields are read through `Debug`
struct Rate {
    pair: String,
    value: f64,
}

#[stitch::seam(
    base_url = "https://rates.example.com",
    throttle(rate = "10/s", pool = "host")
)]
trait Rates {
    /// Cached for a minute per principal; concurrent identical calls share one request.
    #[stitch(get, path = "/rates/{pair}", cache = "1m")]
    async fn rate(&self, pair: &str) -> stitch::Result<Rate>;

    /// Retried on 503 with exponential backoff and jitter; every attempt is paced by the throttle.
    #[stitch(get, path = "/flaky/{pair}", retry(attempts = 4, on = [503], base = "20ms"))]
    async fn flaky(&self, pair: &str) -> stitch::Result<Rate>;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, requests) = local_upstream().await?;
    let runtime = stitch::Runtime::builder().base_url(&url).build()?;
    let rates = RatesClient::new(&runtime)?;

    let started = Instant::now();
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let rates = rates.clone();
            tokio::spawn(async move { rates.rate("EURUSD").await })
        })
        .collect();
    for call in calls {
        call.await??;
    }
    println!(
        "100 concurrent rate(EURUSD) calls -> {} upstream request(s) in {:?}",
        requests.load(Ordering::SeqCst),
        started.elapsed()
    );
    let again = rates.rate("EURUSD").await?;
    println!(
        "rate(EURUSD) again (cache hit)   -> {again:?}, upstream requests still {}",
        requests.load(Ordering::SeqCst)
    );
    let alice = rates.as_principal("alice").rate("EURUSD").await?;
    println!(
        "as alice (her own cache entry)   -> {alice:?}, upstream requests {}",
        requests.load(Ordering::SeqCst)
    );

    let started = Instant::now();
    for pair in ["GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "NZDUSD"] {
        rates.rate(pair).await?;
    }
    println!(
        "5 distinct pairs, paced at 10/s   -> {:?} (grants 100 ms apart)",
        started.elapsed()
    );

    let flaky = rates.flaky("EURUSD").await?;
    println!("flaky(EURUSD), 503 twice first    -> {flaky:?} after retries");
    Ok(())
}

/// A local stand-in for the rates API: `/rates/{pair}` answers after 50 ms; `/flaky/{pair}`
/// answers 503 twice, then 200.
async fn local_upstream() -> std::io::Result<(String, Arc<AtomicUsize>)> {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Json;
    use serde_json::json;

    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/rates/{pair}",
            get(move |Path(pair): Path<String>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Json(json!({"pair": pair, "value": 1.0842}))
                }
            }),
        )
        .route(
            "/flaky/{pair}",
            get(move |Path(pair): Path<String>| {
                let flaky_calls = flaky_calls.clone();
                async move {
                    if flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(StatusCode::SERVICE_UNAVAILABLE)
                    } else {
                        Ok(Json(json!({"pair": pair, "value": 1.0842})))
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), requests))
}
