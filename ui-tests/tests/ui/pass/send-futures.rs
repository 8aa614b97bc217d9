// A seam trait's methods return `Send` futures: a handler generic over the trait can spawn its
// calls, and a fake implements the trait with plain `async fn`.

#[derive(Debug, serde::Deserialize)]
pub struct User {
    pub id: u64,
}

#[stitch::seam(base_url = "https://api.example.com")]
pub trait Acme {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: u64) -> stitch::Result<User>;

    #[stitch(delete, path = "/users/{id}")]
    async fn remove(&self, id: u64, #[header("x-reason")] reason: &str) -> stitch::Result<()>;
}

#[derive(Clone)]
pub struct Fake;

impl Acme for Fake {
    async fn user(&self, id: u64) -> stitch::Result<User> {
        Ok(User { id })
    }

    async fn remove(&self, _id: u64, _reason: &str) -> stitch::Result<()> {
        Ok(())
    }
}

pub fn handler<A: Acme + Clone + Send + Sync + 'static>(api: A) {
    drop(tokio::spawn(async move {
        let user = api.user(7).await?;
        api.remove(user.id, "test").await
    }));
}

fn assert_send<T: Send>(_: &T) {}

fn main() {
    let fake = Fake;
    assert_send(&fake.user(1));
    let _ = handler::<Fake>;
    let _ = handler::<AcmeClient>;
}
