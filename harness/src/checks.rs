//! Checks: pure functions from the history (and a final read of the system) to a verdict with
//! the numbers behind it. A check that cannot decide says `unknown`, never `pass`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::clock::Stamp;
use crate::model::{
    Budgets, CheckResult, Content, Event, FaultRecord, FinalState, OpKind, OpRecord, Outcome,
    Verdict, faults, ops,
};

pub mod cluster;
pub mod database;

/// A stamp as seconds on the run clock, for figures.
fn secs(s: Stamp) -> f64 {
    s.as_duration().as_secs_f64()
}

/// A check's result from the problems it found: `fail`, naming them before the summary; or,
/// with none, `clean` (pass, or unknown when there was too little to judge) and the summary.
fn judged(
    check: &str,
    problems: &[String],
    clean: Verdict,
    summary: String,
    figures: serde_json::Value,
) -> CheckResult {
    if problems.is_empty() {
        result(check, clean, summary, figures)
    } else {
        let summary = format!("{}; {summary}", problems.join("; "));
        result(check, Verdict::Fail, summary, figures)
    }
}

fn result(
    check: &str,
    verdict: Verdict,
    summary: String,
    figures: serde_json::Value,
) -> CheckResult {
    CheckResult {
        check: check.into(),
        verdict,
        summary,
        figures,
        expected_to_fail: false,
    }
}

/// Every acknowledged upload is afterwards readable with identical bytes and its row present;
/// every acknowledged job is analysed exactly once in effect; no row exists that no upload
/// explains, and none points at a missing object. Unknown uploads are reported apart.
pub fn continuity(events: &[Event], state: Option<&FinalState>, budgets: &Budgets) -> CheckResult {
    let uploads: Vec<OpRecord> = ops(events)
        .into_iter()
        .filter(|o| o.kind == OpKind::Upload)
        .collect();
    let acked: BTreeMap<i64, String> = uploads
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| Some((o.key.as_ref()?.parse().ok()?, o.value.clone()?)))
        .collect();
    let unknown: BTreeSet<&str> = uploads
        .iter()
        .filter(|o| o.outcome == Outcome::Unknown)
        .filter_map(|o| o.value.as_deref())
        .collect();
    let failed = uploads
        .iter()
        .filter(|o| o.outcome == Outcome::Fail)
        .count();
    let Some(state) = state else {
        return result(
            "continuity",
            Verdict::Unknown,
            format!(
                "{} acknowledged uploads, but the final state could not be read",
                acked.len()
            ),
            json!({ "acknowledged": acked.len() }),
        );
    };

    let mut lost = Vec::new();
    // Acknowledged writes whose content could not be read back (a 503 or a timeout while
    // verifying): neither kept nor lost as far as the evidence goes.
    let mut unreadable = Vec::new();
    let mut unanalysed = Vec::new();
    let mut redelivered = 0;
    for (id, sha) in &acked {
        let why = match (state.rows.get(id), state.content.get(id)) {
            (None, _) => Some("row missing"),
            (Some(row), _) if row != sha => Some("row has another digest"),
            (_, Some(Content::Identical)) => None,
            (_, Some(Content::Differs)) => Some("content differs"),
            (_, Some(Content::Missing)) => Some("object missing"),
            (_, Some(Content::Unreadable(reason))) => {
                unreadable.push(json!({ "id": id, "why": reason }));
                continue;
            }
            (_, None) => {
                unreadable.push(json!({ "id": id, "why": "content not read" }));
                continue;
            }
        };
        if let Some(why) = why {
            lost.push(json!({ "id": id, "why": why }));
            continue;
        }
        let a = state.analyses.get(id).copied().unwrap_or_default();
        if a.results != 1 {
            unanalysed.push(*id);
        }
        redelivered += a.attempts.saturating_sub(1);
    }
    let mut orphans = Vec::new();
    let mut unknown_took_effect = 0;
    for (id, sha) in &state.rows {
        if acked.contains_key(id) {
            continue;
        }
        if state.content.get(id) == Some(&Content::Missing) {
            orphans.push(json!({ "id": id, "why": "row points at a missing object" }));
        } else if unknown.contains(sha.as_str()) {
            unknown_took_effect += 1;
        } else {
            orphans.push(json!({ "id": id, "why": "no upload explains this row" }));
        }
    }
    let verified = acked.len() - lost.len() - unreadable.len();
    let figures = json!({
        "acknowledged": acked.len(),
        "verified": verified,
        "lost": lost.len(),
        "lost_detail": lost,
        "unreadable": unreadable.len(),
        "unreadable_detail": unreadable,
        "failed_uploads": failed,
        "unknown_uploads": unknown.len(),
        "unknown_that_took_effect": unknown_took_effect,
        "unanalysed": unanalysed.len(),
        "unanalysed_ids": unanalysed,
        "redelivered_jobs": redelivered,
        "orphan_rows": orphans.len(),
        "orphan_detail": orphans,
        "budget_lost": budgets.max_lost_writes,
    });
    let mut problems = Vec::new();
    if lost.len() as u64 > budgets.max_lost_writes {
        problems.push(format!(
            "lost {} acknowledged writes (budget {})",
            lost.len(),
            budgets.max_lost_writes
        ));
    }
    if !unanalysed.is_empty() {
        problems.push(format!(
            "{} acknowledged jobs never analysed",
            unanalysed.len()
        ));
    }
    if !orphans.is_empty() {
        problems.push(format!("{} orphan rows", orphans.len()));
    }
    let mut summary = format!(
        "{} acknowledged, {} verified, {} lost, {} unknown ({} took effect), {} redelivered jobs",
        acked.len(),
        verified,
        lost.len(),
        unknown.len(),
        unknown_took_effect,
        redelivered
    );
    let clean = if unreadable.is_empty() {
        Verdict::Pass
    } else {
        summary.push_str(&format!(
            "; {} acknowledged uploads could not be read back, so their fate is unknown",
            unreadable.len()
        ));
        Verdict::Unknown
    };
    judged("continuity", &problems, clean, summary, figures)
}

/// The services node's historian: one roll-up per slot, no slot missing between the first
/// and the last, and caught up to the present (slots missed during an outage done after it).
pub fn historian(state: Option<&FinalState>) -> CheckResult {
    let Some(state) = state.filter(|s| !s.rollup_slots.is_empty()) else {
        return result(
            "historian",
            Verdict::Unknown,
            "no roll-up was read".into(),
            json!({}),
        );
    };
    let slots = &state.rollup_slots;
    let (first, last) = (slots[0], slots[slots.len() - 1]);
    let distinct: BTreeSet<i64> = slots.iter().copied().collect();
    let missing: Vec<i64> = (first..=last).filter(|s| !distinct.contains(s)).collect();
    let duplicates = slots.len() - distinct.len();
    // The last completed slot may still be in the works: allow two slots of lag.
    let behind = (state.current_slot - 1 - last).max(0);
    let figures = json!({
        "slots": slots.len(), "first": first, "last": last,
        "missing": missing, "duplicates": duplicates, "slots_behind": behind,
    });
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("{} slots never rolled up", missing.len()));
    }
    if duplicates > 0 {
        problems.push(format!("{duplicates} slots rolled up twice"));
    }
    if behind > 2 {
        problems.push(format!("{behind} slots behind: not caught up"));
    }
    if problems.is_empty() {
        let summary = format!("{} slots, each once, none missing, caught up", slots.len());
        result("historian", Verdict::Pass, summary, figures)
    } else {
        result("historian", Verdict::Fail, problems.join("; "), figures)
    }
}

/// Latency and success of the operations in `[from, to)`.
fn phase(probes: &[&OpRecord], from: Stamp, to: Stamp) -> serde_json::Value {
    let inside: Vec<&&OpRecord> = probes
        .iter()
        .filter(|p| p.invoke >= from && p.invoke < to)
        .collect();
    let ok = inside.iter().filter(|p| p.outcome == Outcome::Ok).count();
    let mut lat: Vec<f64> = inside
        .iter()
        .filter(|p| p.outcome == Outcome::Ok)
        .map(|p| p.complete.since(p.invoke).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    json!({
        "probes": inside.len(),
        "success_rate": if inside.is_empty() { None } else { Some(ok as f64 / inside.len() as f64) },
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    })
}

/// Per fault: the unavailability window (fault start → the first successful probe after the
/// last failed one), and success rate and latency before, during and after.
pub fn availability(events: &[Event], probe_period: Duration, budgets: &Budgets) -> CheckResult {
    let all_ops = ops(events);
    let mut probes: Vec<&OpRecord> = all_ops.iter().filter(|o| o.kind == OpKind::Probe).collect();
    probes.sort_by_key(|p| p.invoke);
    let faults: Vec<FaultRecord> = faults(events);
    let user_failures = all_ops
        .iter()
        .filter(|o| {
            matches!(
                o.kind,
                OpKind::Upload
                    | OpKind::Read
                    | OpKind::Session
                    | OpKind::Login
                    | OpKind::Insert
                    | OpKind::ReadBack
            )
        })
        .filter(|o| {
            (o.client.starts_with("user-") || o.client.starts_with("sql-"))
                && o.outcome != Outcome::Ok
        })
        .count() as u64;
    let end = probes.last().map_or(Stamp(0), |p| p.invoke);
    let mut windows = Vec::new();
    let mut worst: Option<Duration> = Some(Duration::ZERO);
    let mut last_recovery = faults.first().map_or(Stamp(0), |f| f.start);
    for (i, f) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map_or(end, |n| n.start);
        let in_window: Vec<&&OpRecord> = probes
            .iter()
            .filter(|p| p.invoke >= f.start && p.invoke < until)
            .collect();
        let last_failure = in_window.iter().rev().find(|p| p.outcome != Outcome::Ok);
        let (window, uncertainty, recovered) = match last_failure {
            None => (Some(Duration::ZERO), Some(Duration::ZERO), Some(f.start)),
            Some(lf) => match probes
                .iter()
                .find(|p| p.invoke > lf.invoke && p.outcome == Outcome::Ok)
            {
                Some(ok) => {
                    // The outage may outlast this fault's window: the uncertainty is the gap to
                    // the last failure before that first success, wherever it fell.
                    let before = probes
                        .iter()
                        .filter(|p| p.invoke < ok.invoke && p.outcome != Outcome::Ok)
                        .map(|p| p.invoke)
                        .max()
                        .unwrap_or(lf.invoke);
                    (
                        Some(ok.invoke.since(f.start)),
                        Some(ok.invoke.since(before)),
                        Some(ok.invoke),
                    )
                }
                None => (None, None, None),
            },
        };
        worst = match (worst, window) {
            (Some(w), Some(x)) => Some(w.max(x)),
            _ => None,
        };
        if let Some(r) = recovered {
            last_recovery = last_recovery.max(r);
        }
        windows.push(json!({
            "fault": f.id,
            "kind": f.fault.name(),
            "nodes": f.nodes,
            "start_s": f.start.as_duration().as_secs_f64(),
            "unavailable_ms": window.map(|w| w.as_millis() as u64),
            "uncertainty_ms": uncertainty.map(|w| w.as_millis() as u64),
            "failed_probes": in_window.iter().filter(|p| p.outcome != Outcome::Ok).count(),
        }));
    }
    let first = faults.first().map_or(end, |f| f.start);
    let figures = json!({
        "resolution_ms": probe_period.as_millis() as u64,
        "windows": windows,
        "worst_unavailable_ms": worst.map(|w| w.as_millis() as u64),
        "failed_user_requests": user_failures,
        "before": phase(&probes, Stamp(0), first),
        "during": phase(&probes, first, last_recovery.max(first)),
        "after": phase(&probes, last_recovery.max(first), Stamp(u64::MAX)),
        "budget_unavailable_ms": budgets.max_unavailability.map(|d| d.as_millis() as u64),
        "budget_failed_requests": budgets.max_failed_requests,
    });
    if probes.is_empty() {
        return result(
            "availability",
            Verdict::Unknown,
            "no probe ran".into(),
            figures,
        );
    }
    let mut problems = Vec::new();
    match (worst, budgets.max_unavailability) {
        (None, _) => problems.push("the service never recovered after a fault".to_string()),
        (Some(w), Some(b)) if w > b => problems.push(format!(
            "unavailable for {} ms, budget {} ms",
            w.as_millis(),
            b.as_millis()
        )),
        _ => {}
    }
    if let Some(b) = budgets.max_failed_requests
        && user_failures > b
    {
        problems.push(format!("{user_failures} failed user requests, budget {b}"));
    }
    let summary = format!(
        "worst unavailability {} (±{} ms resolution), {} failed user requests",
        worst.map_or("never recovered".into(), |w| format!(
            "{} ms",
            w.as_millis()
        )),
        probe_period.as_millis(),
        user_failures
    );
    judged("availability", &problems, Verdict::Pass, summary, figures)
}

/// Sessions issued before a failover keep working after it. After a secret rotation, every
/// cookie from before it is rejected by every app server, and new logins work.
pub fn sessions(events: &[Event]) -> CheckResult {
    let all = ops(events);
    let rotation = faults(events)
        .into_iter()
        .filter(|f| f.fault.name() == "rotate-secret" && f.outcome == Outcome::Ok)
        .map(|f| f.start)
        .min();
    let checks: Vec<&OpRecord> = all.iter().filter(|o| o.kind == OpKind::Session).collect();
    let rejected = |o: &&&OpRecord| o.error.as_deref() == Some("session rejected");
    let rejected_before_rotation: Vec<&&OpRecord> = checks
        .iter()
        .filter(rejected)
        .filter(|o| rotation.is_none_or(|r| o.invoke < r))
        .collect();
    let old: Vec<&OpRecord> = all
        .iter()
        .filter(|o| o.kind == OpKind::OldSession)
        .collect();
    let old_accepted: Vec<String> = old
        .iter()
        .filter(|o| o.error.as_deref() != Some("HTTP 401"))
        .map(|o| {
            format!(
                "{} on {}",
                o.value.clone().unwrap_or_default(),
                o.key.clone().unwrap_or_default()
            )
        })
        .collect();
    let logins_after = rotation.map(|r| {
        let after: Vec<&OpRecord> = all
            .iter()
            .filter(|o| o.kind == OpKind::Login && o.invoke > r)
            .collect();
        (
            after.iter().filter(|o| o.outcome == Outcome::Ok).count(),
            after.len(),
        )
    });
    let figures = json!({
        "session_checks": checks.len(),
        "rejected_without_rotation": rejected_before_rotation.len(),
        "rotation_at_s": rotation.map(|r| r.as_duration().as_secs_f64()),
        "old_cookies_tried": old.len(),
        "old_cookies_accepted": old_accepted,
        "logins_after_rotation_ok": logins_after.map(|l| l.0),
        "logins_after_rotation": logins_after.map(|l| l.1),
    });
    let mut problems = Vec::new();
    if !rejected_before_rotation.is_empty() {
        problems.push(format!(
            "{} valid sessions were rejected",
            rejected_before_rotation.len()
        ));
    }
    if rotation.is_some() {
        if old.is_empty() {
            return result(
                "sessions",
                Verdict::Unknown,
                "secret rotated, but no old cookie was tried".into(),
                figures,
            );
        }
        if !old_accepted.is_empty() {
            problems.push(format!(
                "old cookies still accepted after rotation: {}",
                old_accepted.join(", ")
            ));
        }
        if logins_after.is_none_or(|(ok, _)| ok == 0) {
            problems.push("no login succeeded after the rotation".into());
        }
    } else if checks.is_empty() {
        return result(
            "sessions",
            Verdict::Unknown,
            "no session was checked".into(),
            figures,
        );
    }
    let summary = match rotation {
        Some(_) => format!(
            "{} old cookies tried, all rejected; new logins work",
            old.len()
        ),
        None => format!("{} session checks, none rejected", checks.len()),
    };
    if problems.is_empty() {
        result("sessions", Verdict::Pass, summary, figures)
    } else {
        result("sessions", Verdict::Fail, problems.join("; "), figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Analysed, Fault};

    fn op(id: u64, kind: OpKind, at_ms: u64, outcome: Outcome) -> OpRecord {
        OpRecord {
            id,
            client: if kind == OpKind::Probe {
                "probe".into()
            } else {
                "user-0".into()
            },
            kind,
            key: None,
            value: None,
            invoke: Stamp(at_ms * 1_000_000),
            complete: Stamp(at_ms * 1_000_000 + 5_000_000),
            outcome,
            error: (outcome != Outcome::Ok).then(|| "HTTP 503".into()),
            node: None,
        }
    }

    fn upload(id: u64, trace: i64, sha: &str, outcome: Outcome) -> Event {
        let mut o = op(id, OpKind::Upload, id * 10, outcome);
        o.key = (outcome == Outcome::Ok).then(|| trace.to_string());
        o.value = Some(sha.into());
        Event::Op(o)
    }

    fn fault(id: u64, kind: Fault, at_ms: u64) -> Event {
        Event::Fault(FaultRecord {
            id,
            fault: kind,
            nodes: vec!["app1".into()],
            start: Stamp(at_ms * 1_000_000),
            end: Stamp(at_ms * 1_000_000 + 1_000_000),
            outcome: Outcome::Ok,
            error: None,
            notes: vec![],
        })
    }

    fn kill() -> Fault {
        Fault::Kill {
            targets: vec!["app1".into()],
        }
    }

    /// Two acknowledged uploads, stored, analysed once each.
    fn good() -> (Vec<Event>, FinalState) {
        let events = vec![
            upload(1, 1, "a", Outcome::Ok),
            upload(2, 2, "b", Outcome::Ok),
        ];
        let mut s = FinalState::default();
        for (id, sha) in [(1, "a"), (2, "b")] {
            s.rows.insert(id, sha.into());
            s.content.insert(id, Content::Identical);
            s.analyses.insert(
                id,
                Analysed {
                    results: 1,
                    attempts: 1,
                },
            );
        }
        (events, s)
    }

    #[test]
    fn an_expected_failure_counts_only_when_the_check_fails() {
        let mut c = result("single-primary", Verdict::Fail, String::new(), json!({}));
        assert_eq!(c.effective(), Verdict::Fail);
        c.expected_to_fail = true;
        assert_eq!(c.effective(), Verdict::Pass);
        c.verdict = Verdict::Pass;
        assert_eq!(c.effective(), Verdict::Fail);
        c.verdict = Verdict::Unknown;
        assert_eq!(c.effective(), Verdict::Unknown);
    }

    #[test]
    fn continuity_passes_when_everything_acknowledged_is_there() {
        let (e, s) = good();
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
    }

    #[test]
    fn a_lost_acknowledged_write_fails() {
        let (e, mut s) = good();
        s.content.insert(2, Content::Missing);
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary.contains("lost 1 acknowledged writes (budget 0)"),
            "{}",
            r.summary
        );
        let (e, mut s) = good();
        s.rows.remove(&1);
        assert_eq!(
            continuity(&e, Some(&s), &Budgets::default()).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn an_unreadable_write_is_unknown_not_lost() {
        let (e, mut s) = good();
        s.content.insert(
            2,
            Content::Unreadable("HTTP 503: no server is available".into()),
        );
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
        assert_eq!(r.figures["lost"], 0);
        assert_eq!(r.figures["unreadable"], 1);
        assert_eq!(r.figures["verified"], 1);
        assert!(
            r.summary.contains("could not be read back"),
            "{}",
            r.summary
        );
        // Content never read at all is no evidence of loss either.
        let (e, mut s) = good();
        s.content.remove(&1);
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
        assert_eq!(r.figures["lost"], 0);
        // A real loss still fails when another write is unreadable.
        let (e, mut s) = good();
        s.content.insert(1, Content::Missing);
        s.content.insert(2, Content::Unreadable("timed out".into()));
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert_eq!(r.figures["lost"], 1);
    }

    #[test]
    fn a_job_never_analysed_fails_and_a_redelivery_is_only_counted() {
        let (e, mut s) = good();
        s.analyses.insert(
            2,
            Analysed {
                results: 1,
                attempts: 2,
            },
        );
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.figures["redelivered_jobs"], 1);
        s.analyses.insert(
            1,
            Analysed {
                results: 0,
                attempts: 3,
            },
        );
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary.contains("1 acknowledged jobs never analysed"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn an_orphan_row_fails_but_an_unknown_upload_that_took_effect_does_not() {
        let (mut e, mut s) = good();
        s.rows.insert(3, "c".into());
        s.content.insert(3, Content::Identical);
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail, "a row no upload explains");
        e.push(upload(3, 3, "c", Outcome::Unknown));
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["unknown_that_took_effect"], 1);
        // A row pointing at a missing object is never fine.
        s.content.insert(3, Content::Missing);
        assert_eq!(
            continuity(&e, Some(&s), &Budgets::default()).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn historian_slots_missing_or_behind_fail() {
        let state = |slots: Vec<i64>, current| FinalState {
            rollup_slots: slots,
            current_slot: current,
            ..Default::default()
        };
        assert_eq!(
            historian(Some(&state(vec![10, 11, 12, 13], 14))).verdict,
            Verdict::Pass
        );
        let r = historian(Some(&state(vec![10, 11, 13], 14)));
        assert_eq!(r.verdict, Verdict::Fail, "a gap");
        assert!(r.summary.contains("1 slots never rolled up"));
        assert_eq!(
            historian(Some(&state(vec![10, 11, 11], 12))).verdict,
            Verdict::Fail,
            "a duplicate"
        );
        assert_eq!(
            historian(Some(&state(vec![10, 11], 20))).verdict,
            Verdict::Fail,
            "not caught up"
        );
        assert_eq!(historian(None).verdict, Verdict::Unknown);
    }

    #[test]
    fn no_final_state_is_unknown_not_pass() {
        let (e, _) = good();
        assert_eq!(
            continuity(&e, None, &Budgets::default()).verdict,
            Verdict::Unknown
        );
    }

    /// Probes every 50 ms from 0 to 10 s; failing from 3 000 ms to `recover_ms`; a kill at 3 s.
    fn outage(recover_ms: u64) -> Vec<Event> {
        let mut e = vec![fault(1, kill(), 3000)];
        for (i, t) in (0..10_000).step_by(50).enumerate() {
            let bad = (3000..recover_ms).contains(&t);
            e.push(Event::Op(op(
                i as u64,
                OpKind::Probe,
                t,
                if bad { Outcome::Fail } else { Outcome::Ok },
            )));
        }
        e
    }

    #[test]
    fn availability_measures_the_window_and_judges_it_against_the_budget() {
        let budgets = Budgets {
            max_unavailability: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let r = availability(&outage(4500), Duration::from_millis(50), &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["worst_unavailable_ms"], 1500);
        assert_eq!(r.figures["uncertainty_ms"], serde_json::Value::Null);
        assert_eq!(r.figures["windows"][0]["uncertainty_ms"], 50);

        let r = availability(&outage(6000), Duration::from_millis(50), &budgets);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary
                .contains("unavailable for 3000 ms, budget 2000 ms"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn never_recovering_fails_and_no_probe_is_unknown() {
        let r = availability(
            &outage(20_000),
            Duration::from_millis(50),
            &Budgets::default(),
        );
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.summary.contains("never recovered"));
        let r = availability(
            &[fault(1, kill(), 0)],
            Duration::from_millis(50),
            &Budgets::default(),
        );
        assert_eq!(r.verdict, Verdict::Unknown);
    }

    #[test]
    fn failed_user_requests_are_judged_against_their_budget() {
        let mut e = outage(3000);
        e.push(Event::Op(op(999, OpKind::Upload, 3100, Outcome::Unknown)));
        let zero = Budgets {
            max_failed_requests: Some(0),
            ..Default::default()
        };
        let r = availability(&e, Duration::from_millis(50), &zero);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary.contains("1 failed user requests, budget 0"),
            "{}",
            r.summary
        );
    }

    fn session_op(id: u64, at_ms: u64, rejected: bool) -> Event {
        let mut o = op(
            id,
            OpKind::Session,
            at_ms,
            if rejected { Outcome::Fail } else { Outcome::Ok },
        );
        o.error = rejected.then(|| "session rejected".into());
        Event::Op(o)
    }

    fn old_cookie(id: u64, app: &str, status: u16) -> Event {
        let mut o = op(
            id,
            OpKind::OldSession,
            9000,
            if status == 200 {
                Outcome::Ok
            } else {
                Outcome::Fail
            },
        );
        o.key = Some(app.into());
        o.value = Some("user-0".into());
        o.error = (status != 200).then(|| format!("HTTP {status}"));
        Event::Op(o)
    }

    #[test]
    fn a_session_rejected_after_a_failover_fails() {
        let e = vec![
            session_op(1, 1000, false),
            fault(1, kill(), 2000),
            session_op(2, 3000, false),
        ];
        assert_eq!(sessions(&e).verdict, Verdict::Pass);
        let e = vec![
            session_op(1, 1000, false),
            fault(1, kill(), 2000),
            session_op(2, 3000, true),
        ];
        assert_eq!(sessions(&e).verdict, Verdict::Fail);
    }

    #[test]
    fn after_rotation_an_old_cookie_still_accepted_fails() {
        let rotate = Fault::RotateSecret {
            secret: "SECRET_KEY".into(),
            targets: vec!["app".into()],
        };
        let mut login_after = op(50, OpKind::Login, 8000, Outcome::Ok);
        login_after.client = "verifier".into();
        let base = vec![
            session_op(1, 1000, false),
            fault(1, rotate, 2000),
            session_op(2, 3000, true),
            Event::Op(login_after),
        ];
        let mut ok = base.clone();
        ok.extend([old_cookie(10, "app1", 401), old_cookie(11, "app2", 401)]);
        assert_eq!(
            sessions(&ok).verdict,
            Verdict::Pass,
            "{}",
            sessions(&ok).summary
        );
        let mut bad = base.clone();
        bad.extend([old_cookie(10, "app1", 401), old_cookie(11, "app2", 200)]);
        let r = sessions(&bad);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.summary.contains("user-0 on app2"), "{}", r.summary);
        assert_eq!(
            sessions(&base).verdict,
            Verdict::Unknown,
            "rotation without old cookies tried"
        );
    }
}
