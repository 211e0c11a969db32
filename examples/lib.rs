//! A user's own crate: a check and a workload of their own, and (in `tests/`) drills that use
//! them.

pub mod agents;
pub mod kv;

use std::collections::{BTreeMap, BTreeSet};

use hadrill::model::faults;
use hadrill::{Check, CheckResult, Event, Evidence, OpKind, Outcome, Role, Verdict};

/// Every client that acted as a user before the last fault wrote again after it: no client is
/// left stuck on a dead connection once the install has recovered. Judged from the history.
pub struct EveryClientRecovers {
    /// The kind of operation that counts as a write, e.g. `OpKind::INSERT`.
    pub write: OpKind,
}

impl Check for EveryClientRecovers {
    fn name(&self) -> &str {
        "every-client-recovers"
    }

    fn judge(&self, evidence: &Evidence<'_>) -> CheckResult {
        let events = evidence.events;
        let Some(last) = faults(events).into_iter().map(|f| f.end).max() else {
            return CheckResult::unknown(self.name(), "no fault was applied".into());
        };
        let mut after: BTreeMap<&str, usize> = BTreeMap::new();
        for e in events {
            if let Event::Op(o) = e
                && o.role == Role::User
                && o.kind == self.write
            {
                let n = after.entry(o.client.as_str()).or_default();
                if o.outcome == Outcome::Ok && o.invoke > last {
                    *n += 1;
                }
            }
        }
        if after.is_empty() {
            return CheckResult::unknown(self.name(), format!("no `{}` was recorded", self.write));
        }
        let stuck: BTreeSet<&str> = after
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(c, _)| *c)
            .collect();
        let figures = serde_json::json!({ "writes_after_last_fault": after, "stuck": stuck });
        if stuck.is_empty() {
            let summary = format!(
                "all {} clients wrote again after the last fault",
                after.len()
            );
            CheckResult::new(self.name(), Verdict::Pass, summary, figures)
        } else {
            let summary = format!(
                "{} of {} clients never wrote after the last fault: {}",
                stuck.len(),
                after.len(),
                stuck.iter().copied().collect::<Vec<_>>().join(", ")
            );
            CheckResult::new(self.name(), Verdict::Fail, summary, figures)
        }
    }
}

#[cfg(test)]
mod tests {
    use hadrill::clock::Stamp;
    use hadrill::model::{FaultRecord, OpRecord};

    use super::*;

    fn insert(client: &str, at_ms: u64, outcome: Outcome) -> Event {
        Event::Op(OpRecord {
            id: at_ms,
            client: client.into(),
            role: Role::User,
            kind: OpKind::INSERT,
            key: None,
            value: None,
            invoke: Stamp(at_ms * 1_000_000),
            complete: Stamp(at_ms * 1_000_000 + 1),
            outcome,
            error: None,
            status: None,
            node: None,
            version: None,
        })
    }

    fn kill_at(ms: u64) -> Event {
        Event::Fault(FaultRecord::applied(
            1,
            hadrill::Fault::kill(["pg1"]),
            &["pg1"],
            Stamp(ms * 1_000_000),
            Stamp(ms * 1_000_000 + 1),
        ))
    }

    fn verdict(events: &[Event]) -> Verdict {
        let check = EveryClientRecovers {
            write: OpKind::INSERT,
        };
        let evidence = Evidence {
            events,
            budgets: &hadrill::Budgets::default(),
            finals: &Default::default(),
        };
        check.judge(&evidence).verdict
    }

    #[test]
    fn passes_when_every_client_wrote_after_the_fault() {
        let h = [
            insert("sql-0", 1, Outcome::Ok),
            insert("sql-1", 2, Outcome::Ok),
            kill_at(10),
            insert("sql-0", 20, Outcome::Ok),
            insert("sql-1", 21, Outcome::Ok),
        ];
        assert_eq!(verdict(&h), Verdict::Pass);
    }

    /// The negative control: one client's writes only failed after the fault.
    #[test]
    fn fails_when_a_client_is_stuck() {
        let h = [
            insert("sql-0", 1, Outcome::Ok),
            insert("sql-1", 2, Outcome::Ok),
            kill_at(10),
            insert("sql-0", 20, Outcome::Ok),
            insert("sql-1", 21, Outcome::Unknown),
            insert("sql-1", 30, Outcome::Fail),
        ];
        assert_eq!(verdict(&h), Verdict::Fail);
    }

    #[test]
    fn without_a_fault_or_writes_it_cannot_decide() {
        assert_eq!(
            verdict(&[insert("sql-0", 1, Outcome::Ok)]),
            Verdict::Unknown
        );
        assert_eq!(verdict(&[kill_at(10)]), Verdict::Unknown);
    }
}
