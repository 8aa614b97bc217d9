#[derive(serde::Deserialize, stitch::Fingerprint)]
#[fingerprint(version = " ")]
pub struct Author {
    pub name: String,
}

fn main() {}
