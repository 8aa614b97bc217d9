//! A seam trait's methods return `Send` futures: code generic over the trait can `tokio::spawn`
//! its calls, with the generated client in production and a hand-written fake in tests.

use serde::Deserialize;
use serde_json::json;
use stitch::Runtime;
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Acme {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: u64) -> stitch::Result<User>;

    #[stitch(get, path = "/users")]
    async fn search(&self, #[query] name: &str) -> stitch::Result<Vec<User>>;
}

/// What a unit test writes instead of a server: plain `async fn`s, no attribute.
#[derive(Clone)]
struct FakeAcme;

impl Acme for FakeAcme {
    async fn user(&self, id: u64) -> stitch::Result<User> {
        // An await point, so the fake's future is a real state machine like the client's.
        tokio::task::yield_now().await;
        Ok(User {
            id,
            name: "fake".into(),
        })
    }

    async fn search(&self, name: &str) -> stitch::Result<Vec<User>> {
        Ok(vec![User {
            id: 1,
            name: name.to_owned(),
        }])
    }
}

/// The shape of axum/tower code: generic over the seam, spawning onto a multi-threaded runtime.
async fn handler<A: Acme + Clone + Send + Sync + 'static>(api: A) -> (User, Vec<User>) {
    let one = tokio::spawn({
        let api = api.clone();
        async move { api.user(7).await }
    });
    // A borrowed argument: the future captures it and is still `Send`.
    let many = tokio::spawn(async move {
        let name = String::from("Ada");
        api.search(&name).await
    });
    (
        one.await.expect("join").expect("user"),
        many.await.expect("join").expect("search"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_handler_spawns_calls_on_a_fake() {
    let (user, found) = handler(FakeAcme).await;
    assert_eq!(
        user,
        User {
            id: 7,
            name: "fake".into()
        }
    );
    assert_eq!(found[0].name, "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_handler_spawns_calls_on_the_generated_client() {
    let up = Upstream::start(|seen| {
        if seen.path == "/users/7" {
            Reply::json(json!({"id": 7, "name": "Grace"}))
        } else {
            Reply::json(json!([{"id": 1, "name": seen.query.clone().unwrap_or_default()}]))
        }
    })
    .await;
    let runtime = Runtime::builder().base_url(up.url()).build().unwrap();
    let (user, found) = handler(AcmeClient::new(&runtime).unwrap()).await;
    assert_eq!(
        user,
        User {
            id: 7,
            name: "Grace".into()
        }
    );
    assert_eq!(found[0].name, "name=Ada");
    let paths: Vec<String> = up.seen().iter().map(|s| s.path.clone()).collect();
    assert!(paths.contains(&"/users/7".to_owned()), "{paths:?}");
    assert_eq!(up.hits(), 2);
}
