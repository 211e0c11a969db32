//! An upgrade is done when the install serves the new release and nothing else: after the
//! last step, every answer that names its release names `to`, that release serves what it
//! answers (a server up but refusing work, e.g. on a schema it cannot use, has not been
//! upgraded), and it served something. While it runs, the mixed-version window (from the first answer of the new release to
//! the last of another) and the answers of each release are measured.

use std::collections::BTreeMap;

use serde_json::json;

use super::secs;
use crate::clock::Stamp;
use hadrill_model::{
    Check, CheckResult, Event, Evidence, Fault, OpRecord, Outcome, Role, Verdict, faults, ops,
};

/// The `upgrade` check of a scenario with `[upgrade]`.
pub struct Upgrade {
    /// The release every answer after the last step must come from.
    pub to: String,
}

impl Check for Upgrade {
    fn name(&self) -> &str {
        "upgrade"
    }

    fn applies(&self, evidence: &Evidence<'_>) -> bool {
        faults(evidence.events)
            .iter()
            .any(|f| matches!(f.fault, Fault::Upgrade { .. }))
    }

    fn judge(&self, evidence: &Evidence<'_>) -> CheckResult {
        upgrade(evidence.events, &self.to)
    }
}

fn upgrade(events: &[Event], to: &str) -> CheckResult {
    let fs = faults(events);
    let last_end = fs.iter().map(|f| f.end).max().unwrap_or(Stamp(0));
    // Steps whose command failed and that the checks were left to judge (`expect = "any"`).
    let failed_steps: Vec<String> = fs
        .iter()
        .filter(|f| f.outcome != Outcome::Ok)
        .map(|f| {
            format!(
                "step #{} {} on {} failed: {}",
                f.id,
                f.fault.name(),
                f.nodes.join(","),
                f.error.as_deref().unwrap_or("no reason recorded")
            )
        })
        .collect();
    let all = ops(events);
    let answered: Vec<_> = all.iter().filter(|o| o.version.is_some()).collect();
    let mut by_release: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &answered {
        *by_release
            .entry(o.version.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let first_new = answered
        .iter()
        .filter(|o| o.version.as_deref() == Some(to))
        .map(|o| o.complete)
        .min();
    let last_old_after_new = first_new.and_then(|t| {
        answered
            .iter()
            .filter(|o| o.version.as_deref() != Some(to) && o.complete >= t)
            .map(|o| o.complete)
            .max()
    });
    let mixed_ms = match (first_new, last_old_after_new) {
        (Some(a), Some(b)) => b.since(a).as_millis() as u64,
        _ => 0,
    };

    // Users refused while the steps ran (a maintenance window refuses uploads): from the
    // first refusal to the last.
    let first_start = fs.iter().map(|f| f.start).min().unwrap_or(Stamp(0));
    let refused: Vec<_> = all
        .iter()
        .filter(|o| o.role == Role::User && o.outcome == Outcome::Fail)
        .filter(|o| o.invoke >= first_start && o.invoke <= last_end)
        .collect();
    let refused_ms = match (refused.first(), refused.last()) {
        (Some(a), Some(b)) => b.complete.since(a.invoke).as_millis() as u64,
        _ => 0,
    };
    let after: Vec<_> = all.iter().filter(|o| o.invoke >= last_end).collect();
    let stale: Vec<_> = after
        .iter()
        .filter(|o| o.version.as_deref().is_some_and(|v| v != to))
        .collect();
    let (served, unserved): (Vec<&&OpRecord>, Vec<&&OpRecord>) = after
        .iter()
        .filter(|o| o.version.as_deref() == Some(to))
        .partition(|o| o.outcome == Outcome::Ok);
    let served_new = served.len();
    let figures = json!({
        "to": to,
        "last_step_end_s": secs(last_end),
        "answers_by_release": by_release,
        "mixed_versions_ms": mixed_ms,
        "users_refused_during_steps": refused.len(),
        "users_refused_window_ms": refused_ms,
        "first_answer_of_new_release_s": first_new.map(secs),
        "requests_after_last_step": after.len(),
        "served_by_new_release_after_last_step": served_new,
        "answers_of_other_releases_after_last_step": stale.len(),
        "unserved_by_new_release_after_last_step": unserved.len(),
        "failed_steps": failed_steps,
    });
    let steps_said = if failed_steps.is_empty() {
        String::new()
    } else {
        format!("; {}", failed_steps.join("; "))
    };
    let (verdict, summary) = if let Some(o) = stale.first() {
        (
            Verdict::Fail,
            format!(
                "{} answer(s) after the last step came from another release than {to}: the first, at {}, from release {} ({})",
                stale.len(),
                o.complete,
                o.version.as_deref().unwrap_or_default(),
                o.node.as_deref().unwrap_or("server not named")
            ),
        )
    } else if after.is_empty() {
        (
            Verdict::Unknown,
            "no request was made after the last step, so what release the install serves is not known".into(),
        )
    } else if let Some(o) = unserved.first() {
        (
            Verdict::Fail,
            format!(
                "release {to} answered {} request(s) after the last step without serving them (the first, at {}: {}): the upgrade did not leave a working install{steps_said}",
                unserved.len(),
                o.complete,
                o.error.as_deref().unwrap_or("no reason recorded")
            ),
        )
    } else if served_new == 0 {
        (
            Verdict::Fail,
            format!(
                "release {to} served none of the {} request(s) after the last step: the upgrade did not leave a working install{steps_said}",
                after.len()
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "release {to} served all {served_new} answered request(s) after the last step; both releases answered for {mixed_ms} ms; {} user request(s) refused during the steps, over {refused_ms} ms{steps_said}",
                refused.len()
            ),
        )
    };
    CheckResult::new("upgrade", verdict, summary, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hadrill_model::{FaultRecord, OpKind};

    fn answer(id: u64, at_ms: u64, version: Option<&str>, outcome: Outcome) -> Event {
        Event::Op(OpRecord {
            id,
            client: "user-1".into(),
            role: Role::User,
            kind: OpKind::named("read"),
            key: None,
            value: None,
            invoke: Stamp(at_ms * 1_000_000),
            complete: Stamp((at_ms + 5) * 1_000_000),
            outcome,
            error: (outcome != Outcome::Ok).then(|| "HTTP 503".into()),
            status: None,
            node: version.map(|_| "app1".into()),
            version: version.map(str::to_string),
        })
    }

    fn upgraded(id: u64, node: &str, at_ms: u64) -> Event {
        Event::Fault(FaultRecord::applied(
            id,
            Fault::Upgrade {
                targets: vec![node.into()],
                image: "sut-next".into(),
                timeout: std::time::Duration::from_secs(10),
            },
            &[node],
            Stamp(at_ms * 1_000_000),
            Stamp((at_ms + 500) * 1_000_000),
        ))
    }

    fn history(tail: &[(u64, Option<&str>, Outcome)]) -> Vec<Event> {
        let mut events = vec![
            answer(1, 100, Some("1"), Outcome::Ok),
            upgraded(1, "app1", 1_000),
            answer(2, 2_000, Some("2"), Outcome::Ok),
            answer(3, 2_500, Some("1"), Outcome::Ok),
            upgraded(2, "app2", 3_000),
        ];
        events.extend(
            tail.iter()
                .enumerate()
                .map(|(i, (at, v, o))| answer(10 + i as u64, *at, *v, *o)),
        );
        events
    }

    #[test]
    fn passes_when_only_the_new_release_answers_after_the_last_step() {
        let r = upgrade(
            &history(&[
                (4_000, Some("2"), Outcome::Ok),
                (4_100, None, Outcome::Fail),
            ]),
            "2",
        );
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["mixed_versions_ms"], 500);
        assert_eq!(r.figures["answers_by_release"]["1"], 2);
    }

    /// The negative controls: an old server still answering, an install left serving nothing,
    /// a new release that answers but refuses; with no request after the last step, nothing
    /// is known.
    #[test]
    fn fails_on_an_old_answer_or_on_nothing_served_and_is_unknown_without_requests() {
        let stale = upgrade(&history(&[(4_000, Some("1"), Outcome::Ok)]), "2");
        assert_eq!(stale.verdict, Verdict::Fail, "{}", stale.summary);
        assert!(stale.summary.contains("release 1"), "{}", stale.summary);

        let broken = upgrade(&history(&[(4_000, None, Outcome::Fail)]), "2");
        assert_eq!(broken.verdict, Verdict::Fail, "{}", broken.summary);

        let refusing = upgrade(
            &history(&[
                (4_000, Some("2"), Outcome::Ok),
                (4_100, Some("2"), Outcome::Fail),
            ]),
            "2",
        );
        assert_eq!(refusing.verdict, Verdict::Fail, "{}", refusing.summary);
        assert!(
            refusing.summary.contains("HTTP 503"),
            "{}",
            refusing.summary
        );

        let silent = upgrade(&history(&[]), "2");
        assert_eq!(silent.verdict, Verdict::Unknown, "{}", silent.summary);
    }
}
