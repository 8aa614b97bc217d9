//! Added latency per call of each auth strategy over the same call unauthenticated.
//!
//! One in-process axum upstream on loopback answers `GET /r` with a small JSON body whatever the
//! credentials, `POST /login` with a `Set-Cookie`, and `POST /token` with a token living an hour,
//! so after the first call every strategy runs from what it holds in the process: bearer, API key
//! (header and query), basic, OAuth2 client credentials (the cached token), and a cookie session
//! (replayed from the process, no store round trip).
//!
//! Two rows calibrate the others: `control_unauthenticated` pairs two clients of the same
//! unauthenticated stitch (A/A: how far from 1 the method itself strays), and
//! `bearer_vs_same_header` (and `api_key_header_vs_same_header`) pairs the strategy with a runtime
//! sending the same header as a plain default header (what the strategy adds over the bytes).
//!
//! Group `auth` has one bench per strategy. Every sample alternates a call of that strategy with
//! a call of the same stitch without auth (`none`, `iter_custom`) and times each, so the ratio
//! `strategy / none` of a sample is measured under the same load at the same moment; the bench
//! reports the strategy's side to criterion and prints the median of the per-sample ratios.
//!
//! ```text
//! cargo bench -p stitch-benches --bench auth
//! ```

use axum::routing::{get, post};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use stitch::auth::{ApiKey, Basic, Bearer, ClientCredentials, CookieSession, LoginRequest};

macro_rules! seam {
    ($trait:ident, $client:ident, $auth:literal) => {
        #[stitch::seam(base_url = "http://placeholder.invalid", auth = $auth)]
        trait $trait {
            #[stitch(get, path = "/r")]
            async fn r(&self) -> stitch::Result<serde_json::Value>;
        }
    };
}

seam!(NoneApi, NoneApiClient, "none");
seam!(ControlApi, ControlApiClient, "none");
seam!(BearerApi, BearerApiClient, "bearer");
seam!(HeaderApi, HeaderApiClient, "header-key");
seam!(QueryApi, QueryApiClient, "query-key");
seam!(BasicApi, BasicApiClient, "basic");
seam!(OauthApi, OauthApiClient, "oauth2");
seam!(SessionApi, SessionApiClient, "session");

async fn start_upstream() -> String {
    let app = axum::Router::new()
        .route(
            "/r",
            get(|| async { axum::Json(serde_json::json!({ "id": 7, "name": "Ada" })) }),
        )
        .route(
            "/login",
            post(|| async { ([("set-cookie", "SID=s-123; Path=/; HttpOnly")], "ok") }),
        )
        .route(
            "/token",
            post(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    format!("http://{addr}")
}

const SAMPLES: usize = 60;

type Call<'a> = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> + Sync + 'a,
>;

fn auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let base = rt.block_on(start_upstream());
    let login = format!("{base}/login");
    let runtime = stitch::Runtime::builder()
        .base_url(base.clone())
        .auth_strategy("bearer", Bearer::new("t-123"))
        .auth_strategy("header-key", ApiKey::header("x-api-key", "k-123"))
        .auth_strategy("query-key", ApiKey::query("api_key", "k-123"))
        .auth_strategy("basic", Basic::new("ada", "pw-123"))
        .auth_strategy(
            "oauth2",
            ClientCredentials::new(format!("{base}/token"), "svc", "s-123"),
        )
        .auth_strategy(
            "session",
            CookieSession::new("app", move |_| {
                Ok(LoginRequest::post(login.clone())
                    .field("user", "ada")
                    .secret_field("password", "pw-123"))
            }),
        )
        .build()
        .expect("stitch runtime");
    let none = NoneApiClient::new(&runtime).expect("client");
    // The same bytes on the wire as the bearer strategy sends, as a plain default header of a
    // runtime without strategies: what the strategy itself adds, apart from the upstream and
    // the HTTP stack handling one header more.
    let plain_header = stitch::Runtime::builder()
        .base_url(base.clone())
        .default_header("authorization", "Bearer t-123")
        .build()
        .expect("stitch runtime");
    let plain_key = stitch::Runtime::builder()
        .base_url(base.clone())
        .default_header("x-api-key", "k-123")
        .build()
        .expect("stitch runtime");
    macro_rules! call {
        ($client:expr) => {{
            let client = $client;
            Box::new(move || {
                let client = client.clone();
                Box::pin(async move {
                    black_box(client.r().await.expect("call"));
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            }) as Call<'static>
        }};
    }
    let unauthenticated: Call<'static> = call!(none.clone());
    let same_header: Call<'static> = call!(NoneApiClient::new(&plain_header).unwrap());
    let same_key_header: Call<'static> = call!(NoneApiClient::new(&plain_key).unwrap());
    // (name, call, the call it is paired with)
    let strategies: Vec<(&str, Call<'static>, &Call<'static>)> = vec![
        // A/A: two clients of the same unauthenticated stitch, for the noise of the method.
        (
            "control_unauthenticated",
            call!(ControlApiClient::new(&runtime).unwrap()),
            &unauthenticated,
        ),
        (
            "bearer",
            call!(BearerApiClient::new(&runtime).unwrap()),
            &unauthenticated,
        ),
        (
            "bearer_vs_same_header",
            call!(BearerApiClient::new(&runtime).unwrap()),
            &same_header,
        ),
        (
            "api_key_header",
            call!(HeaderApiClient::new(&runtime).unwrap()),
            &unauthenticated,
        ),
        (
            "api_key_header_vs_same_header",
            call!(HeaderApiClient::new(&runtime).unwrap()),
            &same_key_header,
        ),
        (
            "api_key_query",
            call!(QueryApiClient::new(&runtime).unwrap()),
            &unauthenticated,
        ),
        (
            "basic",
            call!(BasicApiClient::new(&runtime).unwrap()),
            &unauthenticated,
        ),
        (
            "oauth2_cached_token",
            call!(OauthApiClient::new(&runtime).unwrap()),
            &unauthenticated,
        ),
        (
            "cookie_session_replay",
            call!(SessionApiClient::new(&runtime).unwrap()),
            &unauthenticated,
        ),
    ];
    // Warm every path (connection, token, login) before measuring.
    rt.block_on(async {
        unauthenticated().await;
        same_header().await;
        same_key_header().await;
        for (_, call, _) in &strategies {
            call().await;
        }
    });

    let mut group = c.benchmark_group("auth");
    group
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    let mut summary = Vec::new();
    for (name, call, baseline) in &strategies {
        let ratios: Mutex<Vec<f64>> = Mutex::default();
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (call, none, ratios) = (call, *baseline, &ratios);
                async move {
                    let (mut with, mut without) = (Duration::ZERO, Duration::ZERO);
                    for i in 0..iters {
                        let order = i % 2 == 0;
                        for first in [order, !order] {
                            let started = Instant::now();
                            if first {
                                call().await;
                                with += started.elapsed();
                            } else {
                                none().await;
                                without += started.elapsed();
                            }
                        }
                    }
                    ratios
                        .lock()
                        .expect("ratios")
                        .push(with.as_secs_f64() / without.as_secs_f64());
                    with
                }
            })
        });
        let mut ratios = ratios.into_inner().expect("ratios");
        let from = ratios.len().saturating_sub(SAMPLES);
        let mut measured = ratios.split_off(from);
        measured.sort_by(f64::total_cmp);
        if !measured.is_empty() {
            let median = measured[measured.len() / 2];
            let (lo, hi) = (
                measured[measured.len() / 4],
                measured[measured.len() * 3 / 4],
            );
            summary.push(format!(
                "{name:<24} {median:.3} (IQR {lo:.3}-{hi:.3}) × {}, {} paired samples",
                if std::ptr::eq(*baseline, &same_header)
                    || std::ptr::eq(*baseline, &same_key_header)
                {
                    "the same header without a strategy"
                } else {
                    "unauthenticated"
                },
                measured.len()
            ));
        }
    }
    group.finish();
    for line in summary {
        println!("auth/{line}");
    }
}

criterion_group!(benches, auth);
criterion_main!(benches);
