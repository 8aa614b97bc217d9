#[derive(serde::Deserialize, stitch::Fingerprint)]
#[fingerprint(version = "1", version = "2")]
pub struct Author {
    pub name: String,
}

fn main() {}
