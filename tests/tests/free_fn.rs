//! Free stitches run on the process-wide runtime, installed once at start-up.

use serde::Deserialize;
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Deserialize)]
pub struct Item {
    id: u32,
    label: String,
}

/// Fetches an item.
#[stitch::stitch(get, path = "/items/{id}", pick = "item")]
pub async fn item(id: u32, #[query] lang: Option<&str>) -> stitch::Result<Item>;

#[stitch::stitch(post, path = "/items")]
async fn create(#[body] label: &str) -> stitch::Result<()>;

#[tokio::test]
async fn free_stitches_use_the_installed_global_runtime() {
    let up = Upstream::start(|seen| {
        Reply::json(
            serde_json::json!({"item": {"id": 3, "label": seen.query.clone().unwrap_or_default()}}),
        )
    })
    .await;
    let rt = stitch::Runtime::builder()
        .base_url(up.url())
        .build()
        .unwrap();
    rt.clone().install_global().unwrap();
    let again = rt.install_global();
    assert!(again.is_err(), "the global runtime is set once");

    let it = item(3, Some("cs")).await.unwrap();
    assert_eq!(it.id, 3);
    assert_eq!(it.label, "lang=cs");
    create("hello").await.unwrap();
    assert_eq!(up.seen()[1].body, "\"hello\"");
    assert_eq!(up.seen()[0].path, "/items/3");

    let op = item::ENDPOINT.describe();
    assert!(op.name.ends_with("free_fn::item"), "{}", op.name);
    assert_eq!(op.template, "/items/{id}");
}
