//! Fresh reads, for any workload that reads what it wrote: a read must observe every write to
//! its key acknowledged before the read was invoked, on the run's clock. A write whose outcome
//! is unknown may or may not be observed; a read that returns nothing, or the value of a write
//! that a later acknowledged write had replaced before the read began, is stale: a lagging
//! replica answering, a cache serving what it held, a failover that lost the freshest state.

use std::collections::BTreeMap;

use serde_json::json;

use super::secs;
use hadrill_model::{Check, CheckResult, Event, Evidence, OpKind, OpRecord, Outcome, Verdict, ops};

/// The reads of `reads` by `workload`'s clients (`<workload>-…`) against the writes of
/// `writes`.
pub struct FreshReads {
    pub workload: String,
    pub writes: Vec<OpKind>,
    pub reads: OpKind,
}

impl Check for FreshReads {
    fn name(&self) -> &str {
        "fresh-reads"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        let mine = format!("{}-", self.workload);
        let events: Vec<Event> = e
            .events
            .iter()
            .filter(|ev| match ev {
                Event::Op(o) if o.kind == self.reads => o.client.starts_with(&mine),
                _ => true,
            })
            .cloned()
            .collect();
        fresh_reads(&self.workload, &events, &self.writes, &self.reads)
    }
}

/// A read that missed a write acknowledged before it began.
#[derive(Debug, PartialEq)]
pub struct Stale<'a> {
    pub read: &'a OpRecord,
    /// The write it should have observed (or one newer).
    pub missed: &'a OpRecord,
}

/// Every successful read of `reads` judged against the writes of `writes` to its key.
pub fn stale_reads<'a>(
    all: &'a [OpRecord],
    writes: &[OpKind],
    reads: &OpKind,
) -> (usize, Vec<Stale<'a>>) {
    let mut by_key: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for w in all.iter().filter(|o| o.kind.is_any(writes)) {
        if let Some(k) = w.key.as_deref() {
            by_key.entry(k).or_default().push(w);
        }
    }
    let mut judged = 0;
    let mut stale = Vec::new();
    for r in all
        .iter()
        .filter(|o| &o.kind == reads && o.outcome == Outcome::Ok)
    {
        let Some(key) = r.key.as_deref() else {
            continue;
        };
        judged += 1;
        let writes = by_key.get(key).map(Vec::as_slice).unwrap_or_default();
        let before = |w: &&&OpRecord| w.outcome == Outcome::Ok && w.complete < r.invoke;
        // The write whose value the read returned, if any may have been (unknown included).
        let source = r.value.as_deref().and_then(|v| {
            writes
                .iter()
                .filter(|w| w.outcome != Outcome::Fail && w.value.as_deref() == Some(v))
                .max_by_key(|w| w.invoke)
        });
        let missed = match source {
            // Nothing there, though a write was acknowledged before the read began.
            None if r.value.is_none() => writes.iter().filter(before).max_by_key(|w| w.complete),
            // A value no write explains: continuity's to judge, not freshness.
            None => None,
            // Replaced before the read began: an acknowledged write invoked after the source
            // completed, and itself completed before the read was invoked.
            Some(s) => writes
                .iter()
                .filter(before)
                .filter(|w| w.invoke > s.complete)
                .max_by_key(|w| w.complete),
        };
        if let Some(missed) = missed {
            stale.push(Stale { read: r, missed });
        }
    }
    (judged, stale)
}

pub fn fresh_reads(
    workload: &str,
    events: &[Event],
    writes: &[OpKind],
    reads: &OpKind,
) -> CheckResult {
    let all = ops(events);
    let (judged, stale) = stale_reads(&all, writes, reads);
    let first = stale.first().map(|s| {
        json!({
            "key": s.read.key,
            "read_at_s": secs(s.read.invoke),
            "read_value": s.read.value,
            "missed_write_acknowledged_at_s": secs(s.missed.complete),
            "missed_value": s.missed.value,
        })
    });
    let figures = json!({
        "workload": workload,
        "reads": judged,
        "stale": stale.len(),
        "first_stale": first,
    });
    match stale.first() {
        _ if judged == 0 => CheckResult::new(
            "fresh-reads",
            Verdict::Unknown,
            format!("{workload}: no successful read of a written key to judge"),
            figures,
        ),
        None => CheckResult::new(
            "fresh-reads",
            Verdict::Pass,
            format!(
                "{workload}: {judged} reads, each observed every write to its key acknowledged before it began"
            ),
            figures,
        ),
        Some(s) => CheckResult::new(
            "fresh-reads",
            Verdict::Fail,
            format!(
                "{workload}: {} of {judged} reads stale; the first, of `{}` at t={:.2}s, read {}, missing the write acknowledged at t={:.2}s",
                stale.len(),
                s.read.key.as_deref().unwrap_or_default(),
                secs(s.read.invoke),
                s.read
                    .value
                    .as_deref()
                    .map_or("nothing".to_string(), |v| format!("`{v}`")),
                secs(s.missed.complete),
            ),
            figures,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hadrill_model::{Role, Stamp};

    const SET: OpKind = OpKind::new("set");
    const READ: OpKind = OpKind::new("read");

    fn op(kind: OpKind, value: Option<&str>, ms: (u64, u64), outcome: Outcome) -> OpRecord {
        OpRecord {
            id: ms.0,
            client: "c".into(),
            role: Role::User,
            kind,
            key: Some("k".into()),
            value: value.map(str::to_string),
            invoke: Stamp(ms.0 * 1_000_000),
            complete: Stamp(ms.1 * 1_000_000),
            outcome,
            error: None,
            status: None,
            node: None,
            version: None,
        }
    }

    fn judge(history: &[OpRecord]) -> Vec<(u64, u64)> {
        stale_reads(history, &[SET], &READ)
            .1
            .iter()
            .map(|s| (s.read.id, s.missed.id))
            .collect()
    }

    #[test]
    fn a_read_must_observe_every_write_acknowledged_before_it_began() {
        let w1 = op(SET, Some("1"), (0, 10), Outcome::Ok);
        let w2 = op(SET, Some("2"), (20, 30), Outcome::Ok);
        // Fresh: the latest value, and a read concurrent with the write that replaced it.
        assert!(
            judge(&[
                w1.clone(),
                w2.clone(),
                op(READ, Some("2"), (40, 41), Outcome::Ok)
            ])
            .is_empty()
        );
        assert!(
            judge(&[
                w1.clone(),
                w2.clone(),
                op(READ, Some("1"), (25, 26), Outcome::Ok)
            ])
            .is_empty()
        );
        // Stale: an older value after the newer write was acknowledged, or nothing at all.
        assert_eq!(
            judge(&[
                w1.clone(),
                w2.clone(),
                op(READ, Some("1"), (40, 41), Outcome::Ok)
            ]),
            vec![(40, 20)]
        );
        assert_eq!(
            judge(&[w1.clone(), op(READ, None, (15, 16), Outcome::Ok)]),
            vec![(15, 0)]
        );
        // A failed read says nothing.
        assert!(judge(&[w1.clone(), op(READ, None, (15, 16), Outcome::Fail)]).is_empty());
    }

    #[test]
    fn an_unknown_write_may_or_may_not_be_observed() {
        let w1 = op(SET, Some("1"), (0, 10), Outcome::Ok);
        let maybe = op(SET, Some("2"), (20, 30), Outcome::Unknown);
        for seen in ["1", "2"] {
            let read = op(READ, Some(seen), (40, 41), Outcome::Ok);
            assert!(
                judge(&[w1.clone(), maybe.clone(), read]).is_empty(),
                "{seen}"
            );
        }
        // Nothing acknowledged yet: absent is fresh.
        assert!(judge(&[maybe, op(READ, None, (40, 41), Outcome::Ok)]).is_empty());
    }

    #[test]
    fn the_verdict_names_the_first_stale_read_and_the_write_it_missed() {
        let history: Vec<Event> = [
            op(SET, Some("1"), (0, 10), Outcome::Ok),
            op(READ, None, (1500, 1501), Outcome::Ok),
        ]
        .into_iter()
        .map(Event::Op)
        .collect();
        let r = fresh_reads("redis", &history, &[SET], &READ);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(
            r.summary,
            "redis: 1 of 1 reads stale; the first, of `k` at t=1.50s, read nothing, missing the write acknowledged at t=0.01s"
        );
        let none = fresh_reads("redis", &history[..1], &[SET], &READ);
        assert_eq!(none.verdict, Verdict::Unknown);
    }
}
