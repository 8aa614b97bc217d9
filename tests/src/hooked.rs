//! A view of a shared [`MemoryStore`] for the fleet tests, with a say over its fill claims and
//! event subscriptions: each test's store states only what it changes ([`Hooks`]), and every
//! other verb goes to the memory store unchanged.

use bytes::Bytes;
use std::time::Duration;
use stitch::store::{
    Claimed, Fill, FillClaim, FillKeys, MemoryStore, Notify, OpId, Store, StoreFuture,
    Subscription, Verb, Verbs,
};

/// What a test store changes about the memory store's fill claims and subscriptions.
pub trait Hooks: Send + Sync + 'static {
    /// A fill claim: by default the memory store's answer.
    fn fill_claim<'a>(
        &'a self,
        inner: &'a MemoryStore,
        keys: FillKeys<'a>,
        claim: FillClaim,
    ) -> StoreFuture<'a, Claimed> {
        inner.fill_claim(keys, claim)
    }

    /// A subscription: by default the memory store's.
    fn subscribe<'a>(
        &'a self,
        inner: &'a MemoryStore,
        channel: &'a str,
    ) -> StoreFuture<'a, Subscription> {
        inner.subscribe(channel)
    }
}

/// A [`MemoryStore`] (clones share it) seen through [`Hooks`].
#[derive(Clone, Default)]
pub struct Hooked<H> {
    /// The store every verb ends up in.
    pub inner: MemoryStore,
    /// What this view changes.
    pub hooks: H,
}

impl<H: Hooks> Store for Hooked<H> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.inner.get(key)
    }
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        self.inner.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.inner.delete(key)
    }
    fn capabilities(&self) -> Verbs {
        use Verb::*;
        Verbs::of(&[Get, Set, Delete, Time, Fill, Bump, Publish, Subscribe])
    }
    fn time(&self) -> StoreFuture<'_, u64> {
        self.inner.time()
    }
    fn fill_claim<'a>(&'a self, keys: FillKeys<'a>, claim: FillClaim) -> StoreFuture<'a, Claimed> {
        self.hooks.fill_claim(&self.inner, keys, claim)
    }
    fn fill_renew<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        ttl_us: u64,
    ) -> StoreFuture<'a, bool> {
        self.inner.fill_renew(keys, holder, ttl_us)
    }
    fn fill_complete<'a>(&'a self, keys: FillKeys<'a>, fill: Fill<'a>) -> StoreFuture<'a, bool> {
        self.inner.fill_complete(keys, fill)
    }
    fn fill_abandon<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        self.inner.fill_abandon(keys, holder, notify)
    }
    fn fill_invalidate<'a>(
        &'a self,
        keys: FillKeys<'a>,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        self.inner.fill_invalidate(keys, notify)
    }
    fn bump<'a>(&'a self, key: &'a str, ttl: Duration, notify: Notify<'a>) -> StoreFuture<'a, u64> {
        self.inner.bump(key, ttl, notify)
    }
    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> StoreFuture<'a, ()> {
        self.inner.publish(channel, message)
    }
    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, Subscription> {
        self.hooks.subscribe(&self.inner, channel)
    }
}
