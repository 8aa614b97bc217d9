// A misspelt backoff curve (`"expo-jiter"`) is refused at the literal with the closest curve
// suggested and all three listed.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    retry(attempts = 3, backoff = "expo-jiter")
)]
async fn users() -> stitch::Result<String>;

fn main() {}
