//! Invalidation and introspection by name: each stitch's descriptor is an associated constant of
//! the client (`AcmeClient::USER`), `stitch::invalidate` says whether an entry existed (also when
//! only the shared store held it), and `stitch::describe_table` prints aligned rows.

use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use stitch::store::MemoryStore;
use stitch::Runtime;
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct User {
    id: u64,
    n: usize,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Acme {
    #[stitch(get, path = "/users/{id}", cache = "1m")]
    async fn user(&self, id: u64) -> stitch::Result<User>;

    #[stitch(get, path = "/teams/{id}", cache = "1m", timeout = "2s")]
    async fn team(&self, id: u64) -> stitch::Result<User>;

    #[stitch(post, path = "/users")]
    async fn r#type(
        &self,
        #[query("dry-run")] dry_run: bool,
        #[header("x-request-id")] request_id: &str,
    ) -> stitch::Result<()>;
}

async fn counting() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |_| {
        let n = n.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(json!({"id": 1, "n": n}))
    })
    .await
}

#[test]
fn each_stitch_has_a_named_descriptor() {
    assert_eq!(AcmeClient::USER.name(), "introspection::Acme::user");
    assert_eq!(AcmeClient::TEAM.template(), "/teams/{id}");
    assert_eq!(AcmeClient::TYPE.method(), stitch::Method::Post);
    // The named constant is the very descriptor the client uses (the runtime keys state by it).
    assert!(std::ptr::eq(AcmeClient::TEAM, AcmeClient::ENDPOINTS[1]));
}

#[tokio::test]
async fn invalidating_by_name_reaches_only_that_stitch() {
    let up = counting().await;
    let runtime = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = AcmeClient::new(&runtime).unwrap();
    let user = api.user(1).await.unwrap();
    let team = api.team(1).await.unwrap();
    runtime.invalidate_stitch(AcmeClient::USER);
    assert_ne!(api.user(1).await.unwrap(), user, "refetched");
    assert_eq!(api.team(1).await.unwrap(), team, "still cached");
    assert_eq!(up.hits(), 3);
    // Invalidating an uncached stitch by name is harmless; its calls go upstream as always.
    runtime.invalidate_stitch(AcmeClient::TYPE);
    api.r#type(true, "req-1").await.unwrap();
    assert_eq!(up.hits(), 4);
}

#[tokio::test]
async fn invalidate_reports_an_entry_held_only_by_the_shared_store() {
    let up = counting().await;
    let store = MemoryStore::default();
    let build = || {
        Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .build()
            .unwrap()
    };
    let writer = AcmeClient::new(&build()).unwrap();
    let other = AcmeClient::new(&build()).unwrap();
    writer.user(1).await.unwrap();
    assert!(
        stitch::invalidate(other.user(1)).await,
        "this process never held it; the store did"
    );
    assert!(
        !stitch::invalidate(other.user(1)).await,
        "and now nobody does"
    );
    other.user(1).await.unwrap();
    assert_eq!(up.hits(), 2, "the entry was really gone");
}

#[test]
fn describe_table_prints_aligned_rows() {
    let table = stitch::describe_table(AcmeClient::ENDPOINTS).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("STITCH"), "{table}");
    // Every column starts at the same offset on every row.
    for column in ["METHOD", "TEMPLATE", "ARGUMENTS"] {
        let at = lines[0].find(column).unwrap();
        for line in &lines[1..] {
            assert_eq!(
                &line[at - 2..at],
                "  ",
                "column {column} misaligned:\n{table}"
            );
            assert_ne!(
                &line[at..at + 1],
                " ",
                "column {column} misaligned:\n{table}"
            );
        }
    }
    assert!(lines.iter().all(|l| !l.ends_with(' ')), "{table}");
    assert!(
        lines[1].starts_with("introspection::Acme::user  "),
        "{table}"
    );
    assert!(lines[2].contains("timeout(2000ms)"), "{table}");
    assert!(
        lines[3].contains("dry_run:query(dry-run) request_id:header(x-request-id)"),
        "{table}"
    );
    let collected: stitch::OperationTable = AcmeClient::ENDPOINTS[..1]
        .iter()
        .map(|e| e.describe())
        .collect();
    assert_eq!(collected.operations().len(), 1);
    assert_eq!(collected.to_string().lines().count(), 2);
}
