//! Continuity of acknowledged writes, for any store: every write the system acknowledged is
//! held afterwards (with the value written, where one was recorded); a write refused for
//! certain is not; unknown writes are reported apart with how many took effect; anything held
//! that no write explains is a defect. The SQL set workload and any workload of a user's own
//! are judged by this one audit.

use std::collections::BTreeMap;

use serde_json::json;

use super::{judged, secs};
use hadrill_model::{
    Budgets, Check, CheckResult, Event, Evidence, OpKind, OpRecord, Outcome, Restore, StoreRead,
    Verdict, ops,
};

/// Writes of one kind set against what the store holds afterwards.
pub(crate) struct Audit<'a> {
    pub acked: BTreeMap<&'a str, &'a OpRecord>,
    pub unknown: BTreeMap<&'a str, &'a OpRecord>,
    pub failed: BTreeMap<&'a str, &'a OpRecord>,
    /// Acknowledged and not held, or held with another value than the one written.
    pub lost: Vec<&'a OpRecord>,
    /// As `lost`, but acknowledged after a backup that a restore then brought back: gone by
    /// design, within the recovery point (`Restore::at_risk`), not a defect.
    pub within_rpo: Vec<&'a OpRecord>,
    /// Whether the run restored a backup (`within_rpo` is reported only then).
    pub restored: bool,
    pub unknown_took_effect: usize,
    /// Refused for certain, and held anyway.
    pub failed_present: Vec<&'a str>,
    /// Held, and no write of this kind explains it.
    pub unexplained: Vec<&'a str>,
}

impl<'a> Audit<'a> {
    /// `held`: key → value held (`None`: the store says only that the key is there);
    /// `restore`: the run's backup and restore, if it restored one.
    pub fn new(
        writes: &'a [OpRecord],
        kind: &OpKind,
        held: &'a BTreeMap<String, Option<String>>,
        restore: Option<&Restore>,
    ) -> Audit<'a> {
        let with = |outcome| -> BTreeMap<&'a str, &'a OpRecord> {
            writes
                .iter()
                .filter(|o| &o.kind == kind && o.outcome == outcome)
                .filter_map(|o| Some((o.key.as_deref()?, o)))
                .collect()
        };
        let (acked, unknown, failed) = (
            with(Outcome::Ok),
            with(Outcome::Unknown),
            with(Outcome::Fail),
        );
        let (within_rpo, lost) = acked
            .iter()
            .filter(|(k, o)| match (held.get(**k), &o.value) {
                (None, _) => true,
                (Some(Some(v)), Some(written)) => v != written,
                (Some(_), _) => false,
            })
            .map(|(_, o)| *o)
            .partition(|o| restore.is_some_and(|r| r.at_risk(o)));
        let unknown_took_effect = unknown.keys().filter(|k| held.contains_key(**k)).count();
        let failed_present = failed
            .keys()
            .filter(|k| held.contains_key(**k))
            .copied()
            .collect();
        let unexplained = held
            .keys()
            .map(String::as_str)
            .filter(|k| {
                !acked.contains_key(k) && !unknown.contains_key(k) && !failed.contains_key(k)
            })
            .collect();
        Audit {
            acked,
            unknown,
            failed,
            lost,
            within_rpo,
            restored: restore.is_some(),
            unknown_took_effect,
            failed_present,
            unexplained,
        }
    }

    /// The figures every continuity check reports, under the same names; each check adds
    /// what is its own (how many the store holds, under its own word).
    pub fn figures(&self, budgets: &Budgets) -> serde_json::Value {
        let lost_span = (
            self.lost.iter().map(|o| o.complete).min().map(secs),
            self.lost.iter().map(|o| o.complete).max().map(secs),
        );
        let mut figures = json!({
            "acknowledged": self.acked.len(),
            "verified": self.acked.len() - self.lost.len() - self.within_rpo.len(),
            "lost": self.lost.len(),
            "lost_acknowledged_between_s": [lost_span.0, lost_span.1],
            "lost_keys": self.lost.iter().take(50).filter_map(|o| o.key.clone()).collect::<Vec<_>>(),
            "failed_but_present": self.failed_present.iter().take(50).collect::<Vec<_>>(),
            "unknown_that_took_effect": self.unknown_took_effect,
            "unexplained_keys": self.unexplained.iter().take(50).collect::<Vec<_>>(),
            "budget_lost": budgets.max_lost_writes,
        });
        if self.restored {
            figures["lost_within_rpo"] = json!(self.within_rpo.len());
        }
        figures
    }

    /// What makes the check fail; `writes` names them (`commits`, `writes`).
    pub fn problems(&self, writes: &str, budgets: &Budgets) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lost.len() as u64 > budgets.max_lost_writes {
            problems.push(format!(
                "lost {} acknowledged {writes} (budget {})",
                self.lost.len(),
                budgets.max_lost_writes
            ));
        }
        if !self.failed_present.is_empty() {
            problems.push(format!(
                "{} {writes} refused by the server are present anyway",
                self.failed_present.len()
            ));
        }
        if !self.unexplained.is_empty() {
            problems.push(format!("{} keys no write explains", self.unexplained.len()));
        }
        problems
    }

    /// Nothing acknowledged: nothing proven.
    pub fn clean(&self) -> Verdict {
        if self.acked.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Pass
        }
    }
}

/// The continuity of a workload's writes of `kinds`, against its final read (a
/// `StoreRead`): a code workload's, or a declarative one's (`[http]`).
pub struct WriteContinuity {
    pub workload: String,
    pub kinds: Vec<OpKind>,
}

impl Check for WriteContinuity {
    fn name(&self) -> &str {
        "continuity"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        continuity(
            &self.workload,
            e.events,
            &self.kinds,
            &e.final_read(&self.workload),
            e.budgets,
        )
    }
}

/// Every acknowledged write of `kinds` against what `workload`'s store holds: per kind, what
/// was acknowledged, verified, lost, unknown (and took effect), and could not be read back.
/// A key that could not be read back is neither verified nor lost: with any, a clean audit
/// is `unknown`.
pub fn continuity(
    workload: &str,
    events: &[Event],
    kinds: &[OpKind],
    read: &Result<StoreRead, String>,
    budgets: &Budgets,
) -> CheckResult {
    let writes = ops(events);
    let restore = Restore::of(events);
    let read = match read {
        Ok(r) => r,
        Err(why) => return CheckResult::unknown("continuity", why.clone()),
    };
    let held = read
        .held
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect::<BTreeMap<_, _>>();
    let mut problems = Vec::new();
    let mut lines = Vec::new();
    let mut per_kind = serde_json::Map::new();
    let mut verdicts = Vec::new();
    // Summed over the kinds, so a reader of the figures need not know the kinds' names.
    let mut totals = [0usize; 4];
    // Keys held that no write of any of the kinds explains.
    let explained = |k: &str| {
        writes
            .iter()
            .any(|o| o.kind.is_any(kinds) && o.key.as_deref() == Some(k))
    };
    let unexplained: Vec<&str> = held
        .keys()
        .map(String::as_str)
        .filter(|k| !read.unreadable.contains_key(*k) && !explained(k))
        .collect();
    for kind in kinds {
        let mut audit = Audit::new(&writes, kind, &held, restore.as_ref());
        // Judged against every kind at once, below.
        audit.unexplained.clear();
        let unreadable: Vec<(&str, &str)> = audit
            .acked
            .keys()
            .filter_map(|k| read.unreadable.get(*k).map(|why| (*k, why.as_str())))
            .collect();
        let readable = |o: &&OpRecord| {
            !o.key
                .as_deref()
                .is_some_and(|k| read.unreadable.contains_key(k))
        };
        audit.lost.retain(readable);
        audit.within_rpo.retain(readable);
        let verified =
            audit.acked.len() - audit.lost.len() - audit.within_rpo.len() - unreadable.len();
        for (total, n) in totals.iter_mut().zip([
            audit.acked.len(),
            verified,
            audit.lost.len(),
            unreadable.len(),
        ]) {
            *total += n;
        }
        lines.push(format!(
            "{} acknowledged `{kind}`, {verified} verified, {} lost, {} unknown ({} took effect){}",
            audit.acked.len(),
            audit.lost.len(),
            audit.unknown.len(),
            audit.unknown_took_effect,
            if unreadable.is_empty() {
                String::new()
            } else {
                format!(", {} not readable", unreadable.len())
            }
        ));
        problems.extend(audit.problems(&format!("`{kind}` writes"), budgets));
        let mut figures = audit.figures(budgets);
        figures["verified"] = json!(verified);
        figures["unreadable"] = json!(unreadable.len());
        figures["unreadable_detail"] = json!(
            unreadable
                .iter()
                .take(20)
                .map(|(k, why)| json!({ "key": k, "why": why }))
                .collect::<Vec<_>>()
        );
        per_kind.insert(kind.to_string(), figures);
        verdicts.push(if unreadable.is_empty() {
            audit.clean()
        } else {
            Verdict::Unknown
        });
    }
    if !unexplained.is_empty() {
        problems.push(format!("{} keys no write explains", unexplained.len()));
    }
    // Proven only when every kind is: one with nothing acknowledged proves nothing.
    let clean = if verdicts.iter().all(|v| *v == Verdict::Pass) {
        Verdict::Pass
    } else {
        Verdict::Unknown
    };
    let figures = json!({
        "workload": workload,
        "kinds": per_kind,
        "acknowledged": totals[0],
        "verified": totals[1],
        "lost": totals[2],
        "unreadable": totals[3],
        "held": held.len(),
        "unexplained_keys": unexplained.iter().take(50).collect::<Vec<_>>(),
        "budget_lost": budgets.max_lost_writes,
    });
    judged(
        "continuity",
        &problems,
        clean,
        format!("{workload}: {}", lines.join("; ")),
        figures,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Stamp;
    use hadrill_model::Role;

    fn write(key: &str, value: &str, outcome: Outcome) -> Event {
        Event::Op(OpRecord {
            id: 0,
            client: "orders-0".into(),
            role: Role::User,
            kind: OpKind::new("put"),
            key: Some(key.into()),
            value: Some(value.into()),
            invoke: Stamp(1),
            complete: Stamp(2),
            outcome,
            error: None,
            status: None,
            node: None,
            version: None,
        })
    }

    fn read(held: &[(&str, &str)]) -> StoreRead {
        StoreRead {
            held: held
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            unreadable: BTreeMap::new(),
        }
    }

    fn judge_read(events: &[Event], read: StoreRead) -> CheckResult {
        continuity(
            "orders",
            events,
            &[OpKind::new("put")],
            &Ok(read),
            &Budgets::default(),
        )
    }

    fn judge(events: &[Event], held: &[(&str, &str)]) -> CheckResult {
        judge_read(events, read(held))
    }

    #[test]
    fn every_acknowledged_write_held_passes() {
        let h = [
            write("a", "1", Outcome::Ok),
            write("b", "2", Outcome::Unknown),
        ];
        let r = judge(&h, &[("a", "1")]);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
    }

    /// Negative controls: a write lost, overwritten, refused-but-stored, or unexplained.
    #[test]
    fn lost_changed_refused_or_unexplained_writes_fail() {
        let ok = write("a", "1", Outcome::Ok);
        for (events, held) in [
            (vec![ok.clone()], vec![]),
            (vec![ok.clone()], vec![("a", "2")]),
            (
                vec![ok.clone(), write("b", "2", Outcome::Fail)],
                vec![("a", "1"), ("b", "2")],
            ),
            (vec![ok.clone()], vec![("a", "1"), ("z", "9")]),
        ] {
            let r = judge(&events, &held);
            assert_eq!(r.verdict, Verdict::Fail, "{held:?}: {}", r.summary);
        }
    }

    #[test]
    fn an_unread_store_or_no_acknowledged_write_is_unknown() {
        let h = [write("a", "1", Outcome::Ok)];
        let unread = continuity(
            "orders",
            &h,
            &[OpKind::new("put")],
            &Err("connection refused".into()),
            &Budgets::default(),
        );
        assert_eq!(unread.verdict, Verdict::Unknown);
        let none = judge(&[write("a", "1", Outcome::Unknown)], &[("a", "1")]);
        assert_eq!(none.verdict, Verdict::Unknown);
    }

    /// A write whose read-back could not decide is neither verified nor lost; an unknown
    /// write is never counted as acknowledged, nor as lost when it is absent.
    #[test]
    fn an_unreadable_key_is_unknown_and_an_unknown_write_is_never_lost() {
        let h = [
            write("a", "1", Outcome::Ok),
            write("b", "2", Outcome::Ok),
            write("c", "3", Outcome::Unknown),
        ];
        let mut r = read(&[("a", "1")]);
        r.unreadable.insert("b".into(), "HTTP 503".into());
        let result = judge_read(&h, r.clone());
        assert_eq!(result.verdict, Verdict::Unknown, "{}", result.summary);
        let put = &result.figures["kinds"]["put"];
        assert_eq!(
            (put["acknowledged"].as_u64(), put["lost"].as_u64()),
            (Some(2), Some(0))
        );
        assert_eq!(
            (put["verified"].as_u64(), put["unreadable"].as_u64()),
            (Some(1), Some(1))
        );
        // The same store with b gone for certain: lost, and the check fails naming it.
        r.unreadable.clear();
        let result = judge_read(&h, r);
        assert_eq!(result.verdict, Verdict::Fail);
        assert_eq!(result.figures["kinds"]["put"]["lost_keys"][0], "b");
        assert_eq!(result.figures["lost"], 1, "totals over the kinds");
        assert!(
            result.summary.contains("1 unknown (0 took effect)"),
            "{}",
            result.summary
        );
    }

    #[test]
    fn each_kind_is_audited_and_every_kind_must_be_proven() {
        let mut tag = write("t", "x", Outcome::Ok);
        if let Event::Op(o) = &mut tag {
            o.kind = OpKind::new("tag");
        }
        let h = [write("a", "1", Outcome::Ok), tag];
        let kinds = [OpKind::new("put"), OpKind::new("tag")];
        let both = continuity(
            "orders",
            &h,
            &kinds,
            &Ok(read(&[("a", "1"), ("t", "x")])),
            &Budgets::default(),
        );
        assert_eq!(both.verdict, Verdict::Pass, "{}", both.summary);
        let lost_tag = continuity(
            "orders",
            &h,
            &kinds,
            &Ok(read(&[("a", "1")])),
            &Budgets::default(),
        );
        assert_eq!(lost_tag.verdict, Verdict::Fail);
        assert!(
            lost_tag.summary.contains("`tag` writes"),
            "{}",
            lost_tag.summary
        );
    }
}
