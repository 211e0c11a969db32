//! Checks: pure functions from the history (and a final read of the system) to a verdict with
//! the numbers behind it. A check that cannot decide says `unknown`, never `pass`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::clock::Stamp;
use hadrill_model::{
    Budgets, CheckResult, Content, Event, FaultRecord, FinalState, OpKind, OpRecord, Outcome, Role,
    Verdict, faults, ops,
};

pub mod cluster;
pub mod database;
pub mod writes;

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
        CheckResult::new(check, clean, summary, figures)
    } else {
        let summary = format!("{}; {summary}", problems.join("; "));
        CheckResult::new(check, Verdict::Fail, summary, figures)
    }
}

/// Every acknowledged upload is afterwards readable with identical bytes and its row present;
/// every acknowledged job is analysed exactly once in effect; no row exists that no upload
/// explains, and none points at a missing object. Unknown uploads are reported apart.
pub fn continuity(events: &[Event], state: Option<&FinalState>, budgets: &Budgets) -> CheckResult {
    let uploads: Vec<OpRecord> = ops(events)
        .into_iter()
        .filter(|o| o.kind == OpKind::UPLOAD)
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
        } else if refused.contains(sha.as_str()) {
            // The product answered with a refusal and stored it anyway: a user who retries
            // gets a duplicate. Its answer should have said the outcome was unknown.
            orphans
                .push(json!({ "id": id, "why": "an upload answered with a refusal took effect" }));
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
        "failed_uploads": refused.len(),
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
        problems.push(format!(
            "{} rows no acknowledged or unknown upload explains ({})",
            orphans.len(),
            orphans[0]["why"].as_str().unwrap_or_default()
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
    let figures = json!({
        "slots": slots.len(), "first": first, "last": last,
        "missing": missing, "duplicates": duplicates, "slots_behind": behind,
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
    if problems.is_empty() {
        let summary = format!("{} slots, each once, none missing, caught up", slots.len());
        CheckResult::new("historian", Verdict::Pass, summary, figures)
    } else {
        CheckResult::new("historian", Verdict::Fail, problems.join("; "), figures)
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

/// A request made by one of the web workload's users (not the probe, not the verifier).
fn is_user_request(o: &OpRecord) -> bool {
    o.role == Role::User
        && o.kind
            .is_any(&[OpKind::LOGIN, OpKind::UPLOAD, OpKind::READ, OpKind::SESSION])
}

/// A request the app refused for want of a valid session.
fn is_rejected_session(o: &OpRecord) -> bool {
    o.outcome == Outcome::Fail
        && matches!(o.error.as_deref(), Some("HTTP 401" | "session rejected"))
}

/// The user requests whose failure is expected, by id: a session refused after a secret
/// rotation because the app server that issued its cookie and the one that refused it held
/// different secrets (one of them not yet restarted since the rotation). Any other refusal,
/// and any refusal without a rotation, is a failure.
fn expected_rejections(all: &[OpRecord], faults: &[FaultRecord]) -> BTreeSet<u64> {
    let rotations: Vec<&FaultRecord> = faults
        .iter()
        .filter(|f| f.fault.name() == "rotate-secret" && f.outcome == Outcome::Ok)
        .collect();
    if rotations.is_empty() {
        return BTreeSet::new();
    }
    // How many rotations `node` had taken up at `t`: one per rotation of it followed by a
    // (re)start of its process. While that restart is under way (from its start, when the old
    // process may still be draining, to its end) either count may hold: the range says so.
    let generation = |node: &str, t: Stamp| {
        let taken = |restarted: &dyn Fn(&FaultRecord) -> bool| {
            rotations
                .iter()
                .filter(|r| r.start <= t && r.nodes.iter().any(|n| n == node))
                .filter(|r| {
                    faults.iter().any(|g| {
                        matches!(g.fault.name(), "restart" | "start")
                            && g.start >= r.start
                            && restarted(g)
                            && g.nodes.iter().any(|n| n == node)
                    })
                })
                .count()
        };
        (taken(&|g| g.end <= t), taken(&|g| g.start <= t))
    };
    // The cookie's issuer and the server that refused it held different secrets (or may have).
    let differ = |issuer: (usize, usize), refuser: (usize, usize)| {
        !(issuer.0 == issuer.1 && refuser.0 == refuser.1 && issuer.0 == refuser.0)
    };
    let first_rotation = rotations.iter().map(|r| r.start).min().unwrap_or(Stamp(0));
    let mut expected = BTreeSet::new();
    for o in all.iter().filter(|o| is_rejected_session(o)) {
        if o.invoke < first_rotation {
            continue;
        }
        // The probe names the server that issued the cookie it used (its key).
        if o.kind == OpKind::PROBE {
            if let (Some(issuer), Some(refused_by)) = (o.key.as_deref(), o.node.as_deref())
                && differ(
                    generation(issuer, o.invoke),
                    generation(refused_by, o.invoke),
                )
            {
                expected.insert(o.id);
            }
            continue;
        }
        if !is_user_request(o) {
            continue;
        }
        let issued = all
            .iter()
            .filter(|l| {
                l.kind == OpKind::LOGIN
                    && l.client == o.client
                    && l.outcome == Outcome::Ok
                    && l.invoke < o.invoke
            })
            .max_by_key(|l| l.invoke);
        if let (Some(login), Some(refused_by)) = (issued, o.node.as_deref())
            && let Some(issuer) = login.node.as_deref()
            && differ(
                generation(issuer, login.invoke),
                generation(refused_by, o.invoke),
            )
        {
            expected.insert(o.id);
        }
    }
    expected
}

/// One fault's unavailability: the window, its uncertainty, when service recovered (`None`
/// for all three if it never did), and the failures seen in the fault's window.
type Outage = (Option<Duration>, Option<Duration>, Option<Stamp>, usize);

/// Per fault, the unavailability measured from `samples` (time, ok): fault start → the first
/// success after the last failure in the fault's window.
fn outage_windows(samples: &[(Stamp, bool)], faults: &[FaultRecord], end: Stamp) -> Vec<Outage> {
    let mut out = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map_or(end, |n| n.start);
        let in_window: Vec<&(Stamp, bool)> = samples
            .iter()
            .filter(|(t, _)| *t >= f.start && *t < until)
            .collect();
        let failures = in_window.iter().filter(|(_, ok)| !ok).count();
        let last_failure = in_window.iter().rev().find(|(_, ok)| !ok);
        out.push(match last_failure {
            None => (Some(Duration::ZERO), Some(Duration::ZERO), Some(f.start), 0),
            Some((lf, _)) => match samples.iter().find(|(t, ok)| t > lf && *ok) {
                Some((ok_at, _)) => {
                    // The outage may outlast this fault's window: the uncertainty is the gap to
                    // the last failure before that first success, wherever it fell.
                    let before = samples
                        .iter()
                        .filter(|(t, ok)| t < ok_at && !ok)
                        .map(|(t, _)| *t)
                        .max()
                        .unwrap_or(*lf);
                    (
                        Some(ok_at.since(f.start)),
                        Some(ok_at.since(before)),
                        Some(*ok_at),
                        failures,
                    )
                }
                None => (None, None, None, failures),
            },
        });
    }
    out
}

/// The worst of some windows: `None` if one never recovered.
fn worst_of(windows: &[Outage]) -> Option<Duration> {
    windows
        .iter()
        .try_fold(Duration::ZERO, |w, x| x.0.map(|x| w.max(x)))
}

/// Per fault: the unavailability window as users saw it — from the fault's start to the
/// first success after the last failure, over the availability probe (a read a user makes,
/// through the entry point) and the web users' own requests together — and success rate and
/// latency before, during and after. A liveness probe, if one ran, is measured the same way
/// and reported apart; it never decides the verdict.
pub fn availability(events: &[Event], probe_period: Duration, budgets: &Budgets) -> CheckResult {
    let all_ops = ops(events);
    let faults: Vec<FaultRecord> = faults(events);
    let expected = expected_rejections(&all_ops, &faults);
    // A probe whose session a rotation refused saw no outage: it is left out, and counted.
    let mut probes: Vec<&OpRecord> = all_ops
        .iter()
        .filter(|o| o.kind == OpKind::PROBE && !expected.contains(&o.id))
        .collect();
    probes.sort_by_key(|p| p.invoke);
    let probes_rejected_by_rotation = all_ops
        .iter()
        .filter(|o| o.kind == OpKind::PROBE && expected.contains(&o.id))
        .count();
    let users: Vec<&OpRecord> = all_ops
        .iter()
        .filter(|o| is_user_request(o) && !expected.contains(&o.id))
        .collect();
    let mut samples: Vec<(Stamp, bool)> = probes
        .iter()
        .chain(users.iter())
        .map(|o| (o.invoke, o.outcome == Outcome::Ok))
        .collect();
    samples.sort();
    let mut liveness: Vec<(Stamp, bool)> = all_ops
        .iter()
        .filter(|o| o.kind == OpKind::LIVENESS)
        .map(|o| (o.invoke, o.outcome == Outcome::Ok))
        .collect();
    liveness.sort();
    // Operations of the SQL clients (the database workload's users), for the record: their
    // failures during a failover are what `max_unavailability` and `max_failover` judge.
    let sql_failures = all_ops
        .iter()
        .filter(|o| {
            o.kind.is_any(&[OpKind::INSERT, OpKind::READ_BACK])
                && o.role == Role::User
                && o.outcome != Outcome::Ok
        })
        .count();
    let end = samples.last().map_or(Stamp(0), |s| s.0);
    let measured = outage_windows(&samples, &faults, end);
    let worst = worst_of(&measured);
    let live_windows = outage_windows(
        &liveness,
        &faults,
        liveness.last().map_or(Stamp(0), |s| s.0),
    );
    let mut last_recovery = faults.first().map_or(Stamp(0), |f| f.start);
    let mut windows = Vec::new();
    for (i, (f, (window, uncertainty, recovered, failures))) in
        faults.iter().zip(&measured).enumerate()
    {
        if let Some(r) = recovered {
            last_recovery = last_recovery.max(*r);
        }
        let until = faults.get(i + 1).map_or(end, |n| n.start);
        let inside =
            |o: &&&OpRecord| o.invoke >= f.start && o.invoke < until && o.outcome != Outcome::Ok;
        windows.push(json!({
            "fault": f.id,
            "kind": f.fault.name(),
            "nodes": f.nodes,
            "start_s": f.start.as_duration().as_secs_f64(),
            "unavailable_ms": window.map(|w| w.as_millis() as u64),
            "uncertainty_ms": uncertainty.map(|w| w.as_millis() as u64),
            "failed_probes": probes.iter().filter(inside).count(),
            "failed_user_requests": users.iter().filter(inside).count(),
            "failures": failures,
            "liveness_unavailable_ms": (!liveness.is_empty())
                .then(|| live_windows[i].0.map(|w| w.as_millis() as u64)),
        }));
    }
    let liveness_figures = (!liveness.is_empty()).then(|| {
        json!({
            "probes": liveness.len(),
            "failed": liveness.iter().filter(|(_, ok)| !ok).count(),
            "worst_unavailable_ms": worst_of(&live_windows).map(|w| w.as_millis() as u64),
        })
    });
    let first = faults.first().map_or(end, |f| f.start);
    let figures = json!({
        "resolution_ms": probe_period.as_millis() as u64,
        "windows": windows,
        "worst_unavailable_ms": worst.map(|w| w.as_millis() as u64),
        "probes": probes.len(),
        "probes_rejected_by_rotation": probes_rejected_by_rotation,
        "user_requests": users.len(),
        "liveness": liveness_figures,
        "sql_client_failures": sql_failures,
        "before": phase(&probes, Stamp(0), first),
        "during": phase(&probes, first, last_recovery.max(first)),
        "after": phase(&probes, last_recovery.max(first), Stamp(u64::MAX)),
        "budget_unavailable_ms": budgets.max_unavailability.map(|d| d.as_millis() as u64),
    });
    if probes.is_empty() {
        let why = if liveness.is_empty() {
            "no probe ran"
        } else {
            "only the liveness probe ran, and liveness does not decide availability"
        };
        return CheckResult::new("availability", Verdict::Unknown, why.into(), figures);
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
    let mut summary = format!(
        "worst unavailability {} (±{} ms resolution) from {} probes and {} user requests",
        worst.map_or("never recovered".into(), |w| format!(
            "{} ms",
            w.as_millis()
        )),
        probe_period.as_millis(),
        probes.len(),
        users.len(),
    );
    if !liveness.is_empty() {
        summary.push_str(&format!(
            "; liveness probe alone: {} (not judged)",
            worst_of(&live_windows).map_or("never recovered".into(), |w| format!(
                "{} ms",
                w.as_millis()
            ))
        ));
    }
    judged("availability", &problems, Verdict::Pass, summary, figures)
}

/// The web users' requests: how many failed and how many ended unknown, each against its
/// budget (default 0); the rejections a secret rotation explains, counted apart and named;
/// and where the traffic went — each app server's share of the requests (`X-Served-By`) and
/// its failures, in total and over time.
pub fn user_requests(events: &[Event], budgets: &Budgets) -> CheckResult {
    let all = ops(events);
    let expected = expected_rejections(&all, &faults(events));
    let mut users: Vec<&OpRecord> = all.iter().filter(|o| is_user_request(o)).collect();
    users.sort_by_key(|o| o.invoke);
    if users.is_empty() {
        return CheckResult::unknown("user-requests", "no user request was recorded".into());
    }
    // Each request's class: ok, fail, unknown, or expected (a rejection the rotation explains).
    let class = |o: &OpRecord| match o.outcome {
        _ if expected.contains(&o.id) => "expected",
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Unknown => "unknown",
    };
    const NO_SERVER: &str = "(no server)";
    let server = |o: &OpRecord| o.node.clone().unwrap_or_else(|| NO_SERVER.to_string());
    let mut totals: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for o in &users {
        *totals
            .entry(server(o))
            .or_default()
            .entry(class(o))
            .or_default() += 1;
    }
    let count = |c: &str| users.iter().filter(|o| class(o) == c).count() as u64;
    let (failed, unknown, excused) = (count("fail"), count("unknown"), count("expected"));
    let last = users.iter().map(|o| o.invoke).max().unwrap_or(Stamp(0));
    // One-second buckets, wider for long runs: at most 120 columns.
    let bucket_s = (secs(last) / 120.0).ceil().max(1.0) as u64;
    let mut buckets: BTreeMap<u64, BTreeMap<String, BTreeMap<&str, u64>>> = BTreeMap::new();
    for o in &users {
        let b = (secs(o.invoke) as u64 / bucket_s) * bucket_s;
        *buckets
            .entry(b)
            .or_default()
            .entry(server(o))
            .or_default()
            .entry(class(o))
            .or_default() += 1;
    }
    let servers: Vec<serde_json::Value> = totals
        .iter()
        .map(|(name, c)| {
            let n: u64 = c.values().sum();
            json!({
                "server": name,
                "requests": n,
                "share": n as f64 / users.len() as f64,
                "ok": c.get("ok").copied().unwrap_or(0),
                "failed": c.get("fail").copied().unwrap_or(0),
                "unknown": c.get("unknown").copied().unwrap_or(0),
                "expected_rejections": c.get("expected").copied().unwrap_or(0),
            })
        })
        .collect();
    let detail: Vec<serde_json::Value> = users
        .iter()
        .filter(|o| matches!(class(o), "fail" | "unknown"))
        .take(50)
        .map(|o| {
            json!({
                "at_s": secs(o.invoke),
                "client": o.client,
                "kind": o.kind,
                "server": o.node,
                "outcome": o.outcome,
                "error": o.error,
            })
        })
        .collect();
    let figures = json!({
        "requests": users.len(),
        "ok": count("ok"),
        "failed": failed,
        "unknown": unknown,
        "expected_rejections": excused,
        "expected_why": (excused > 0).then_some(
            "sessions refused after the secret rotation by a server holding the other secret"),
        "budget_failed": budgets.max_failed_requests,
        "budget_unknown": budgets.max_unknown_requests,
        "servers": servers,
        "traffic": {
            "bucket_s": bucket_s,
            "buckets": buckets.iter().map(|(t, by)| json!({ "t_s": t, "servers": by })).collect::<Vec<_>>(),
        },
        "failure_detail": detail,
    });
    let mut problems = Vec::new();
    if failed > budgets.max_failed_requests {
        problems.push(format!(
            "{failed} failed user requests, budget {}",
            budgets.max_failed_requests
        ));
    }
    if unknown > budgets.max_unknown_requests {
        problems.push(format!(
            "{unknown} unknown user requests, budget {}",
            budgets.max_unknown_requests
        ));
    }
    let shares = totals
        .iter()
        .map(|(name, c)| {
            format!(
                "{name} {:.0} %",
                c.values().sum::<u64>() as f64 * 100.0 / users.len() as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut summary = format!(
        "{} user requests: {failed} failed (budget {}), {unknown} unknown (budget {})",
        users.len(),
        budgets.max_failed_requests,
        budgets.max_unknown_requests
    );
    if excused > 0 {
        summary.push_str(&format!(
            ", {excused} sessions rejected after the secret rotation (expected)"
        ));
    }
    summary.push_str(&format!("; served by {shares}"));
    judged("user-requests", &problems, Verdict::Pass, summary, figures)
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
    let checks: Vec<&OpRecord> = all.iter().filter(|o| o.kind == OpKind::SESSION).collect();
    let rejected = |o: &&&OpRecord| o.error.as_deref() == Some("session rejected");
    let rejected_before_rotation: Vec<&&OpRecord> = checks
        .iter()
        .filter(rejected)
        .filter(|o| rotation.is_none_or(|r| o.invoke < r))
        .collect();
    let old: Vec<&OpRecord> = all
        .iter()
        .filter(|o| o.kind == OpKind::OLD_SESSION)
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
            .filter(|o| o.kind == OpKind::LOGIN && o.invoke > r)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hadrill_model::{Analysed, Fault};

    fn op(id: u64, kind: OpKind, at_ms: u64, outcome: Outcome) -> OpRecord {
        OpRecord {
            id,
            client: if kind == OpKind::PROBE {
                "probe".into()
            } else {
                "user-0".into()
            },
            role: if kind == OpKind::PROBE {
                Role::Probe
            } else {
                Role::User
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
        let mut o = op(id, OpKind::UPLOAD, id * 10, outcome);
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
        let mut c = CheckResult::new("single-primary", Verdict::Fail, String::new(), json!({}));
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

    /// Probes every 50 ms from 0 to 10 s; failing from 3 000 ms to `recover_ms`; a kill at 3 s.
    fn outage(recover_ms: u64) -> Vec<Event> {
        let mut e = vec![fault(1, kill(), 3000)];
        for (i, t) in (0..10_000).step_by(50).enumerate() {
            let bad = (3000..recover_ms).contains(&t);
            e.push(Event::Op(op(
                i as u64,
                OpKind::PROBE,
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

    /// A web user's request at `at_ms`, answered by `node`.
    fn user_op(id: u64, kind: OpKind, at_ms: u64, outcome: Outcome, node: &str) -> Event {
        let mut o = op(id, kind, at_ms, outcome);
        o.node = Some(node.into());
        if outcome == Outcome::Unknown {
            o.error = Some("timed out".into());
        }
        Event::Op(o)
    }

    #[test]
    fn failed_user_requests_with_a_green_probe_fail_availability() {
        // The probe never fails, but a user sent to app1 fails every 200 ms for 5 s after the
        // fault: users saw an outage the probe did not.
        let mut e = outage(0);
        for (i, t) in (3000..8000).step_by(200).enumerate() {
            e.push(user_op(
                1000 + i as u64,
                OpKind::READ,
                t,
                Outcome::Fail,
                "app1",
            ));
            e.push(user_op(
                2000 + i as u64,
                OpKind::READ,
                t + 100,
                Outcome::Ok,
                "app2",
            ));
        }
        let budgets = Budgets {
            max_unavailability: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let r = availability(&e, Duration::from_millis(50), &budgets);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert_eq!(r.figures["windows"][0]["failed_probes"], 0);
        assert_eq!(r.figures["windows"][0]["failed_user_requests"], 25);
        assert!(
            r.summary.contains("unavailable for 4850 ms"),
            "{}",
            r.summary
        );
        let r = user_requests(&e, &budgets);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert!(
            r.summary.contains("25 failed user requests, budget 0"),
            "{}",
            r.summary
        );
        // Where the traffic went: app1 took half the requests and failed all of them.
        let app1 = &r.figures["servers"][0];
        assert_eq!(app1["server"], "app1");
        assert_eq!(app1["failed"], 25);
        assert_eq!(app1["share"], 0.5);
        assert_eq!(r.figures["traffic"]["bucket_s"], 1);
        assert_eq!(r.figures["traffic"]["buckets"][0]["t_s"], 3);
        assert_eq!(
            r.figures["traffic"]["buckets"][0]["servers"]["app1"]["fail"],
            5
        );
    }

    #[test]
    fn a_green_liveness_probe_never_decides_availability() {
        let mut e = vec![fault(1, kill(), 3000)];
        for (i, t) in (0..10_000).step_by(50).enumerate() {
            let mut o = op(i as u64, OpKind::LIVENESS, t, Outcome::Ok);
            o.client = "liveness".into();
            o.role = Role::Probe;
            e.push(Event::Op(o));
        }
        let r = availability(&e, Duration::from_millis(50), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
        assert!(
            r.summary.contains("liveness does not decide"),
            "{}",
            r.summary
        );
        // Beside a failing user-path probe, it is reported apart and the probe decides.
        e.extend(outage(9000).into_iter().skip(1));
        let budgets = Budgets {
            max_unavailability: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let r = availability(&e, Duration::from_millis(50), &budgets);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert_eq!(r.figures["liveness"]["worst_unavailable_ms"], 0);
        assert_eq!(r.figures["windows"][0]["liveness_unavailable_ms"], 0);
        assert!(
            r.summary
                .contains("liveness probe alone: 0 ms (not judged)"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn user_request_budgets_default_to_zero() {
        let b: Budgets = toml::from_str("max_lost_writes = 0").unwrap();
        assert_eq!((b.max_failed_requests, b.max_unknown_requests), (0, 0));
        let e = vec![
            user_op(1, OpKind::UPLOAD, 100, Outcome::Ok, "app1"),
            user_op(2, OpKind::UPLOAD, 200, Outcome::Fail, "app2"),
        ];
        let r = user_requests(&e, &b);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert!(
            r.summary.contains("1 failed user requests, budget 0"),
            "{}",
            r.summary
        );
        // Nothing to judge is not a pass.
        assert_eq!(user_requests(&[], &b).verdict, Verdict::Unknown);
    }

    #[test]
    fn failed_and_unknown_user_requests_are_counted_apart() {
        let mut e = vec![user_op(1, OpKind::READ, 100, Outcome::Ok, "app1")];
        e.extend((2..5).map(|i| user_op(i, OpKind::READ, i * 100, Outcome::Fail, "app1")));
        e.extend((5..7).map(|i| user_op(i, OpKind::UPLOAD, i * 100, Outcome::Unknown, "app2")));
        // The probe and the verifier are not users.
        e.push(Event::Op(op(9, OpKind::PROBE, 900, Outcome::Fail)));
        let r = user_requests(&e, &Budgets::default());
        assert_eq!(r.figures["requests"], 6);
        assert_eq!(r.figures["failed"], 3);
        assert_eq!(r.figures["unknown"], 2);
        assert!(
            r.summary.contains("3 failed user requests, budget 0"),
            "{}",
            r.summary
        );
        assert!(
            r.summary.contains("2 unknown user requests, budget 0"),
            "{}",
            r.summary
        );
        // Each budget judges its own count.
        let b = Budgets {
            max_failed_requests: 3,
            ..Default::default()
        };
        let r = user_requests(&e, &b);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            !r.summary.contains("failed user requests, budget"),
            "{}",
            r.summary
        );
        let b = Budgets {
            max_failed_requests: 3,
            max_unknown_requests: 2,
            ..Default::default()
        };
        assert_eq!(user_requests(&e, &b).verdict, Verdict::Pass);
    }

    #[test]
    fn only_rejections_a_rotation_explains_are_expected() {
        let rotate = Fault::RotateSecret {
            secret: "SECRET_KEY".into(),
            targets: vec!["app".into()],
        };
        let restart = |id, node: &str, at_ms: u64| {
            Event::Fault(FaultRecord {
                id,
                fault: Fault::Restart {
                    targets: vec![node.into()],
                    timeout: Duration::from_secs(10),
                },
                nodes: vec![node.into()],
                start: Stamp(at_ms * 1_000_000),
                end: Stamp(at_ms * 1_000_000 + 1_000_000),
                outcome: Outcome::Ok,
                error: None,
                notes: vec![],
            })
        };
        let rejected = |id, at_ms, node: &str| {
            let mut o = op(id, OpKind::UPLOAD, at_ms, Outcome::Fail);
            o.error = Some("HTTP 401".into());
            o.node = Some(node.into());
            Event::Op(o)
        };
        let mut rot = FaultRecord {
            id: 1,
            fault: rotate,
            nodes: vec!["app1".into(), "app2".into()],
            start: Stamp(2_000_000_000),
            end: Stamp(2_001_000_000),
            outcome: Outcome::Ok,
            error: None,
            notes: vec![],
        };
        let e = vec![
            user_op(1, OpKind::LOGIN, 1000, Outcome::Ok, "app1"),
            Event::Fault(rot.clone()),
            restart(2, "app1", 3000),
            // The cookie from before the rotation, refused by app1 with its new secret.
            rejected(3, 4000, "app1"),
            // A new cookie from app1 (new secret), refused by app2 (old secret).
            user_op(4, OpKind::LOGIN, 4100, Outcome::Ok, "app1"),
            rejected(5, 4200, "app2"),
            restart(3, "app2", 5000),
            // Both on the new secret: a refusal now is a defect.
            rejected(6, 6000, "app2"),
            // While app2 restarts, its old process may still be answering: explained.
            rejected(7, 5000, "app2"),
        ];
        let r = user_requests(&e, &Budgets::default());
        assert_eq!(r.figures["expected_rejections"], 3, "{}", r.summary);
        // The probe names the issuer of its cookie: a refusal the rotation explains is no
        // outage, one it does not explain is.
        let probe_refused = |id, at_ms, issuer: &str, node: &str| {
            let mut o = op(id, OpKind::PROBE, at_ms, Outcome::Fail);
            o.error = Some("HTTP 401".into());
            o.key = Some(issuer.into());
            o.node = Some(node.into());
            Event::Op(o)
        };
        let mut with_probes = e.clone();
        with_probes.push(probe_refused(20, 4300, "app1", "app2"));
        with_probes.push(Event::Op(op(21, OpKind::PROBE, 4400, Outcome::Ok)));
        let a = availability(&with_probes, Duration::from_millis(50), &Budgets::default());
        assert_eq!(a.figures["probes_rejected_by_rotation"], 1, "{}", a.summary);
        assert_eq!(a.figures["probes"], 1);
        with_probes.push(probe_refused(22, 6100, "app2", "app2"));
        let a = availability(&with_probes, Duration::from_millis(50), &Budgets::default());
        assert_eq!(a.figures["probes_rejected_by_rotation"], 1, "{}", a.summary);
        assert_eq!(a.figures["probes"], 2);
        assert_eq!(r.figures["failed"], 1);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary
                .contains("3 sessions rejected after the secret rotation (expected)"),
            "{}",
            r.summary
        );
        // Without a rotation, every refusal is a failure.
        rot.outcome = Outcome::Fail;
        let mut e = e;
        e[1] = Event::Fault(rot);
        let r = user_requests(&e, &Budgets::default());
        assert_eq!(r.figures["expected_rejections"], 0);
        assert_eq!(r.figures["failed"], 4);
    }

    fn session_op(id: u64, at_ms: u64, rejected: bool) -> Event {
        let mut o = op(
            id,
            OpKind::SESSION,
            at_ms,
            if rejected { Outcome::Fail } else { Outcome::Ok },
        );
        o.error = rejected.then(|| "session rejected".into());
        Event::Op(o)
    }

    fn old_cookie(id: u64, app: &str, status: u16) -> Event {
        let mut o = op(
            id,
            OpKind::OLD_SESSION,
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
        let mut login_after = op(50, OpKind::LOGIN, 8000, Outcome::Ok);
        login_after.client = "verifier".into();
        login_after.role = Role::Verifier;
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
