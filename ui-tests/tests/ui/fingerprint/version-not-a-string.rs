#[derive(serde::Deserialize, stitch::Fingerprint)]
#[fingerprint(version = 2)]
pub struct Author {
    pub name: String,
}

fn main() {}
