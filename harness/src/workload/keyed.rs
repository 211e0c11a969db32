//! What the `[redis]` and `[s3]` workloads share: clients writing fresh keys into a store at
//! a rate, each reading its acknowledged write back at once (through the store's read
//! endpoint: a replica, a cache, where the product reads), a probe reading through it, and
//! after the run every write read back, each through the store's own `Client`. A store says how to reach it and what a write is; the driving,
//! the recording and the final read are here, the same for every store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::task::JoinSet;

use crate::workload::{Client, Context, Op, Workload, store_read};
use hadrill_model::{OpKind, Outcome, Read, Role};

/// The kind of the reads that follow each acknowledged write, judged by `fresh-reads`.
pub const READ: OpKind = OpKind::new("read");

/// Read-backs run side by side after the run.
const READ_BACK_CONCURRENCY: usize = 8;

/// How hard a store is driven.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub clients: usize,
    /// Writes per second, all clients together.
    pub rate: f64,
    pub probe_hz: f64,
    /// Upper bound on writes, whatever the scenario's length.
    pub max_ops: u64,
}

/// The client the probe of the workload `name` records as.
pub(crate) fn probe_client(name: &str) -> String {
    format!("{name}-probe")
}

/// A store a keyed workload drives.
pub(crate) trait Store: Send + Sync + 'static {
    /// The workload's name in the report; its final read is kept under it.
    fn name(&self) -> &str;
    /// How hard it is driven.
    fn pace(&self) -> Pace;
    /// The kind of its writes.
    fn kind(&self) -> OpKind;
    /// A client of its own, for one writer, the probe or the read-back.
    fn client(&self, ctx: &Context) -> Box<dyn Client>;
    /// A client for the reads that follow each write, where the product reads from.
    fn read_client(&self, ctx: &Context) -> Box<dyn Client> {
        self.client(ctx)
    }
    /// The key of writer `client`'s `n`th write (from 1): unique in the run.
    fn key(&self, client: usize, n: u64) -> String;
    /// The write of `key`, with the value its read-back must show.
    fn write(&self, key: String) -> Op;
    /// A key the probe reads; absent is an answer.
    fn probe_key(&self) -> String;
}

/// A store's workload, named and paced as the store says.
pub(crate) struct Keyed<S> {
    name: String,
    pace: Pace,
    store: S,
    ops: AtomicU64,
    /// Every write's key, and whether it was acknowledged, for the read-back.
    written: Mutex<Vec<(String, bool)>>,
}

impl<S: Store> Keyed<S> {
    pub fn new(store: S) -> Keyed<S> {
        Keyed {
            name: store.name().to_string(),
            pace: store.pace(),
            store,
            ops: AtomicU64::new(0),
            written: Mutex::new(Vec::new()),
        }
    }

    async fn writer(self: Arc<Self>, ctx: Context, index: usize) {
        let actor = format!("{}-{index}", self.name);
        let client = self.store.client(&ctx);
        let reader = self.store.read_client(&ctx);
        let per_client = self.pace.rate / self.pace.clients.max(1) as f64;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_client.max(0.01)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0;
        while self.ops.fetch_add(1, Ordering::Relaxed) < self.pace.max_ops {
            tokio::select! {
                _ = ctx.stopped() => return,
                _ = tick.tick() => {}
            }
            n += 1;
            let op = self.store.write(self.store.key(index, n));
            let key = op.key.clone().unwrap_or_default();
            let answer = ctx.invoke(Role::User.named(&actor), &*client, op).await;
            let acknowledged = answer.exchange.outcome == Outcome::Ok;
            self.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((key.clone(), acknowledged));
            if acknowledged {
                ctx.invoke(Role::User.named(&actor), &*reader, Op::read(READ, key))
                    .await;
            }
        }
    }

    /// Reads the probe key at `probe_hz`, one read at a time: a held read delays the next, and
    /// the availability check states the coarser resolution that gives with its figure.
    async fn probe(self: Arc<Self>, ctx: Context) {
        let actor = probe_client(&self.name);
        let client = self.store.client(&ctx);
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(1.0 / self.pace.probe_hz.max(1.0)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for _ in 0..10_000_000u64 {
            tokio::select! {
                _ = ctx.stopped() => return,
                _ = tick.tick() => {}
            }
            let op = Op::read(OpKind::PROBE, self.store.probe_key());
            ctx.invoke(Role::Probe.named(&actor), &*client, op).await;
        }
    }
}

impl<S: Store> Workload for Keyed<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn probe_hz(&self) -> Option<f64> {
        Some(self.pace.probe_hz)
    }

    fn write_kind(&self) -> Option<OpKind> {
        Some(self.store.kind())
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tasks = JoinSet::new();
            for i in 0..self.pace.clients {
                tasks.spawn(self.clone().writer(ctx.clone(), i));
            }
            tasks.spawn(self.clone().probe(ctx.clone()));
            while tasks.join_next().await.is_some() {}
        })
    }

    fn settled(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, bool> {
        // Its writers' and its probe's operations: `<name>-<writer>`, `<name>-probe`.
        let mine = format!("{}-", self.name);
        Box::pin(async move { ctx.steady(|o| o.client.starts_with(&mine)) })
    }

    /// Every write read back (acknowledged, unknown and refused alike, so a refused write
    /// that is there anyway is caught), as a `StoreRead` keyed by write.
    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Read> {
        Box::pin(async move {
            let written =
                std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()));
            let client: Arc<dyn Client> = self.store.client(&ctx).into();
            let kind = self.store.kind();
            let reads: Vec<(String, bool, Result<Option<String>, String>)> =
                futures_util::stream::iter(written)
                    .map(|(key, acknowledged)| {
                        let (client, op) = (client.clone(), Op::read(kind.clone(), key.clone()));
                        async move {
                            let answer = client.invoke(&op).await;
                            let read = match answer.exchange.outcome {
                                Outcome::Ok => Ok(answer.read),
                                _ => Err(answer.exchange.error.unwrap_or_default()),
                            };
                            (key, acknowledged, read)
                        }
                    })
                    .buffer_unordered(READ_BACK_CONCURRENCY)
                    .collect()
                    .await;
            store_read(reads)
        })
    }
}
