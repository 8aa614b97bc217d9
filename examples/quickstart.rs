//! Quickstart: a seam trait, its generated client, and a free stitch — run against an upstream this
//! example starts itself on loopback, so it works offline.
//!
//! Run with `cargo run -p stitch-examples --example quickstart`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // fields are read through `Debug`
struct User {
    id: u64,
    name: String,
}

#[derive(Debug, Serialize)]
struct NewUser<'a> {
    name: &'a str,
}

/// The API, declared once. `base_url` is a placeholder here: the runtime points it at the local
/// upstream below.
#[stitch::seam(base_url = "https://api.example.com", timeout = "5s")]
trait Acme {
    /// `GET /users/{id}`, returning the `data` field of the body.
    #[stitch(get, path = "/users/{id}", pick = "data")]
    async fn user(&self, id: u64) -> stitch::Result<User>;

    /// `GET /users?name=...&limit=...`
    #[stitch(get, path = "/users", pick = "data")]
    async fn search(
        &self,
        #[query] name: &str,
        #[query] limit: Option<u32>,
    ) -> stitch::Result<Vec<User>>;

    /// `POST /users` with a JSON body and a request-id header; status and headers come back too.
    #[stitch(post, path = "/users")]
    async fn create(
        &self,
        #[body] user: NewUser<'_>,
        #[header("x-request-id")] request_id: &str,
    ) -> stitch::Result<stitch::Response<User>>;
}

/// A free stitch: no trait, runs on the process-wide runtime.
#[stitch::stitch(get, path = "/health")]
async fn health() -> stitch::Result<String>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = local_upstream().await?;
    println!("embedded upstream listening on {upstream}");

    let runtime = stitch::Runtime::builder()
        .base_url(&upstream)
        .timeout(Duration::from_secs(10))
        .build()?;
    runtime.clone().install_global().ok();
    let acme = AcmeClient::new(&runtime)?;

    let user = acme.user(7).await?;
    println!("user(7)                 -> {user:?}");
    let found = acme.search("ad", Some(5)).await?;
    println!("search(\"ad\", Some(5))   -> {found:?}");
    let created = acme.create(NewUser { name: "Grace" }, "req-1").await?;
    println!(
        "create(Grace)           -> {} {:?} (location: {:?})",
        created.status(),
        created.value(),
        created.headers().get("location")
    );
    println!("health()                -> {:?}", health().await?);
    match acme.user(404).await {
        Err(err) => println!("user(404)               -> error: {err}"),
        Ok(user) => println!("user(404)               -> unexpected {user:?}"),
    }

    println!("\noperations of AcmeClient:");
    for endpoint in AcmeClient::ENDPOINTS {
        let op = endpoint.describe();
        println!(
            "  {:<6} {:<14} {}",
            op.method.as_str(),
            op.template,
            op.name
        );
    }
    Ok(())
}

/// A tiny in-process API standing in for `https://api.example.com`.
async fn local_upstream() -> std::io::Result<String> {
    use axum::extract::{Path, Query};
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Json;
    use serde_json::{json, Value};
    use std::collections::HashMap;

    let app = axum::Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                if id == 404 {
                    (
                        StatusCode::NOT_FOUND,
                        Json(json!({"error": "no such user"})),
                    )
                } else {
                    (
                        StatusCode::OK,
                        Json(json!({"data": {"id": id, "name": "Ada"}})),
                    )
                }
            }),
        )
        .route(
            "/users",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let name = q.get("name").cloned().unwrap_or_default();
                Json(json!({"data": [{"id": 1, "name": format!("{name}a Lovelace")}]}))
            })
            .post(|Json(body): Json<Value>| async move {
                (
                    StatusCode::CREATED,
                    [("location", "/users/8")],
                    Json(json!({"id": 8, "name": body["name"]})),
                )
            }),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}
