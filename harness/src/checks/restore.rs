//! A backup and restore drill: was the backup restored, how old was the recovery point when the
//! data was destroyed (the RPO), and how long from the disaster to the install restored. Which
//! writes survived is continuity's to say: it holds every write acknowledged before the backup
//! and reports those acknowledged after it apart (`lost_within_rpo`).

use std::time::Duration;

use serde_json::json;

use super::{judged, secs};
use hadrill_model::{
    Check, CheckResult, Evidence, Mark, Outcome, Restore as Drill, Role, Verdict, faults, ops,
};

/// The `restore` check of a scenario whose steps take and restore a backup (`exec` with
/// `marks`).
pub struct Restore;

impl Check for Restore {
    fn name(&self) -> &str {
        "restore"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        let Some(drill) = Drill::of(e.events) else {
            let marked = |mark: Mark| {
                faults(e.events)
                    .into_iter()
                    .filter(|f| f.fault.marks() == Some(mark))
                    .map(|f| match f.outcome {
                        Outcome::Ok => format!("#{} ok", f.id),
                        _ => format!(
                            "#{} failed: {}",
                            f.id,
                            f.error.as_deref().unwrap_or("no reason recorded")
                        ),
                    })
                    .collect::<Vec<_>>()
            };
            let (backups, restores) = (marked(Mark::Backup), marked(Mark::Restore));
            return CheckResult::new(
                self.name(),
                Verdict::Fail,
                format!(
                    "no backup was restored: backup steps [{}], restore steps after one [{}]",
                    backups.join(", "),
                    restores.join(", ")
                ),
                json!({ "backups": backups, "restores": restores }),
            );
        };
        let before = ops(e.events)
            .iter()
            .filter(|o| {
                o.role == Role::User && o.outcome == Outcome::Ok && o.complete < drill.backup.start
            })
            .count();
        let ms = |d: Duration| d.as_millis() as u64;
        let figures = json!({
            "backup_step": drill.backup.id,
            "backup_at_s": secs(drill.backup.start),
            "backup_ms": ms(drill.backup.end.since(drill.backup.start)),
            "disaster_step": drill.disaster.as_ref().map(|d| d.id),
            "disaster_at_s": drill.disaster.as_ref().map(|d| secs(d.start)),
            "restore_step": drill.restore.id,
            "restore_ms": ms(drill.restore_time()),
            "rpo_ms": ms(drill.rpo()),
            "user_operations_before_backup": before,
            "budget_rpo_ms": e.budgets.max_rpo.map(ms),
            "budget_restore_ms": e.budgets.max_restore.map(ms),
        });
        let over = |what: &str, took: Duration, budget: Option<Duration>| {
            budget
                .filter(|b| took > *b)
                .map(|b| format!("{what} {} ms over its budget of {} ms", ms(took), ms(b)))
        };
        let problems: Vec<String> = [
            over("recovery point", drill.rpo(), e.budgets.max_rpo),
            over("restore", drill.restore_time(), e.budgets.max_restore),
        ]
        .into_iter()
        .flatten()
        .collect();
        let summary = format!(
            "backup #{} in {} ms; {}restored by #{} in {} ms; recovery point {} ms old at the disaster",
            drill.backup.id,
            ms(drill.backup.end.since(drill.backup.start)),
            drill
                .disaster
                .as_ref()
                .map(|d| format!(
                    "#{} {} destroyed {}, ",
                    d.id,
                    d.fault.name(),
                    d.nodes.join(",")
                ))
                .unwrap_or_default(),
            drill.restore.id,
            ms(drill.restore_time()),
            ms(drill.rpo()),
        );
        // A backup taken before any user's work was acknowledged proves nothing was kept.
        let clean = match before {
            0 => Verdict::Unknown,
            _ => Verdict::Pass,
        };
        let summary = match before {
            0 => format!("{summary}; no user operation was acknowledged before the backup"),
            _ => summary,
        };
        judged(self.name(), &problems, clean, summary, figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::op;
    use crate::clock::Stamp;
    use hadrill_model::{Budgets, Event, Fault, FaultRecord, OpKind};
    use std::collections::BTreeMap;

    fn ms(ms: u64) -> Stamp {
        Stamp(ms * 1_000_000)
    }

    fn step(id: u64, fault: Fault, from: u64, to: u64, outcome: Outcome) -> Event {
        let mut f = FaultRecord::applied(id, fault, &["backup"], ms(from), ms(to));
        f.outcome = outcome;
        f.error = (outcome != Outcome::Ok).then(|| "exit 1".into());
        Event::Fault(f)
    }

    fn exec(marks: Mark) -> Fault {
        Fault::Exec {
            node: "backup".into(),
            command: vec!["backup.sh".into()],
            expect: Default::default(),
            marks: Some(marks),
        }
    }

    fn upload(at: u64) -> Event {
        Event::Op(op(at, OpKind::new("upload"), at, Outcome::Ok))
    }

    fn drill(restore: Outcome) -> Vec<Event> {
        vec![
            upload(500),
            step(1, exec(Mark::Backup), 1_000, 2_000, Outcome::Ok),
            step(
                2,
                Fault::Replace {
                    targets: vec!["db".into()],
                    timeout: Duration::from_secs(10),
                },
                6_000,
                6_500,
                Outcome::Ok,
            ),
            step(3, exec(Mark::Restore), 7_000, 16_000, restore),
        ]
    }

    fn judge(events: &[Event], budgets: &Budgets) -> CheckResult {
        Restore.judge(&Evidence {
            events,
            budgets,
            finals: &BTreeMap::new(),
        })
    }

    #[test]
    fn a_restore_is_measured_and_held_to_its_budgets() {
        let budgets = Budgets {
            max_rpo: Some(Duration::from_secs(10)),
            max_restore: Some(Duration::from_secs(15)),
            ..Budgets::default()
        };
        let r = judge(&drill(Outcome::Ok), &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["rpo_ms"], 5_000);
        assert_eq!(r.figures["restore_ms"], 10_000);
        let tight = Budgets {
            max_restore: Some(Duration::from_secs(9)),
            ..budgets
        };
        let r = judge(&drill(Outcome::Ok), &tight);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.summary.contains("restore 10000 ms over"), "{}", r.summary);
    }

    #[test]
    fn a_failed_restore_fails_and_a_backup_of_nothing_proves_nothing() {
        let r = judge(&drill(Outcome::Fail), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.summary.contains("#3 failed: exit 1"), "{}", r.summary);
        let nothing_before = &drill(Outcome::Ok)[1..];
        let r = judge(nothing_before, &Budgets::default());
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
    }
}
