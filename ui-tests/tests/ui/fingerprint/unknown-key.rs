#[derive(serde::Deserialize, stitch::Fingerprint)]
#[fingerprint(revision = "1")]
pub struct Author {
    pub name: String,
}

fn main() {}
