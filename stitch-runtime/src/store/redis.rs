//! The fleet store on Redis (feature `redis`): every verb of the vocabulary as one Lua script (or
//! one command), one round trip each, decided on the server's clock.
//!
//! - **Connections**: redis-rs `ConnectionManager` (reconnects in the background) or the cluster
//!   client; scripts are sent as `EVALSHA` and reloaded on `NOSCRIPT` (after a restart or a
//!   failover). Publish/subscribe uses a dedicated connection per subscription.
//! - **Time**: `TIME` inside the scripts, as integer microseconds (seconds × 10⁶ + µs; exact in
//!   Lua's doubles until the year 2255). Expiries of leases and GCRA state are store times, so
//!   clock skew between processes cannot shift a grant or an expiry.
//! - **Rate bound**: `reserve` is GCRA as in the in-process pacer. With
//!   `tolerance = burst × interval`, at most `burst + ⌈T / interval⌉` grants fall in any window of
//!   length `T` of **server** time, whatever the number of processes. After a failover to a replica
//!   that had not yet received the last writes, up to one more burst plus
//!   `rate × replication lag` can be admitted (Redis replication is asynchronous).
//! - **Cluster**: a script's keys are one key plus its idempotency marker
//!   ([`keys::companion`](super::keys::companion)), which share a hash slot, the keys of one
//!   fill ([`keys::FillKeySet`](super::keys::FillKeySet): one hash tag), or one budget's holders
//!   and GCRA state with the reservation's marker (`lease_reserve`: one hash tag), so no script
//!   is ever `CROSSSLOT`; stitch's own keys (`keys::KeyLayout`) carry one hash tag per concern.
//! - **Fills**: while a fill runs, its lease is held **in the value key itself**, as
//!   `<tag><holder>[:w]` (a reserved [`LEASE_TAG`] no stored value begins with; `:w` once a
//!   claimant found it busy) with a `PX` rounded up to the millisecond: Redis's own expiry ends
//!   it. So a claim needs no script: `fill_claim` is `PTTL`, `SET <lease> NX PX .. GET` and `GET`
//!   of the generation, pipelined (one round trip; the `SET` is the atomic claim: it answers the
//!   value, or takes the lease, or shows whose lease it is), and an L2 hit costs Redis three
//!   plain commands instead of a Lua call (measured: a hit's `EVALSHA` cost the server ~2.5 µs
//!   against 0.13 µs for a `GET`, and ~5 µs of its CPU per call in all). Only a claim that finds
//!   another holder's lease not yet marked as waited for (the first waiting instance), or its
//!   own lease (a retry, which refreshes it), runs the claim script too: a waiter's second round
//!   trip. A lease taken natively does not stretch the generation's expiry (`hold` in the
//!   scripts does): the first renewal, a third of the lease later, does; a generation that
//!   expired before that (an hour after its last invalidation) only makes the completion refuse
//!   to store. The key named `lease` in [`FillKeys`] is no longer written (an invalidation still
//!   deletes it). Servers before Redis 7.0 refuse `NX` with `GET`: the driver then claims with
//!   the script alone. The notifications of `fill_*` and `bump` are `PUBLISH`ed inside their
//!   script, atomically with the write (a channel is not a key: in a cluster it reaches every
//!   node).
//! - **Timeouts and retries**: every operation is bounded by the store's timeout
//!   ([`RedisStore::with_timeout`], default 200 ms) and fails with `StoreErrorKind::Timeout` past
//!   it; one shared deadline watches every operation in flight rather than a tokio timer each
//!   (`deadline`). A mutating verb whose outcome is unknown can be retried once with the same
//!   `OpId`: the scripts remember ids for [`RETRY_WINDOW`].
//! - **Pub/sub**: `PUBLISH` / `SUBSCRIBE` (global channels; in a cluster a message published on any
//!   node reaches subscribers on every node). A subscription whose connection drops reconnects
//!   (50 ms, doubling to 1 s) and, once subscribed again, yields `Event::Gap`. A `PING` every
//!   second with a 2 s deadline finds a half-open connection: while the store is reachable, a
//!   gap is reported at most about 3 s after the connection stopped delivering.

use super::deadline::{Deadlines, Elapsed};
use super::vocab::{circuit_ttl, FILL_GENERATION_KEEP, RETRY_WINDOW};
use super::{
    keys, Cas, CircuitEvent, CircuitPhase, CircuitReply, CircuitState, CircuitStep, Claimed,
    Decision, Event, Fill, FillClaim, FillKeys, Gcra, LeaseDecision, LeaseGrant, LeaseRequest,
    Notify, OpId, Reservation, Store, StoreError, StoreErrorKind, StoreFuture, Subscription, Verbs,
};
use super::{Admission, LeaseReservation};
use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a subscription's connection is checked (and it is given twice that to answer).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The default bound on one store operation.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

/// A [`Store`] on Redis or Redis Cluster. Clones share connections.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// For subscriptions (one connection each); in a cluster, a client of the first node.
    pubsub: redis::Client,
    timeout: Duration,
    /// Bounds every operation by `timeout` with one timer shared by all of them (see
    /// [`Deadlines`]).
    deadlines: Deadlines,
    scripts: Arc<Scripts>,
    /// Whether `fill_claim` starts with the native commands (cleared for good when the server
    /// refuses `SET .. NX .. GET`, before Redis 7.0: the script claims alone).
    claim_natively: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.conn, Conn::Cluster(_)))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisStore {
    /// Connects to one Redis server (`redis://host:port[/db]`, `rediss://` with TLS features).
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| map("connect", e))?;
        // stitch bounds every operation itself; the manager's own response timeout is off so
        // there is one timeout to reason about. Few, quick reconnect attempts: a refused
        // connection is reported as such within the connect bound, and a later command that
        // finds the connection still down triggers the next attempt (recovery needs no timer).
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(DEFAULT_TIMEOUT * 5))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let manager = bounded(
            "connect",
            DEFAULT_TIMEOUT * 5,
            client.get_connection_manager_with_config(config),
        )
        .await?;
        Ok(RedisStore::with_conn(Conn::Single(manager), client))
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each).
    pub async fn connect_cluster(urls: &[&str]) -> Result<RedisStore, StoreError> {
        let first = urls
            .first()
            .ok_or_else(|| StoreError::protocol("connect", "no cluster node given"))?;
        let pubsub = redis::Client::open(*first).map_err(|e| map("connect", e))?;
        let client = redis::cluster::ClusterClient::builder(urls.iter().copied())
            .connection_timeout(DEFAULT_TIMEOUT * 5)
            .build()
            .map_err(|e| map("connect", e))?;
        let conn = bounded(
            "connect",
            DEFAULT_TIMEOUT * 5,
            client.get_async_connection(),
        )
        .await?;
        Ok(RedisStore::with_conn(Conn::Cluster(conn), pubsub))
    }

    fn with_conn(conn: Conn, pubsub: redis::Client) -> RedisStore {
        RedisStore {
            conn,
            pubsub,
            timeout: DEFAULT_TIMEOUT,
            deadlines: Deadlines::new(DEFAULT_TIMEOUT),
            scripts: Arc::new(Scripts::new()),
            claim_natively: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Claims fills with the claim script alone, as the driver does with a server before Redis
    /// 7.0 (which refuses `SET .. NX .. GET`): for testing that path on a newer server.
    #[doc(hidden)]
    pub fn with_script_claims(mut self) -> RedisStore {
        self.claim_natively = Arc::new(AtomicBool::new(false));
        self
    }

    /// Bounds every operation by `timeout` (default 200 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> RedisStore {
        self.timeout = timeout;
        self.deadlines = Deadlines::new(timeout);
        self
    }

    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.conn.clone();
        self.bounded(op, inv.invoke_async(&mut conn)).await
    }

    /// `EVALSHA` of `script` with `keys` and `args` written straight into one command, loading
    /// the script on `NOSCRIPT`: the throttle verbs' path. `run` goes through redis-rs's
    /// `ScriptInvocation`, which copies every key and argument twice (into its vectors, then into
    /// the command) and takes arguments as byte strings formatted beforehand; on the acquire path
    /// those allocations were a measurable part of the cost (BENCHMARKS.md, "Fleet throttle on
    /// Redis").
    async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: impl FnOnce(&mut Cmd),
    ) -> Result<T, StoreError> {
        let mut cmd = Cmd::with_capacity(3 + keys.len() + 4, 160);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        args(&mut cmd);
        let mut conn = self.conn.clone();
        self.bounded(op, async move {
            match cmd.query_async(&mut conn).await {
                // After a restart or a failover the server no longer knows the script.
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    script.load_async(&mut conn).await?;
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// A fill claim in native commands, one round trip and no script (on a hit Redis does a
    /// `GET`'s work, not a Lua call's: BENCHMARKS.md, "Fleet cache on Redis"): the value key's
    /// `PTTL`, then `SET <lease> NX PX .. GET` on it (the claim itself, atomic: the value, or
    /// the lease taken, or whose lease it is), then the generation. The `PTTL` is read first so
    /// a hit's TTL is never longer than the value's own (a value written in between can only
    /// live longer). `None`: the script must finish the claim (another holder's lease not yet
    /// marked as waited for, the holder's own lease to refresh, or a command the server
    /// refused).
    async fn native_claim(
        &self,
        keys: FillKeys<'_>,
        claim: FillClaim,
    ) -> Result<Option<Claimed>, StoreError> {
        let holder = hex(claim.holder);
        let mut lease = [0u8; LEASE_TAG.len() + 32];
        lease[..LEASE_TAG.len()].copy_from_slice(LEASE_TAG);
        lease[LEASE_TAG.len()..].copy_from_slice(&holder);
        let lease_ms = claim.lease_ttl_us.div_ceil(1000).max(1);
        // Each command made at its final size: redis-rs grows a command's buffers as arguments
        // are added (callgrind: ~1 K instructions per claim in reallocations).
        let value_key = keys.value.len();
        let mut pttl = Cmd::with_capacity(2, 4 + value_key);
        pttl.arg("PTTL").arg(keys.value);
        let mut set = Cmd::with_capacity(7, 20 + value_key + lease.len() + 20);
        set.arg("SET")
            .arg(keys.value)
            .arg(&lease[..])
            .arg("NX")
            .arg("PX")
            .arg(lease_ms)
            .arg("GET");
        let mut generation = Cmd::with_capacity(2, 3 + keys.generation.len());
        generation.arg("GET").arg(keys.generation);
        let mut pipe = Pipeline::with_capacity(3);
        pipe.add_command(pttl)
            .add_command(set)
            .add_command(generation);
        let mut conn = self.conn.clone();
        let mut v: Vec<Value> = match self.deadlines.bound(pipe.query_async(&mut conn)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
                if e.to_string().to_ascii_lowercase().contains("syntax") {
                    // `NX` with `GET` needs Redis 7.0: claim with the script from now on.
                    self.claim_natively.store(false, Ordering::Relaxed);
                }
                return Ok(None);
            }
            Ok(Err(e)) => return Err(map("fill_claim", e)),
            Err(Elapsed) => return Err(StoreError::timeout("fill_claim", self.deadlines.limit())),
        };
        let bad =
            |v: &Vec<Value>| StoreError::protocol("fill_claim", format!("unexpected reply {v:?}"));
        let pttl = int_at("fill_claim", &v, 0)?;
        match v.get_mut(1) {
            Some(Value::Nil) => {
                let generation = match v.get(2) {
                    Some(Value::Nil) => 0,
                    Some(g) => redis::from_redis_value_ref::<u64>(g).map_err(|_| bad(&v))?,
                    None => return Err(bad(&v)),
                };
                Ok(Some(Claimed::Leader { generation }))
            }
            Some(Value::BulkString(b)) if !b.starts_with(LEASE_TAG) => {
                // A value without an expiry was not written by `fill_complete` (or was written
                // between the `PTTL` and the claim): reported as about to expire.
                let ttl_us = u64::try_from(pttl).map_or(1, |ms| ms.saturating_mul(1000).max(1));
                Ok(Some(Claimed::Hit {
                    // The reply's own buffer becomes the value: no copy.
                    value: Bytes::from(std::mem::take(b)),
                    ttl_us,
                }))
            }
            Some(Value::BulkString(b)) => {
                // Another holder's lease that a claimant already marked: busy until its expiry.
                let rest = &b[LEASE_TAG.len()..];
                let waited = rest.strip_suffix(b":w").filter(|h| *h != &holder[..]);
                // The `PTTL` was read just before the claim: of this lease, or, if the key
                // changed in between, of what was there before (a value's TTL can be long).
                // Never waited for past a lease TTL: an early re-check only claims again.
                Ok((waited.is_some() && pttl > 0).then(|| Claimed::Busy {
                    lease_ends_in_us: (pttl as u64)
                        .saturating_mul(1000)
                        .min(claim.lease_ttl_us.max(1)),
                }))
            }
            _ => Err(bad(&v)),
        }
    }

    /// A fill claim as one script ([`Scripts::fill_claim`]).
    async fn script_claim(
        &self,
        keys: FillKeys<'_>,
        claim: FillClaim,
    ) -> Result<Claimed, StoreError> {
        let mut v: Vec<Value> = self
            .eval(
                "fill_claim",
                &self.scripts.fill_claim,
                &[keys.value, keys.lease, keys.generation],
                |c| {
                    c.arg(&hex(claim.holder)[..])
                        .arg(claim.lease_ttl_us.max(1))
                        .arg(RETRY_MS);
                },
            )
            .await?;
        let bad = |v: &Vec<Value>| {
            StoreError::protocol("fill_claim", format!("unexpected script reply {v:?}"))
        };
        match int_at("fill_claim", &v, 0)? {
            0 => {
                // The reply's own buffer becomes the value: no copy.
                let value = match v.get_mut(1) {
                    Some(Value::BulkString(b)) => Some(std::mem::take(b)),
                    _ => None,
                };
                let Some(value) = value else {
                    return Err(bad(&v));
                };
                // A value without an expiry was not written by `fill_complete`: how long it
                // stays is unknown, so it is reported as about to expire.
                let pttl = int_at("fill_claim", &v, 2)?;
                let ttl_us = u64::try_from(pttl).map_or(1, |ms| ms.saturating_mul(1000).max(1));
                Ok(Claimed::Hit {
                    value: Bytes::from(value),
                    ttl_us,
                })
            }
            1 => {
                let generation = v
                    .get(1)
                    .and_then(|g| redis::from_redis_value_ref::<u64>(g).ok())
                    .ok_or_else(|| bad(&v))?;
                Ok(Claimed::Leader { generation })
            }
            2 => Ok(Claimed::Busy {
                lease_ends_in_us: (int_at("fill_claim", &v, 1)?.max(1)) as u64,
            }),
            _ => Err(bad(&v)),
        }
    }

    async fn cmd<T: FromRedisValue>(&self, op: &'static str, cmd: Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(op, cmd.query_async(&mut conn)).await
    }

    /// `fut` bounded by the store's timeout, on the shared deadline.
    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match self.deadlines.bound(fut).await {
            Ok(r) => r.map_err(|e| map(op, e)),
            Err(Elapsed) => Err(StoreError::timeout(op, self.deadlines.limit())),
        }
    }
}

async fn bounded<T>(
    op: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| map(op, e)),
        Err(_) => Err(StoreError::timeout(op, limit)),
    }
}

fn map(op: &'static str, e: RedisError) -> StoreError {
    let kind = if e.is_timeout() {
        StoreErrorKind::Timeout
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Protocol
    };
    StoreError::new(op, kind, e.to_string()).with_source(e)
}

/// Milliseconds for `PX`, rounded up so that state never expires before its time.
fn ms(d: Duration) -> Vec<u8> {
    d.as_micros().div_ceil(1000).max(1).to_string().into_bytes()
}

fn num(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn retry_ms() -> Vec<u8> {
    ms(RETRY_WINDOW)
}

/// [`RETRY_WINDOW`] in milliseconds, rounded up (as [`ms`]).
const RETRY_MS: u64 =
    RETRY_WINDOW.as_millis() as u64 + (RETRY_WINDOW.subsec_nanos() % 1_000_000 != 0) as u64;

/// An id as its 32 lowercase hex digits (its `Display` form), without allocating.
fn hex(id: OpId) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let v = id.as_u128();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

fn int_at(op: &'static str, v: &[Value], i: usize) -> Result<i64, StoreError> {
    v.get(i)
        .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
        .ok_or_else(|| StoreError::protocol(op, format!("unexpected script reply {v:?}")))
}

/// The scripts. Each reads `TIME` (when it needs a clock) and writes only its `KEYS`, which share
/// one hash slot. Numbers cross the Lua boundary as decimal strings (`%d`), never as floats
/// formatted by `tostring`.
struct Scripts {
    increment: Script,
    set_if_absent: Script,
    compare_and_set: Script,
    reserve: Script,
    lease_acquire: Script,
    lease_renew: Script,
    lease_release: Script,
    lease_reserve: Script,
    circuit: Script,
    fill_claim: Script,
    fill_renew: Script,
    fill_complete: Script,
    fill_abandon: Script,
    fill_invalidate: Script,
    fill_invalidate_if: Script,
    bump: Script,
}

/// The start of a fill lease held in a fill's value key (see the module docs, "Fills"): bytes
/// no stored value begins with (`fill_complete` refuses such a value; `get` reads them as no
/// value). Written in Lua as decimal escapes.
const LEASE_TAG: &[u8] = b"\xff\xfestitch:lease:";

/// The fill lease in a fill's value key, `<tag><holder>[:w]` (`:w`: a claimant found it busy, so
/// an instance waits for the value), with Redis's own expiry (`PX`, rounded up to the
/// millisecond). `holder_of(v)` is the holder (nil for a value) and the waiting mark; `hold`
/// writes the lease and keeps the generation for at least as long plus `keep_ms`.
const LEASE: &str = r"
local TAG = '\255\254stitch:lease:'
local function holder_of(v)
  if string.sub(v, 1, #TAG) ~= TAG then return nil, false end
  local h, w = string.match(string.sub(v, #TAG + 1), '^(%x+)(:?w?)$')
  return h, w == ':w'
end
local function hold(key, gen, holder, ttl_us, keep_ms, waited)
  local l = TAG .. holder
  if waited then l = l .. ':w' end
  local px = math.ceil(ttl_us / 1000)
  redis.call('SET', key, l, 'PX', px)
  local pt = redis.call('PTTL', gen)
  local keep = px + keep_ms
  if pt >= 0 and pt < keep then redis.call('PEXPIRE', gen, keep) end
end
";

/// `TIME` as integer microseconds, in a local `now`.
const NOW: &str =
    "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n";

impl Scripts {
    fn new() -> Scripts {
        let with_now = |body: &str| Script::new(&format!("{NOW}{body}"));
        // The fill scripts need no clock: a fill lease expires by Redis's own `PX`.
        let with_lease = |body: &str| Script::new(&format!("{LEASE}{body}"));
        Scripts {
            // KEYS: counter, marker. ARGV: by, ttl ms, retry ms.
            increment: Script::new(
                r"
local done = redis.call('GET', KEYS[2])
if done then return tonumber(done) end
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('SET', KEYS[2], v, 'PX', ARGV[3])
return v",
            ),
            // KEYS: key, marker. ARGV: value, ttl ms, retry ms.
            set_if_absent: Script::new(
                r"
if redis.call('GET', KEYS[2]) then return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return 1
end
return 0",
            ),
            // KEYS: key, marker. ARGV: '0' expect absent | '1' expect ARGV[2], new, ttl ms, retry ms.
            compare_and_set: Script::new(
                r"
if redis.call('GET', KEYS[2]) then return {1} end
local cur = redis.call('GET', KEYS[1])
local ok
if ARGV[1] == '0' then ok = (cur == false) else ok = (cur == ARGV[2]) end
if ok then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
  return {1}
end
if cur then return {0, cur} end
return {0}",
            ),
            // KEYS: tat, marker. ARGV: interval µs, tolerance µs, max wait µs (-1: none),
            // retry ms. Returns {1, grant, now} or {0, wait, now}.
            reserve: with_now(
                r"
local done = redis.call('GET', KEYS[2])
if done then return {1, tonumber(done), now} end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local interval = tonumber(ARGV[1])
local grant = math.max(now, tat - tonumber(ARGV[2]))
local maxw = tonumber(ARGV[3])
if maxw >= 0 and grant - now > maxw then return {0, grant - now, now} end
local nxt = math.max(tat, grant) + interval
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000))
redis.call('SET', KEYS[2], string.format('%d', grant), 'PX',
  tonumber(ARGV[4]) + math.ceil((grant - now) / 1000))
return {1, grant, now}",
            ),
            // KEYS: holders. ARGV: holder, limit, ttl µs. Returns {1, expiry, now} or
            // {0, earliest expiry, now}.
            lease_acquire: with_now(
                r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local exp = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], string.format('%d', exp), ARGV[1])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000))
  return {1, exp, now}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]), now}",
            ),
            // KEYS: holders. ARGV: holder, ttl µs.
            lease_renew: with_now(
                r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local exp = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%d', exp), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000))
return 1",
            ),
            // KEYS: holders. ARGV: holder, notify channel ('' for none).
            lease_release: with_now(
                r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(s) <= now then return 0 end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], KEYS[1]) end
return 1",
            ),
            // KEYS: holders, tat, marker (of the reservation id, beside tat). ARGV: holder, limit,
            // lease ttl µs, interval µs, tolerance µs, max wait µs (-1: none), retry ms. Returns
            // {1, lease expiry, slot, now} (admitted), {0, earliest expiry, 0, now} (full) or
            // {2, wait, 0, now} (refused): `lease_acquire` then `reserve`, taking neither unless
            // both can be had.
            lease_reserve: with_now(
                r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2] or now), 0, now}
end
local done = redis.call('GET', KEYS[3])
local grant
if done then
  grant = tonumber(done)
else
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  grant = math.max(now, tat - tonumber(ARGV[5]))
  local maxw = tonumber(ARGV[6])
  if maxw >= 0 and grant - now > maxw then return {2, grant - now, 0, now} end
  local nxt = math.max(tat, grant) + tonumber(ARGV[4])
  redis.call('SET', KEYS[2], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000))
  redis.call('SET', KEYS[3], string.format('%d', grant), 'PX',
    tonumber(ARGV[7]) + math.ceil((grant - now) / 1000))
end
local exp = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], string.format('%d', exp), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000))
return {1, exp, grant, now}",
            ),
            // KEYS: state, marker. ARGV: event (a admit | s success | f failure | x abandon),
            // failures, cooldown µs, trial ttl µs, id, state ttl ms, retry ms. Returns {before
            // (0 closed, 1 open, 2 half-open), state (0 closed, 1 open, 2 trial, 3 busy), n}.
            // The same machine as `vocab::circuit_step` (keep the two in step).
            circuit: with_now(
                r"
local cur = redis.call('GET', KEYS[1]) or 'c:0'
local kind, n, holder = string.match(cur, '^(%a):(%d+):?(.*)$')
if not kind then kind, n, holder = 'c', '0', '' end
n = tonumber(n)
local before = 0
if kind == 'o' then before = 1 elseif kind == 'h' then before = 2 end
local ev, id, write = ARGV[1], ARGV[5], true
if ev == 'f' and redis.call('GET', KEYS[2]) then ev, write = 'a', false end
local function put(v) if write then redis.call('SET', KEYS[1], v, 'PX', ARGV[6]) end end
local function fmt(x) return string.format('%d', x) end
if ev == 'a' then
  if kind == 'c' then return {before, 0, n} end
  if kind == 'o' and now < n then return {before, 1, n - now} end
  if kind == 'h' and holder == id then return {before, 2, 0} end
  if kind == 'h' and now < n then return {before, 3, n - now} end
  put('h:' .. fmt(now + tonumber(ARGV[4])) .. ':' .. id)
  return {before, 2, 0}
elseif ev == 's' then
  if cur ~= 'c:0' then redis.call('DEL', KEYS[1]) end
  return {before, 0, 0}
elseif ev == 'f' then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[7])
  if kind == 'c' and n + 1 < tonumber(ARGV[2]) then
    put('c:' .. fmt(n + 1))
    return {before, 0, n + 1}
  end
  put('o:' .. fmt(now + tonumber(ARGV[3])))
  return {before, 1, tonumber(ARGV[3])}
end
if kind == 'h' and holder == id then
  put('o:' .. fmt(now))
  return {before, 1, 0}
end
return {before, 0, 0}",
            ),
            // KEYS: value, lease (unused: the lease is in the value key), generation. ARGV: holder,
            // lease µs, retry ms. Returns {0, value, pttl ms} (hit), {1, generation} (leader) or
            // {2, lease left µs} (busy, marking the lease as waited for). The native claim's
            // second step, and the whole claim where the native one is refused.
            fill_claim: with_lease(
                r"
local v = redis.call('GET', KEYS[1])
local h, w = nil, false
if v then
  h, w = holder_of(v)
  if not h then return {0, v, redis.call('PTTL', KEYS[1])} end
end
if h and h ~= ARGV[1] then
  local left = math.max(redis.call('PTTL', KEYS[1]), 1)
  if not w then redis.call('SET', KEYS[1], v .. ':w', 'PX', left) end
  return {2, left * 1000}
end
hold(KEYS[1], KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), w)
return {1, redis.call('GET', KEYS[3]) or '0'}",
            ),
            // KEYS: value, generation. ARGV: holder, lease µs, retry ms.
            fill_renew: with_lease(
                r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local h, w = holder_of(v)
if h ~= ARGV[1] then return 0 end
hold(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), w)
return 1",
            ),
            // KEYS: value, lease (unused), generation, marker. ARGV: holder, generation, value,
            // ttl ms, retry ms, '1' to publish | '0', channel, message, '1' to carry the value |
            // '0', value message prefix. The marker holds the generation stored at: a retry
            // answers 1, a later fill by the same holder id is not confused with it. Generations
            // are compared as the decimal text `INCR` writes. The value is carried only when it
            // was stored here (so a message's value is always the stored one) and an instance
            // waits. The value replaces the lease (one `SET`); a refused holder's lease is freed.
            fill_complete: with_lease(
                r"
if redis.call('GET', KEYS[4]) == ARGV[2] then return 1 end
local v = redis.call('GET', KEYS[1])
local h, waited = nil, false
if v then h, waited = holder_of(v) end
local held = h ~= nil and h == ARGV[1]
local stored = 0
if held and (redis.call('GET', KEYS[3]) or '0') == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[5])
  stored = 1
elseif held then
  redis.call('DEL', KEYS[1])
end
if ARGV[6] == '1' then
  if stored == 1 and waited and ARGV[9] == '1' then
    redis.call('PUBLISH', ARGV[7], ARGV[10] .. ARGV[3])
  else
    redis.call('PUBLISH', ARGV[7], ARGV[8])
  end
end
return stored",
            ),
            // KEYS: value. ARGV: holder, '1' to publish | '0', channel, message.
            fill_abandon: with_lease(
                r"
local v = redis.call('GET', KEYS[1])
if not v or holder_of(v) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1",
            ),
            // KEYS: value, lease, generation. ARGV: generation keep ms, '1' to publish | '0',
            // channel, message. Answers whether a value (not a lease) was there; publishes the
            // message with `|<new generation>`. (The lease key is deleted too: nothing writes it
            // any more, but an older build's lease may be left there.)
            fill_invalidate: with_lease(
                r"
local v = redis.call('GET', KEYS[1])
local existed = 0
if v then
  if not holder_of(v) then existed = 1 end
  redis.call('DEL', KEYS[1])
end
redis.call('DEL', KEYS[2])
local g = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
if ARGV[2] == '1' then redis.call('PUBLISH', ARGV[3], ARGV[4] .. '|' .. string.format('%d', g)) end
return existed",
            ),
            // KEYS: value, lease, generation. ARGV: generation keep ms, '1' to publish | '0',
            // channel, message, the expected value.
            fill_invalidate_if: Script::new(
                r"
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
if ARGV[2] == '1' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1",
            ),
            // KEYS: generation. ARGV: ttl ms, channel, message prefix.
            bump: Script::new(
                r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. string.format('%d', n))
return n",
            ),
        }
    }
}

/// The `publish flag, channel, message` arguments of a script for an optional notification.
fn notify_args<'a>(notify: &'a Option<Notify<'_>>) -> [&'a [u8]; 3] {
    match notify {
        Some(n) => [b"1", n.channel.as_bytes(), &n.message],
        None => [b"0", b"", b""],
    }
}

fn flag(op: &'static str, n: i64) -> Result<bool, StoreError> {
    match n {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(StoreError::protocol(
            op,
            format!("unexpected script reply {n}"),
        )),
    }
}

impl Store for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let v: Option<Vec<u8>> = self.cmd("get", redis::cmd("GET").arg(key).clone()).await?;
            // A fill's value key holds its lease while the fill runs: no value yet.
            Ok(v.filter(|v| !v.starts_with(LEASE_TAG)).map(Bytes::from))
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = redis::cmd("SET");
            c.arg(key).arg(value.as_ref()).arg("PX").arg(ms(ttl));
            self.cmd::<()>("set", c).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n: i64 = self
                .cmd("delete", redis::cmd("DEL").arg(key).clone())
                .await?;
            Ok(n > 0)
        })
    }

    fn capabilities(&self) -> Verbs {
        Verbs::all()
    }

    fn operation_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn time(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let (s, us): (u64, u64) = self.cmd("time", redis::cmd("TIME")).await?;
            Ok(s * 1_000_000 + us)
        })
    }

    fn increment<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            let marker = keys::marker(key, op);
            self.run(
                "increment",
                &self.scripts.increment,
                &[key, &marker],
                &[&num(by), &ms(ttl), &retry_ms()],
            )
            .await
        })
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let marker = keys::marker(key, op);
            let n: i64 = self
                .run(
                    "set_if_absent",
                    &self.scripts.set_if_absent,
                    &[key, &marker],
                    &[&value, &ms(ttl), &retry_ms()],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Bytes,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, Cas> {
        Box::pin(async move {
            let marker = keys::marker(key, op);
            let mode: &[u8] = if expected.is_some() { b"1" } else { b"0" };
            let v: Vec<Value> = self
                .run(
                    "compare_and_set",
                    &self.scripts.compare_and_set,
                    &[key, &marker],
                    &[
                        mode,
                        expected.unwrap_or_default(),
                        &new,
                        &ms(ttl),
                        &retry_ms(),
                    ],
                )
                .await?;
            if int_at("compare_and_set", &v, 0)? == 1 {
                return Ok(Cas::Swapped);
            }
            let current = match v.get(1) {
                Some(v) => Some(Bytes::from(
                    redis::from_redis_value_ref::<Vec<u8>>(v)
                        .map_err(|e| StoreError::protocol("compare_and_set", e.to_string()))?,
                )),
                None => None,
            };
            Ok(Cas::Conflict { current })
        })
    }

    fn reserve<'a>(&'a self, key: &'a str, gcra: Gcra) -> StoreFuture<'a, Reservation> {
        Box::pin(async move {
            let marker = keys::marker(key, gcra.id);
            let max_wait = gcra
                .max_wait_us
                .map_or(-1, |m| m.min(i64::MAX as u64) as i64);
            let (flag, t, now): (i64, i64, i64) = self
                .eval("reserve", &self.scripts.reserve, &[key, &marker], |c| {
                    c.arg(gcra.interval_us.max(1))
                        .arg(gcra.tolerance_us)
                        .arg(max_wait)
                        .arg(RETRY_MS);
                })
                .await?;
            let (t, now) = (t as u64, now as u64);
            let decision = match flag {
                0 => Decision::Refused { wait_us: t },
                _ if t <= now => Decision::Granted { at: t },
                _ => Decision::WaitUntil(t),
            };
            Ok(Reservation {
                decision,
                store_time: now,
            })
        })
    }

    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        lease: LeaseRequest,
    ) -> StoreFuture<'a, LeaseGrant> {
        Box::pin(async move {
            let (flag, t, now): (i64, i64, i64) = self
                .eval("lease_acquire", &self.scripts.lease_acquire, &[key], |c| {
                    c.arg(&hex(lease.holder)[..])
                        .arg(lease.limit)
                        .arg(lease.ttl_us.max(1));
                })
                .await?;
            let (t, now) = (t as u64, now as u64);
            let decision = if flag == 1 {
                LeaseDecision::Acquired { expires_at: t }
            } else {
                LeaseDecision::Full { next_expiry: t }
            };
            Ok(LeaseGrant {
                decision,
                store_time: now,
            })
        })
    }

    fn lease_renew<'a>(&'a self, key: &'a str, holder: OpId, ttl_us: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n: i64 = self
                .eval("lease_renew", &self.scripts.lease_renew, &[key], |c| {
                    c.arg(&hex(holder)[..]).arg(ttl_us.max(1));
                })
                .await?;
            Ok(n == 1)
        })
    }

    fn lease_release<'a>(
        &'a self,
        key: &'a str,
        holder: OpId,
        notify: Option<&'a str>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n: i64 = self
                .eval("lease_release", &self.scripts.lease_release, &[key], |c| {
                    c.arg(&hex(holder)[..]).arg(notify.unwrap_or_default());
                })
                .await?;
            Ok(n == 1)
        })
    }

    fn lease_reserve<'a>(
        &'a self,
        leases: &'a str,
        tat: &'a str,
        lease: LeaseRequest,
        gcra: Gcra,
    ) -> StoreFuture<'a, LeaseReservation> {
        Box::pin(async move {
            let marker = keys::marker(tat, gcra.id);
            let max_wait = gcra
                .max_wait_us
                .map_or(-1, |m| m.min(i64::MAX as u64) as i64);
            let (flag, t, at, now): (i64, i64, i64, i64) = self
                .eval(
                    "lease_reserve",
                    &self.scripts.lease_reserve,
                    &[leases, tat, &marker],
                    |c| {
                        c.arg(&hex(lease.holder)[..])
                            .arg(lease.limit)
                            .arg(lease.ttl_us.max(1))
                            .arg(gcra.interval_us.max(1))
                            .arg(gcra.tolerance_us)
                            .arg(max_wait)
                            .arg(RETRY_MS);
                    },
                )
                .await?;
            let (t, at, now) = (t as u64, at as u64, now as u64);
            let decision = match flag {
                1 => Admission::Admitted { expires_at: t, at },
                0 => Admission::Full { next_expiry: t },
                2 => Admission::Refused { wait_us: t },
                n => {
                    return Err(StoreError::protocol(
                        "lease_reserve",
                        format!("unexpected script reply {n}"),
                    ))
                }
            };
            Ok(LeaseReservation {
                decision,
                store_time: now,
            })
        })
    }

    fn circuit<'a>(&'a self, key: &'a str, step: CircuitStep) -> StoreFuture<'a, CircuitReply> {
        Box::pin(async move {
            let marker = keys::marker(key, step.id);
            let event: &[u8] = match step.event {
                CircuitEvent::Admit => b"a",
                CircuitEvent::Success => b"s",
                CircuitEvent::Failure => b"f",
                CircuitEvent::Abandon => b"x",
            };
            let v: Vec<Value> = self
                .run(
                    "circuit",
                    &self.scripts.circuit,
                    &[key, &marker],
                    &[
                        event,
                        &num(step.failures.max(1)),
                        &num(step.cooldown_us),
                        &num(step.trial_ttl_us.max(1)),
                        step.id.to_string().as_bytes(),
                        &ms(circuit_ttl(&step)),
                        &retry_ms(),
                    ],
                )
                .await?;
            let (before, state, n) = (
                int_at("circuit", &v, 0)?,
                int_at("circuit", &v, 1)?,
                int_at("circuit", &v, 2)?.max(0) as u64,
            );
            let before = match before {
                1 => CircuitPhase::Open,
                2 => CircuitPhase::HalfOpen,
                _ => CircuitPhase::Closed,
            };
            let state = match state {
                1 => CircuitState::Open { retry_in_us: n },
                2 => CircuitState::Trial,
                3 => CircuitState::Busy { retry_in_us: n },
                _ => CircuitState::Closed {
                    failures: n.min(u64::from(u32::MAX)) as u32,
                },
            };
            Ok(CircuitReply { before, state })
        })
    }

    fn fill_claim<'a>(&'a self, keys: FillKeys<'a>, claim: FillClaim) -> StoreFuture<'a, Claimed> {
        Box::pin(async move {
            if !self.claim_natively.load(Ordering::Relaxed) {
                return self.script_claim(keys, claim).await;
            }
            let started = tokio::time::Instant::now();
            // `None` (another holder's lease not yet marked as waited for, the holder's own
            // lease): the script marks or refreshes it and answers from what it finds then.
            if let Some(claimed) = self.native_claim(keys, claim).await? {
                return Ok(claimed);
            }
            // Both steps together within the store's timeout, as one operation would be (a timer
            // only on this path: the first instance to wait on a fill, or a retried claim).
            let left = self.timeout.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.script_claim(keys, claim)).await {
                Ok(claimed) => claimed,
                Err(_) => Err(StoreError::timeout("fill_claim", self.timeout)),
            }
        })
    }

    fn fill_renew<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        ttl_us: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let holder = holder.to_string();
            let n: i64 = self
                .run(
                    "fill_renew",
                    &self.scripts.fill_renew,
                    &[keys.value, keys.generation],
                    &[holder.as_bytes(), &num(ttl_us.max(1)), &retry_ms()],
                )
                .await?;
            flag("fill_renew", n)
        })
    }

    fn fill_complete<'a>(&'a self, keys: FillKeys<'a>, fill: Fill<'a>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if fill.value.starts_with(LEASE_TAG) {
                // It would read back as a lease, never as this value.
                return Err(StoreError::protocol(
                    "fill_complete",
                    "the value begins with the bytes reserved for a fill lease",
                ));
            }
            let marker = keys::marker(keys.value, fill.holder);
            let holder = fill.holder.to_string();
            let [publish, channel, message] = notify_args(&fill.notify);
            let (carry, prefix): (&[u8], &[u8]) = match &fill.value_message {
                Some(prefix) => (b"1", prefix),
                None => (b"0", b""),
            };
            let n: i64 = self
                .run(
                    "fill_complete",
                    &self.scripts.fill_complete,
                    &[keys.value, keys.lease, keys.generation, &marker],
                    &[
                        holder.as_bytes(),
                        &num(fill.generation),
                        &fill.value,
                        &ms(fill.ttl),
                        &retry_ms(),
                        publish,
                        channel,
                        message,
                        carry,
                        prefix,
                    ],
                )
                .await?;
            flag("fill_complete", n)
        })
    }

    fn fill_abandon<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let holder = holder.to_string();
            let [publish, channel, message] = notify_args(&notify);
            let n: i64 = self
                .run(
                    "fill_abandon",
                    &self.scripts.fill_abandon,
                    &[keys.value],
                    &[holder.as_bytes(), publish, channel, message],
                )
                .await?;
            flag("fill_abandon", n)
        })
    }

    fn fill_invalidate<'a>(
        &'a self,
        keys: FillKeys<'a>,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let [publish, channel, message] = notify_args(&notify);
            let n: i64 = self
                .run(
                    "fill_invalidate",
                    &self.scripts.fill_invalidate,
                    &[keys.value, keys.lease, keys.generation],
                    &[&ms(FILL_GENERATION_KEEP), publish, channel, message],
                )
                .await?;
            flag("fill_invalidate", n)
        })
    }

    fn fill_invalidate_if<'a>(
        &'a self,
        keys: FillKeys<'a>,
        expected: &'a [u8],
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if expected.starts_with(LEASE_TAG) {
                // No stored value begins so: what the key holds is a lease, not `expected`.
                return Ok(false);
            }
            let [publish, channel, message] = notify_args(&notify);
            let n: i64 = self
                .run(
                    "fill_invalidate_if",
                    &self.scripts.fill_invalidate_if,
                    &[keys.value, keys.lease, keys.generation],
                    &[
                        &ms(FILL_GENERATION_KEEP),
                        publish,
                        channel,
                        message,
                        expected,
                    ],
                )
                .await?;
            flag("fill_invalidate_if", n)
        })
    }

    fn bump<'a>(&'a self, key: &'a str, ttl: Duration, notify: Notify<'a>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let n: i64 = self
                .run(
                    "bump",
                    &self.scripts.bump,
                    &[key],
                    &[&ms(ttl), notify.channel.as_bytes(), &notify.message],
                )
                .await?;
            u64::try_from(n).map_err(|_| StoreError::protocol("bump", "generation is negative"))
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = redis::cmd("PUBLISH");
            c.arg(channel).arg(message.as_ref());
            self.cmd::<i64>("publish", c).await.map(drop)
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let ps = bounded("subscribe", self.timeout, subscribed(&self.pubsub, channel)).await?;
            // Read by the subscriber's own task (no forwarding task: one hand-off less between a
            // `PUBLISH` and the instance it wakes).
            Ok(Subscription::from_stream(feed(
                self.pubsub.clone(),
                channel.to_owned(),
                ps,
            )))
        })
    }
}

async fn subscribed(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, RedisError> {
    let mut ps = client.get_async_pubsub().await?;
    ps.subscribe(channel).await?;
    Ok(ps)
}

/// A subscription's events, read as the subscriber polls: messages as they arrive; when the
/// connection ends, or a half-open one (peer gone without a FIN, so nothing arrives and nothing
/// is reported) misses its heartbeat, it reconnects with a backoff and reports the gap. Dropping
/// the stream closes the connection.
fn feed(
    client: redis::Client,
    channel: String,
    ps: redis::aio::PubSub,
) -> impl futures_util::Stream<Item = Event> + Send + 'static {
    struct Feed {
        client: redis::Client,
        channel: String,
        live: Option<(redis::aio::PubSubSink, redis::aio::PubSubStream)>,
        beat: tokio::time::Interval,
    }
    fn heartbeat() -> tokio::time::Interval {
        // A PING every second with a two-second deadline detects a half-open connection.
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat
    }
    let start = Feed {
        client,
        channel,
        live: Some(ps.split()),
        beat: heartbeat(),
    };
    futures_util::stream::unfold(start, |mut feed| async move {
        loop {
            let Some((sink, stream)) = feed.live.as_mut() else {
                let mut delay = Duration::from_millis(50);
                let ps = loop {
                    tokio::time::sleep(delay).await;
                    let again = subscribed(&feed.client, &feed.channel);
                    match tokio::time::timeout(Duration::from_secs(1), again).await {
                        Ok(Ok(ps)) => break ps,
                        _ => delay = (delay * 2).min(Duration::from_secs(1)),
                    }
                };
                feed.live = Some(ps.split());
                feed.beat = heartbeat();
                // Subscribed again: from here on nothing is missed, but what was published while
                // disconnected is lost, so the reader re-reads the state it derives from events.
                tracing::warn!(
                    channel = feed.channel,
                    "store subscription reconnected; events may have been missed"
                );
                return Some((Event::Gap, feed));
            };
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => {
                        let payload = Bytes::copy_from_slice(m.get_payload_bytes());
                        return Some((Event::Message(payload), feed));
                    }
                    None => feed.live = None,
                },
                _ = feed.beat.tick() => {
                    let pong = tokio::time::timeout(HEARTBEAT * 2, sink.ping::<Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        feed.live = None;
                    }
                }
            }
        }
    })
}
