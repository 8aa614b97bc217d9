// Rates are parsed at compile time: a window with an unknown unit (`"2/fortnight"`) is refused
// at the literal, showing the accepted form and units.

#[stitch::stitch(get, url = "https://api.example.com/users", throttle = "2/fortnight")]
async fn users() -> stitch::Result<String>;

fn main() {}
