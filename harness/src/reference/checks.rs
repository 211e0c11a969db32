//! The reference product's own checks: every acknowledged upload readable with its bytes and
//! its row, every job analysed once in effect, the historian's roll-ups, and its sessions.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::finals::{Content, FinalState, WEB_READ};
use super::verbs;
use crate::checks::judged;
use hadrill_model::{
    Budgets, Check, CheckResult, Event, Evidence, OpRecord, Outcome, Restore, Verdict, faults, ops,
};

/// Every acknowledged upload is afterwards readable with identical bytes and its row present;
/// every acknowledged job is analysed exactly once in effect; no row exists that no upload
/// explains, and none points at a missing object. Unknown uploads are reported apart.
pub fn continuity(events: &[Event], state: Option<&FinalState>, budgets: &Budgets) -> CheckResult {
    let uploads: Vec<OpRecord> = ops(events)
        .into_iter()
        .filter(|o| o.kind == verbs::UPLOAD)
        .collect();
    // Not keyed by id: after a restore the database hands out again the ids of uploads that
    // were acknowledged after its backup, so two acknowledged uploads may share one.
    let acked: Vec<(i64, &OpRecord)> = uploads
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && o.value.is_some())
        .filter_map(|o| Some((o.key.as_ref()?.parse().ok()?, o)))
        .collect();
    let mut seen = BTreeSet::new();
    let ids_reused: BTreeSet<i64> = acked
        .iter()
        .filter(|(id, _)| !seen.insert(*id))
        .map(|(id, _)| *id)
        .collect();
    let restore = Restore::of(events);
    let at_risk = |o: &OpRecord| restore.as_ref().is_some_and(|r| r.at_risk(o));
    let unknown: BTreeSet<&str> = uploads
        .iter()
        .filter(|o| o.outcome == Outcome::Unknown)
        .filter_map(|o| o.value.as_deref())
        .collect();
    let refused: BTreeSet<&str> = uploads
        .iter()
        .filter(|o| o.outcome == Outcome::Fail)
        .filter_map(|o| o.value.as_deref())
        .collect();
    let Some(state) = state else {
        return CheckResult::new(
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
    // Acknowledged after a backup that a restore brought back: gone by design.
    let mut within_rpo = Vec::new();
    // Acknowledged writes whose content could not be read back (a 503 or a timeout while
    // verifying): neither kept nor lost as far as the evidence goes.
    let mut unreadable = Vec::new();
    let mut unanalysed = Vec::new();
    let mut redelivered = 0;
    for (id, upload) in &acked {
        let sha = upload.value.as_deref().unwrap_or_default();
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
            match at_risk(upload) {
                true => within_rpo.push(json!({ "id": id, "why": why })),
                false => lost.push(json!({ "id": id, "why": why })),
            }
            continue;
        }
        let a = state.analyses.get(id).copied().unwrap_or_default();
        // An analysis finished after the backup is gone with it when its job is not.
        if a.results != 1 && !at_risk(upload) {
            unanalysed.push(*id);
        }
        redelivered += a.attempts.saturating_sub(1);
    }
    let mut orphans = Vec::new();
    let mut unknown_took_effect = 0;
    // Each upload sent its own content once: a digest in more rows than uploads sent it was
    // stored twice (a load balancer or a client retried a write that had taken effect).
    let sent = |sha: &str| {
        uploads
            .iter()
            .filter(|o| o.value.as_deref() == Some(sha))
            .count()
    };
    let mut stored = BTreeMap::<&str, Vec<i64>>::new();
    for (id, sha) in &state.rows {
        stored.entry(sha.as_str()).or_default().push(*id);
    }
    let twice: Vec<serde_json::Value> = stored
        .iter()
        .filter(|(sha, ids)| ids.len() > sent(sha).max(1))
        .map(|(sha, ids)| json!({ "sha256": sha, "rows": ids, "uploads": sent(sha) }))
        .collect();
    let extra: BTreeSet<i64> = stored
        .iter()
        .filter(|(sha, ids)| ids.len() > sent(sha).max(1))
        .flat_map(|(sha, ids)| ids.iter().skip(sent(sha).max(1)).copied())
        .collect();
    for (id, sha) in &state.rows {
        if acked
            .iter()
            .any(|(i, o)| i == id && o.value.as_deref() == Some(sha.as_str()))
            || extra.contains(id)
        {
            continue;
        }
        if state.content.get(id) == Some(&Content::Missing) {
            orphans.push(json!({ "id": id, "why": "row points at a missing object" }));
        } else if unknown.contains(sha.as_str()) {
            unknown_took_effect += 1;
        } else if refused.contains(sha.as_str()) {
            // The product answered with a refusal and stored it anyway: a user who retries
            // gets a duplicate. Its answer should have said the outcome was unknown.
            orphans
                .push(json!({ "id": id, "why": "an upload answered with a refusal took effect" }));
        } else {
            orphans.push(json!({ "id": id, "why": "no upload explains this row" }));
        }
    }
    let verified = acked.len() - lost.len() - within_rpo.len() - unreadable.len();
    let mut figures = json!({
        "acknowledged": acked.len(),
        "verified": verified,
        "lost": lost.len(),
        "lost_detail": lost,
        "unreadable": unreadable.len(),
        "unreadable_detail": unreadable,
        "failed_uploads": refused.len(),
        "unknown_uploads": unknown.len(),
        "unknown_that_took_effect": unknown_took_effect,
        "unanalysed": unanalysed.len(),
        "unanalysed_ids": unanalysed,
        "redelivered_jobs": redelivered,
        "orphan_rows": orphans.len(),
        "orphan_detail": orphans,
        "stored_twice": twice.len(),
        "stored_twice_detail": twice.iter().take(20).collect::<Vec<_>>(),
        "budget_lost": budgets.max_lost_writes,
    });
    // After a restore, objects no row points at. The product stores an object before its row,
    // so an upload refused or left unknown may leave its object behind (storage to reclaim,
    // counted); one no such upload explains means the bucket and the database were brought
    // back to different points.
    let (left_behind, orphan_objects): (Vec<&String>, Vec<&String>) = state
        .objects
        .iter()
        .flatten()
        .filter(|o| !state.rows.values().any(|sha| sha == *o))
        .partition(|o| refused.contains(o.as_str()) || unknown.contains(o.as_str()));
    if let Some(objects) = &state.objects {
        figures["objects"] = json!(objects.len());
        figures["objects_left_by_refused_uploads"] = json!(left_behind.len());
        figures["orphan_objects"] = json!(orphan_objects.len());
        figures["orphan_objects_detail"] =
            json!(orphan_objects.iter().take(20).collect::<Vec<_>>());
    }
    if restore.is_some() {
        figures["lost_within_rpo"] = json!(within_rpo.len());
        figures["lost_within_rpo_detail"] = json!(within_rpo);
        figures["ids_reused"] = json!(ids_reused.len());
        figures["ids_reused_detail"] = json!(ids_reused.iter().take(50).collect::<Vec<_>>());
    }
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
        problems.push(format!(
            "{} rows no acknowledged or unknown upload explains ({})",
            orphans.len(),
            orphans[0]["why"].as_str().unwrap_or_default()
        ));
    }
    if let Some(first) = twice.first() {
        problems.push(format!(
            "{} uploads stored more than once (first: rows {} for one upload: the load balancer or a client repeated a write that had taken effect)",
            twice.len(),
            first["rows"]
        ));
    }
    if !orphan_objects.is_empty() {
        problems.push(format!(
            "{} objects in the bucket no row points at (first: {})",
            orphan_objects.len(),
            orphan_objects[0]
        ));
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
    if restore.is_some() {
        summary.push_str(&format!(
            "; {} acknowledged after the restored backup and gone with it (within the RPO), \
             {} of their ids given to later uploads",
            within_rpo.len(),
            ids_reused.len()
        ));
    }
    if let Some(objects) = &state.objects {
        summary.push_str(&format!(
            "; the bucket holds {} objects, {} of them left by refused uploads",
            objects.len(),
            left_behind.len()
        ));
    }
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

/// How many missing slots the historian's figures name.
const MISSING_LISTED: usize = 100;

/// The services node's historian: one roll-up per slot, no slot missing between the first
/// and the last, and caught up to the present (slots missed during an outage done after it).
pub fn historian(state: Option<&FinalState>) -> CheckResult {
    let Some(state) = state.filter(|s| !s.rollup_slots.is_empty()) else {
        return CheckResult::new(
            "historian",
            Verdict::Unknown,
            "no roll-up was read".into(),
            json!({}),
        );
    };
    let slots = &state.rollup_slots;
    let distinct: BTreeSet<i64> = slots.iter().copied().collect();
    let (first, last) = (
        *distinct.first().expect("not empty"),
        *distinct.last().expect("not empty"),
    );
    // Counted, not listed: a damaged read may span billions of slots. The first few are named.
    let span = (last as i128 - first as i128 + 1) as u128;
    let missing_count = span - distinct.len() as u128;
    let missing: Vec<i64> = (first..=last)
        .filter(|s| !distinct.contains(s))
        .take(MISSING_LISTED)
        .collect();
    let duplicates = slots.len() - distinct.len();
    // The last completed slot may still be in the works: allow two slots of lag.
    let behind = u64::try_from(state.current_slot as i128 - 1 - last as i128).unwrap_or_default();
    // A slot still going on (or to come) rolled up: its count misses what is still uploaded.
    let ahead = u64::try_from(last as i128 - (state.current_slot as i128 - 1)).unwrap_or_default();
    let figures = json!({
        "slots": slots.len(), "first": first, "last": last,
        "missing": missing, "duplicates": duplicates, "slots_behind": behind,
        "slots_ahead": ahead,
    });
    let mut problems = Vec::new();
    if missing_count > 0 {
        problems.push(format!("{missing_count} slots never rolled up"));
    }
    if duplicates > 0 {
        problems.push(format!("{duplicates} slots rolled up twice"));
    }
    if behind > 2 {
        problems.push(format!("{behind} slots behind: not caught up"));
    }
    if ahead > 0 {
        problems.push(format!(
            "{ahead} slots rolled up before they ended (a clock ahead of the database's)"
        ));
    }
    if problems.is_empty() {
        let summary = format!("{} slots, each once, none missing, caught up", slots.len());
        CheckResult::new("historian", Verdict::Pass, summary, figures)
    } else {
        CheckResult::new("historian", Verdict::Fail, problems.join("; "), figures)
    }
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
    let checks: Vec<&OpRecord> = all.iter().filter(|o| o.kind == verbs::SESSION).collect();
    let rejected = |o: &&&OpRecord| o.is_unauthorized();
    let rejected_before_rotation: Vec<&&OpRecord> = checks
        .iter()
        .filter(rejected)
        .filter(|o| rotation.is_none_or(|r| o.invoke < r))
        .collect();
    let old: Vec<&OpRecord> = all
        .iter()
        .filter(|o| o.kind == verbs::OLD_SESSION)
        .collect();
    let old_accepted: Vec<String> = old
        .iter()
        .filter(|o| !o.is_unauthorized())
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
            .filter(|o| o.kind == verbs::LOGIN && o.invoke > r)
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
            return CheckResult::new(
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
        return CheckResult::new(
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
        CheckResult::new("sessions", Verdict::Pass, summary, figures)
    } else {
        CheckResult::new("sessions", Verdict::Fail, problems.join("; "), figures)
    }
}

/// The product's uploads and analyses against its final read (`continuity`).
pub struct WebContinuity;

impl Check for WebContinuity {
    fn name(&self) -> &str {
        "continuity"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        continuity(e.events, e.final_read(WEB_READ).ok().as_ref(), e.budgets)
    }
}

/// The historian's roll-ups in the product's final read.
pub struct Historian;

impl Check for Historian {
    fn name(&self) -> &str {
        "historian"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        historian(e.final_read(WEB_READ).ok().as_ref())
    }
}

/// Sessions across failovers and secret rotations.
pub struct Sessions;

impl Check for Sessions {
    fn name(&self) -> &str {
        "sessions"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        sessions(e.events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::finals::Analysed;
    use super::*;
    use crate::checks::fixtures::{fault_on, kill, op};
    use hadrill_model::{Fault, Role};

    fn upload(id: u64, trace: i64, sha: &str, outcome: Outcome) -> Event {
        let mut o = op(id, verbs::UPLOAD, id * 10, outcome);
        o.key = (outcome == Outcome::Ok).then(|| trace.to_string());
        o.value = Some(sha.into());
        Event::Op(o)
    }

    /// Row `id` holds content `sha`, read back identical and analysed once.
    fn store(s: &mut FinalState, id: i64, sha: &str) {
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

    /// Two acknowledged uploads, stored, analysed once each.
    fn good() -> (Vec<Event>, FinalState) {
        let events = vec![
            upload(1, 1, "a", Outcome::Ok),
            upload(2, 2, "b", Outcome::Ok),
        ];
        let mut s = FinalState::default();
        for (id, sha) in [(1, "a"), (2, "b")] {
            store(&mut s, id, sha);
        }
        (events, s)
    }

    #[test]
    fn continuity_passes_when_everything_acknowledged_is_there() {
        let (e, s) = good();
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
    }

    #[test]
    fn after_a_restore_only_what_the_backup_held_must_be_there() {
        let (mut e, mut s) = good();
        let backup = |id, at_ms, marks| {
            let command = vec!["backup.sh".into()];
            let exec = Fault::Exec {
                node: "backup".into(),
                command,
                expect: Default::default(),
                marks: Some(marks),
            };
            fault_on("backup", id, exec, at_ms)
        };
        // Upload 1 (acknowledged at 15 ms) before the backup, upload 2 (25 ms) after it.
        e.insert(1, backup(1, 16, hadrill_model::Mark::Backup));
        e.push(backup(2, 40, hadrill_model::Mark::Restore));
        s.rows.remove(&2);
        s.analyses.remove(&2);
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["lost_within_rpo"], 1);
        s.rows.remove(&1);
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "lost from before the backup: {}",
            r.summary
        );
        // The bucket, listed after the restore, must hold no object that no row points at.
        let mut s = good().1;
        s.rows.remove(&2);
        s.objects = Some(["a".to_string()].into());
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        // An upload refused after storing its object leaves it behind: counted, not a defect.
        e.push(upload(9, 9, "c", Outcome::Fail));
        s.objects = Some(["a".to_string(), "c".to_string()].into());
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["objects_left_by_refused_uploads"], 1);
        s.objects = Some(["a".to_string(), "b".to_string()].into());
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary
                .contains("1 objects in the bucket no row points at (first: b)"),
            "{}",
            r.summary
        );
    }

    /// Negative control for load balancer retries: an upload acknowledged once (or left
    /// unknown) whose content is in two rows was stored twice.
    #[test]
    fn an_upload_stored_twice_fails_continuity() {
        for outcome in [Outcome::Ok, Outcome::Unknown] {
            let (mut e, mut s) = good();
            e.push(upload(3, 3, "c", outcome));
            for id in [3, 4] {
                store(&mut s, id, "c");
            }
            let r = continuity(&e, Some(&s), &Budgets::default());
            assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
            assert!(
                r.summary.starts_with(
                    "1 uploads stored more than once (first: rows [3,4] for one upload"
                ),
                "{}",
                r.summary
            );
            assert_eq!(r.figures["orphan_rows"], 0, "{}", r.summary);
        }
        // Two uploads of the same content are two rows, rightly.
        let (mut e, mut s) = good();
        e.push(upload(3, 3, "b", Outcome::Ok));
        store(&mut s, 3, "b");
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
        // Refused, yet stored: the product's answer was wrong, and the report says which way.
        e.push(upload(3, 3, "c", Outcome::Fail));
        let r = continuity(&e, Some(&s), &Budgets::default());
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "a refused upload that took effect"
        );
        assert!(
            r.summary.contains("answered with a refusal took effect"),
            "{}",
            r.summary
        );
        e.pop();
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
        let r = historian(Some(&state(vec![10, 11, 12, 13, 14, 15], 14)));
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "slots of the present and the future"
        );
        assert!(
            r.summary.contains("2 slots rolled up before they ended"),
            "{}",
            r.summary
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
        // A damaged read (found by fuzzing `hadrill check`): slots billions apart are counted,
        // not listed, and extreme values do not overflow.
        let r = historian(Some(&state(vec![9_000_000_000, 10, 11], i64::MIN)));
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary.contains("8999999988 slots never rolled up"),
            "{}",
            r.summary
        );
        assert_eq!(
            r.figures["missing"].as_array().unwrap().len(),
            MISSING_LISTED
        );
        let r = historian(Some(&state(vec![i64::MIN, i64::MAX], i64::MAX)));
        assert_eq!(r.verdict, Verdict::Fail);
    }

    #[test]
    fn no_final_state_is_unknown_not_pass() {
        let (e, _) = good();
        assert_eq!(
            continuity(&e, None, &Budgets::default()).verdict,
            Verdict::Unknown
        );
    }

    fn session_op(id: u64, at_ms: u64, rejected: bool) -> Event {
        let mut o = op(
            id,
            verbs::SESSION,
            at_ms,
            if rejected { Outcome::Fail } else { Outcome::Ok },
        );
        o.error = rejected.then(|| hadrill_model::UNAUTHORIZED.into());
        Event::Op(o)
    }

    fn old_cookie(id: u64, app: &str, status: u16) -> Event {
        let mut o = op(
            id,
            verbs::OLD_SESSION,
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
            fault_on("app1", 1, kill("app1"), 2000),
            session_op(2, 3000, false),
        ];
        assert_eq!(sessions(&e).verdict, Verdict::Pass);
        let e = vec![
            session_op(1, 1000, false),
            fault_on("app1", 1, kill("app1"), 2000),
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
        let mut login_after = op(50, verbs::LOGIN, 8000, Outcome::Ok);
        login_after.client = "verifier".into();
        login_after.role = Role::Verifier;
        let base = vec![
            session_op(1, 1000, false),
            fault_on("app1", 1, rotate, 2000),
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
