// Two types that hold each other would make a cycle of fingerprint constants; one of them must be
// pinned with `#[fingerprint(version = "...")]`.

#[derive(serde::Deserialize, stitch::Fingerprint)]
pub struct Author {
    pub books: Vec<Book>,
}

#[derive(serde::Deserialize, stitch::Fingerprint)]
pub struct Book {
    pub author: Option<Box<Author>>,
}

fn main() {
    let _ = <Book as stitch::Fingerprint>::FINGERPRINT;
}
