//! The decode of an L2 hit's bytes and the driver's claim of a warmed entry, shared by the
//! `fleet_cache` bench and the `l2probe` example (both measure a call against exactly this).

use stitch::store::RedisStore;
use stitch_tests::fleet::Redis;

/// The record decode of `cache/record.rs` (version, status, URL, headers, body), then the body
/// into the stitch's output type: what the pipeline does with the bytes of an L2 hit.
pub(crate) fn decode(data: bytes::Bytes) -> Option<serde_json::Value> {
    decode_as(data)
}

/// [`decode`] into any output type.
pub(crate) fn decode_as<T: serde::de::DeserializeOwned>(data: bytes::Bytes) -> Option<T> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut data = data;
    let take = |d: &mut bytes::Bytes, n: usize| (d.len() >= n).then(|| d.split_to(n));
    let take_bytes = |d: &mut bytes::Bytes| {
        let n = take(d, 4)?;
        let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
        take(d, n)
    };
    if take(&mut data, 1)?[0] != 1 {
        return None;
    }
    let status = take(&mut data, 2)?;
    let _status = reqwest::StatusCode::from_u16(u16::from_be_bytes([status[0], status[1]])).ok()?;
    let _url = reqwest::Url::parse(std::str::from_utf8(&take_bytes(&mut data)?).ok()?).ok()?;
    let count = take(&mut data, 4)?;
    let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name = HeaderName::from_bytes(&take_bytes(&mut data)?).ok()?;
        let value = HeaderValue::from_maybe_shared(take_bytes(&mut data)?).ok()?;
        headers.append(name, value);
    }
    let body = take_bytes(&mut data)?;
    serde_json::from_slice(&body).ok()
}

/// One `fill_claim` through the driver (a hit: the entries are warm), then the same decode.
pub(crate) async fn claim_and_decode(store: &RedisStore, keys: &[String; 3]) -> serde_json::Value {
    use stitch::store::{Claimed, FillClaim, FillKeys, OpId, Store};
    let keys = FillKeys {
        value: &keys[0],
        lease: &keys[1],
        generation: &keys[2],
    };
    let claim = FillClaim {
        holder: OpId::random(),
        lease_ttl_us: 3_000_000,
    };
    match store.fill_claim(keys, claim).await.unwrap() {
        Claimed::Hit { value, .. } => decode(value).unwrap(),
        _ => panic!("a warmed entry is a hit"),
    }
}

/// The fill keys (value, lease, generation: one hash tag) of every filled entry `redis` holds,
/// found by their value keys.
pub(crate) fn fill_keys(redis: &Redis) -> Vec<[String; 3]> {
    redis
        .cli(&["--scan", "--pattern", "*:v2"])
        .lines()
        .map(|k| {
            let stem = k.strip_suffix(":v2").expect("a value key");
            [k.to_owned(), format!("{stem}:l"), format!("{stem}:g")]
        })
        .collect()
}
