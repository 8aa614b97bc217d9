// Every form of the resilience keys compiles: `retry = N` and `retry(...)` with every key,
// `timeout = "..."` and `timeout(total, each)` on the seam and a method, `circuit(...)`, and
// `idempotency` alone or with `header`/`from`, on every write method.

#[derive(serde::Serialize)]
pub struct Order {
    pub sku: String,
}

#[stitch::seam(
    base_url = "https://shop.example.com",
    timeout(total = "10s", each = "2s")
)]
pub trait Shop {
    #[stitch(get, path = "/orders/{id}", retry = 3, timeout = "5s")]
    async fn order(&self, id: u64) -> stitch::Result<String>;

    #[stitch(
        post,
        path = "/orders",
        retry(
            attempts = 3,
            on = [429, 503],
            backoff = "expo-jitter",
            base = "100ms",
            max = "10s",
            respect_retry_after = false
        ),
        idempotency
    )]
    async fn create(&self, #[body] order: &Order) -> stitch::Result<()>;

    #[stitch(
        patch,
        path = "/orders/{order_id}",
        retry(attempts = 2, backoff = "fixed", base = "1s"),
        idempotency(header = "x-idem", from = "order_id")
    )]
    async fn amend(&self, order_id: u64, #[body] order: &Order) -> stitch::Result<()>;

    // `put` and `delete` are idempotent by definition: retry needs no key, one is still allowed.
    #[stitch(
        put,
        path = "/orders/{id}",
        retry(attempts = 4, backoff = "expo", max = "1s")
    )]
    async fn replace(&self, id: u64, #[body] order: &Order) -> stitch::Result<()>;

    #[stitch(delete, path = "/orders/{id}", retry = 2, idempotency(from = "id"))]
    async fn cancel(&self, id: u64) -> stitch::Result<()>;

    #[stitch(
        get,
        path = "/health",
        circuit(failures = 5, cooldown = "30s"),
        timeout(total = "3s")
    )]
    async fn health(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/slow", timeout(each = "1s"), retry(attempts = 1))]
    async fn slow(&self) -> stitch::Result<String>;
}

#[stitch::stitch(
    post,
    url = "https://pay.example.com/charges",
    retry = 1,
    timeout(total = "5s", each = "5s"),
    circuit(cooldown = "1m", failures = 1)
)]
pub async fn charge(#[body] order: &Order) -> stitch::Result<()>;

#[allow(dead_code)]
async fn use_them(shop: &ShopClient) -> stitch::Result<()> {
    let order = Order { sku: "x".into() };
    let _: String = shop.order(1).await?;
    shop.create(&order).await?;
    shop.amend(1, &order).await?;
    shop.replace(1, &order).await?;
    shop.cancel(1).await?;
    shop.health().await?;
    let _: String = shop.slow().await?;
    charge(&order).await
}

fn policy(e: &stitch::Endpoint, name: &str) -> Option<String> {
    e.describe()
        .policies
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.value)
}

fn main() {
    let e = ShopClient::ENDPOINTS;
    // A method's total overrides the seam's; the seam's `each` still applies.
    assert_eq!(policy(&e[0], "timeout").as_deref(), Some("5000ms"));
    assert_eq!(policy(&e[0], "timeout.each").as_deref(), Some("2000ms"));
    assert!(policy(&e[0], "retry").unwrap().starts_with("attempts=3"));
    let create = policy(&e[1], "retry").unwrap();
    assert!(create.contains("on=[429, 503]"), "{create}");
    assert!(create.contains("base=100ms max=10000ms"), "{create}");
    assert_eq!(
        policy(&e[1], "idempotency").as_deref(),
        Some("idempotency-key")
    );
    assert_eq!(policy(&e[2], "idempotency").as_deref(), Some("x-idem"));
    assert!(policy(&e[3], "idempotency").is_none());
    assert_eq!(
        policy(&e[5], "circuit").as_deref(),
        Some("failures=5 cooldown=30000ms")
    );
    assert_eq!(policy(&e[6], "timeout.each").as_deref(), Some("1000ms"));
    assert_eq!(
        policy(&charge::ENDPOINT, "circuit").as_deref(),
        Some("failures=1 cooldown=60000ms")
    );
}
