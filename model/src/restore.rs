//! A backup and restore drill on the run's clock: the command that took the backup, the
//! disaster after it and the command that restored it. What was acknowledged before the
//! backup must survive; what was acknowledged between the backup and the end of the restore
//! may be gone by design (the recovery point), and counts against the RPO, not as a loss.

use crate::{Event, Fault, FaultRecord, Mark, OpRecord, Outcome, faults};

/// The backup, the disaster and the restore of a run, from its faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    /// The successful command marked `backup` that the restore brought back: the last one
    /// before the restore began.
    pub backup: FaultRecord,
    /// The first fault after the backup that is not an operator command: what destroyed
    /// the data (none: the restore was of an intact install).
    pub disaster: Option<FaultRecord>,
    /// The first successful command marked `restore` after the backup.
    pub restore: FaultRecord,
}

impl Restore {
    /// The run's backup and restore, if it took a backup and restored it successfully.
    pub fn of(events: &[Event]) -> Option<Restore> {
        let all = faults(events);
        let marked =
            |f: &FaultRecord, mark: Mark| f.outcome == Outcome::Ok && f.fault.marks() == Some(mark);
        let restore = all.iter().find(|r| {
            marked(r, Mark::Restore)
                && all
                    .iter()
                    .any(|b| b.end <= r.start && marked(b, Mark::Backup))
        })?;
        let backup = all
            .iter()
            .rfind(|b| b.end <= restore.start && marked(b, Mark::Backup))?;
        let disaster = all
            .iter()
            .find(|f| {
                f.start >= backup.end
                    && f.start <= restore.start
                    && !matches!(f.fault, Fault::Exec { .. })
            })
            .cloned();
        Some(Restore {
            backup: backup.clone(),
            disaster,
            restore: restore.clone(),
        })
    }

    /// Whether a write may be gone by design: acknowledged once the backup had begun, and
    /// sent before the restore ended. A write acknowledged before the backup began must be
    /// held; one sent after the restore, too.
    pub fn at_risk(&self, o: &OpRecord) -> bool {
        o.complete >= self.backup.start && o.invoke <= self.restore.end
    }

    /// The recovery point's age when the data was destroyed (or restored, with no
    /// disaster): how much acknowledged work a restore may lose.
    pub fn rpo(&self) -> std::time::Duration {
        let lost_at = self
            .disaster
            .as_ref()
            .map_or(self.restore.start, |d| d.start);
        lost_at.since(self.backup.start)
    }

    /// From the disaster (or the restore's start) to the restore's end.
    pub fn restore_time(&self) -> std::time::Duration {
        let from = self
            .disaster
            .as_ref()
            .map_or(self.restore.start, |d| d.start);
        self.restore.end.since(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpKind, Role, Stamp};
    use std::time::Duration;

    fn ms(ms: u64) -> Stamp {
        Stamp(ms * 1_000_000)
    }

    fn exec(id: u64, from_ms: u64, to_ms: u64, marks: Option<Mark>, outcome: Outcome) -> Event {
        let fault = Fault::Exec {
            node: "backup".into(),
            command: vec!["backup.sh".into()],
            expect: Default::default(),
            marks,
        };
        let mut f = FaultRecord::applied(id, fault, &["backup"], ms(from_ms), ms(to_ms));
        f.outcome = outcome;
        Event::Fault(f)
    }

    fn replace(id: u64, at_ms: u64) -> Event {
        let fault = Fault::Replace {
            targets: vec!["db".into()],
            timeout: Duration::from_secs(10),
        };
        Event::Fault(FaultRecord::applied(
            id,
            fault,
            &["db"],
            ms(at_ms),
            ms(at_ms + 500),
        ))
    }

    fn write(invoke_ms: u64, complete_ms: u64) -> OpRecord {
        OpRecord {
            id: invoke_ms,
            client: "user-0".into(),
            role: Role::User,
            kind: OpKind::new("upload"),
            key: None,
            value: None,
            invoke: ms(invoke_ms),
            complete: ms(complete_ms),
            outcome: Outcome::Ok,
            error: None,
            status: None,
            node: None,
            version: None,
        }
    }

    #[test]
    fn the_window_runs_from_the_backup_to_the_end_of_the_restore() {
        let events = vec![
            exec(1, 1_000, 1_500, Some(Mark::Backup), Outcome::Ok),
            exec(2, 3_000, 3_400, Some(Mark::Backup), Outcome::Ok),
            replace(3, 8_000),
            exec(4, 9_000, 12_000, Some(Mark::Restore), Outcome::Ok),
        ];
        let r = Restore::of(&events).expect("a restore");
        assert_eq!(
            r.backup.id, 2,
            "the last backup before the restore is the one restored"
        );
        assert_eq!(r.disaster.as_ref().map(|d| d.id), Some(3));
        assert_eq!(r.rpo(), Duration::from_millis(5_000));
        assert_eq!(r.restore_time(), Duration::from_millis(4_000));
        assert!(
            !r.at_risk(&write(2_000, 2_900)),
            "acknowledged before the backup"
        );
        assert!(
            r.at_risk(&write(2_900, 3_100)),
            "acknowledged as the backup began"
        );
        assert!(r.at_risk(&write(11_000, 11_500)));
        assert!(!r.at_risk(&write(12_100, 12_300)), "sent after the restore");
    }

    #[test]
    fn no_restore_without_a_successful_backup_and_restore() {
        let failed_restore = vec![
            exec(1, 1_000, 1_500, Some(Mark::Backup), Outcome::Ok),
            exec(2, 9_000, 12_000, Some(Mark::Restore), Outcome::Fail),
        ];
        assert_eq!(Restore::of(&failed_restore), None);
        let failed_backup = vec![
            exec(1, 1_000, 1_500, Some(Mark::Backup), Outcome::Fail),
            exec(2, 9_000, 12_000, Some(Mark::Restore), Outcome::Ok),
        ];
        assert_eq!(Restore::of(&failed_backup), None);
        let restore_first = vec![
            exec(1, 1_000, 1_500, Some(Mark::Restore), Outcome::Ok),
            exec(2, 9_000, 12_000, Some(Mark::Backup), Outcome::Ok),
        ];
        assert_eq!(Restore::of(&restore_first), None);
    }
}
