// A pin cuts a cycle at a type; on a field it would mean nothing, so it is refused.

#[derive(serde::Deserialize, stitch::Fingerprint)]
pub struct Book {
    #[fingerprint(version = "1")]
    pub title: String,
}

fn main() {}
