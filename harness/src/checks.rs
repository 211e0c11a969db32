//! Checks: pure functions from the history (and a final read of the system) to a verdict with
//! the numbers behind it. A check that cannot decide says `unknown`, never `pass`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::clock::Stamp;
use hadrill_model::{
    Budgets, Check, CheckResult, Event, Evidence, Fault, FaultRecord, OpKind, OpRecord, Outcome,
    RequestBudget, Role, Verdict, faults, ops,
};

pub mod database;
pub mod exercise;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod reads;
pub mod reconnection;
pub mod restore;
pub mod upgrade;
pub mod writes;

/// A stamp as seconds on the run clock, for figures.
pub fn secs(s: Stamp) -> f64 {
    s.as_duration().as_secs_f64()
}

/// A check's result from the problems it found: `fail`, naming them before the summary; or,
/// with none, `clean` (pass, or unknown when there was too little to judge) and the summary.
pub fn judged(
    check: &str,
    problems: &[String],
    clean: Verdict,
    summary: String,
    figures: serde_json::Value,
) -> CheckResult {
    if problems.is_empty() {
        CheckResult::new(check, clean, summary, figures)
    } else {
        let mut all = problems.to_vec();
        all.extend((!summary.is_empty()).then_some(summary));
        CheckResult::new(check, Verdict::Fail, all.join("; "), figures)
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
    let pct = |q: f64| hadrill_model::percentile(&lat, q);
    json!({
        "probes": inside.len(),
        "success_rate": if inside.is_empty() { None } else { Some(ok as f64 / inside.len() as f64) },
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    })
}

/// What the availability and user-request checks know of a workload's users: which kinds of
/// operation are their requests through the entry point, and which of them signs a user in
/// (the node that answered it issued the session the user's later requests present).
#[derive(Debug, Clone)]
pub struct Traffic<'a> {
    pub requests: Cow<'a, [OpKind]>,
    pub login: Option<OpKind>,
}

impl Traffic<'_> {
    /// No user traffic: only probes decide availability.
    pub const NONE: Traffic<'static> = Traffic {
        requests: Cow::Borrowed(&[]),
        login: None,
    };

    /// A request made by one of the workload's users (not the probe, not the verifier).
    fn is_user_request(&self, o: &OpRecord) -> bool {
        o.role == Role::User && o.kind.is_any(&self.requests)
    }
}

/// The user requests whose failure is expected, by id: a session refused after a secret
/// rotation because the app server that issued its cookie and the one that refused it held
/// different secrets (one of them not yet restarted since the rotation). Any other refusal,
/// and any refusal without a rotation, is a failure.
fn expected_rejections(
    all: &[OpRecord],
    faults: &[FaultRecord],
    traffic: &Traffic,
) -> BTreeSet<u64> {
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
    for o in all.iter().filter(|o| o.is_unauthorized()) {
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
        let Some(login) = traffic
            .login
            .as_ref()
            .filter(|_| traffic.is_user_request(o))
        else {
            continue;
        };
        let issued = all
            .iter()
            .filter(|l| {
                &l.kind == login
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
/// for all three if it never did), the failures seen in the fault's window, and the request
/// class (kind of operation) that never recovered, if one did not.
#[derive(Debug, Clone, PartialEq)]
struct Outage {
    window: Option<Duration>,
    uncertainty: Option<Duration>,
    recovered: Option<Stamp>,
    /// Where the worst window began: the fault's start, or a later first failure.
    from: Stamp,
    failures: usize,
    class: Option<String>,
    /// A class whose last request in the window failed and that was never tried again: its
    /// recovery was not observed, so the window cannot be decided.
    untried: Option<String>,
}

impl Outage {
    /// Never recovered, from `from` on.
    fn never(&mut self, from: Stamp) {
        (self.window, self.uncertainty, self.recovered, self.from) = (None, None, None, from);
    }
}

/// A probe or request as availability sees it: when it counts from, whether it succeeded,
/// when it was answered, and its class (the kind of operation: one user path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sample<'a> {
    at: Stamp,
    ok: bool,
    answered: Stamp,
    class: &'a str,
}

/// `o` as availability sees it: up when it succeeded or was served all the same (answered with
/// a 2xx to 4xx: a read of something gone, a body that differs, a session refused — the
/// correctness checks' to judge, not an outage). A failure in flight when a disturbing fault
/// began counts from that fault (the first it ran into): a request sent a moment before a kill and cut by it
/// belongs to the kill, not to the fault before, whose window it would otherwise stretch to
/// its end. Bringing a node back cuts nothing: a request sent during an outage that fails
/// after a `start` stays the outage's.
fn sample<'a>(o: &'a OpRecord, faults: &[FaultRecord]) -> Sample<'a> {
    let ok = o.outcome == Outcome::Ok || o.status.is_some_and(|s| (200..500).contains(&s));
    let ran_into = faults
        .iter()
        .filter(|f| f.fault.disturbs())
        .map(|f| f.start)
        .filter(|&t| !ok && o.invoke < t && t <= o.complete)
        .min();
    Sample {
        at: ran_into.unwrap_or(o.invoke),
        ok,
        answered: o.complete,
        class: o.kind.as_str(),
    }
}

/// How long a class must answer with no failure sent before its outage is over: failures
/// closer together than this (or than the answer to a failure still pending) are one outage
/// (a path failing every other request is down, not up; so is one whose requests are each
/// held for seconds before a 503), one further apart starts another (a lone timeout seconds
/// after the service came back is its own short window, not the fault's outage stretched to
/// it). A path that failed for this long to its last attempt never recovered.
const STEADY: Duration = Duration::from_secs(1);

/// What one path's outages in a fault's window came to.
enum PathOutage {
    /// Back after each outage: the worst (its window, uncertainty, start) and the last answer.
    Back {
        worst: Option<(Duration, Duration, Stamp)>,
        recovered: Stamp,
    },
    /// Kept failing for `STEADY` or more to its last attempt: from this start, to that
    /// attempt's sending.
    Never(Stamp, Stamp),
    /// Its last attempt failed, sooner than that: whether it came back was not seen.
    Untried,
}

/// One path's outages in a fault's window `[from, until)`: failures less than `STEADY` apart
/// are one outage, running from the fault's start (or, when the path was seen answering after
/// the fault, from its first failure) to the first answer to a success sent after its last
/// failure. The answer, not the sending: a request sent during the outage that waited for the
/// service to come back says it was back when it was answered. The first answer, not the first
/// sent: a request held by a paused server and answered seconds later was slow, while those
/// sent after it and answered at once show the service was back.
fn path_outages(of: &[&Sample], from: Stamp, until: Stamp) -> PathOutage {
    let failures: Vec<&Sample> = of
        .iter()
        .copied()
        .filter(|s| !s.ok && s.at >= from && s.at < until)
        .collect();
    // The first success answered after a failure sent at `t`, among those sent after it.
    let back_after = |t: Stamp| {
        of.iter()
            .filter(|s| s.ok && s.at > t)
            .min_by_key(|s| s.answered)
    };
    let mut worst: Option<(Duration, Duration, Stamp)> = None;
    let mut recovered = from;
    let mut k = 0;
    while k < failures.len() {
        let first = failures[k];
        let mut last = first;
        // A failed request is an outage for its user until it is answered: one held for
        // seconds before its 503 keeps the outage open that long.
        let mut held = first.answered;
        // Gather the failures of one outage: until the path answered, and no failure was
        // pending, for `STEADY` with no failure sent.
        let back = loop {
            let back = back_after(last.at);
            let open_until = back.map_or(held, |b| b.answered.max(held));
            match failures.get(k + 1) {
                Some(n)
                    if back.is_none() || n.at < open_until || n.at.since(open_until) < STEADY => {}
                _ => break back,
            }
            k += 1;
            last = failures[k];
            held = held.max(last.answered);
        };
        k += 1;
        // Seen answering after the fault and before this outage: it began here.
        let seen_up = of
            .iter()
            .any(|s| s.ok && s.at >= from && s.answered <= first.at);
        let begin = if seen_up { first.at } else { from };
        // Still failing at its last attempt but answering others of its requests meanwhile
        // (reads of what a defect lost answer 500 while the rest are served): the path works,
        // for some; its outage runs to its last answer, and continuity judges what is gone.
        let back = back.or_else(|| {
            of.iter()
                .filter(|s| s.ok && s.at > first.at)
                .max_by_key(|s| s.answered)
        });
        let Some(b) = back else {
            let latest = of.iter().map(|s| s.at).max().unwrap_or(last.at);
            return if latest.since(first.at) >= STEADY {
                PathOutage::Never(begin, latest)
            } else {
                PathOutage::Untried
            };
        };
        let window = b.answered.since(begin);
        if worst.is_none_or(|(w, _, _)| window > w) {
            // The uncertainty: from the last failure before that success, wherever it fell,
            // to the success's answer.
            let before = of
                .iter()
                .filter(|s| !s.ok && s.at < b.at)
                .map(|s| s.at)
                .max()
                .unwrap_or(last.at);
            worst = Some((window, b.answered.since(before), begin));
        }
        recovered = recovered.max(b.answered);
    }
    PathOutage::Back { worst, recovered }
}

/// Per fault, the unavailability measured from `samples`. The window is the service's: any
/// path answering ends an outage (a path tried only now and then — users stuck on a held
/// request send nothing — cannot time its own recovery). But each path must come back: one
/// that keeps failing to its last attempt, made while the service answered others, never
/// recovered, whatever the others do; one whose last attempt failed while nothing answered was
/// not seen to recover (the settle waits for every path to succeed again, `hadrill_model::steady`).
fn outage_windows(samples: &[Sample], faults: &[FaultRecord], end: Stamp) -> Vec<Outage> {
    let classes: BTreeSet<&str> = samples.iter().map(|s| s.class).collect();
    let all: Vec<&Sample> = samples.iter().collect();
    let mut out = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map_or(end, |n| n.start);
        let failures = all
            .iter()
            .filter(|s| !s.ok && s.at >= f.start && s.at < until)
            .count();
        let mut outage = Outage {
            window: Some(Duration::ZERO),
            uncertainty: Some(Duration::ZERO),
            recovered: Some(f.start),
            from: f.start,
            failures,
            class: None,
            untried: None,
        };
        match path_outages(&all, f.start, until) {
            PathOutage::Back { worst, recovered } => {
                if let Some((window, uncertainty, from)) = worst {
                    (outage.window, outage.uncertainty, outage.from) =
                        (Some(window), Some(uncertainty), from);
                }
                outage.recovered = Some(recovered);
            }
            PathOutage::Never(from, _) => outage.never(from),
            PathOutage::Untried => {}
        }
        // Whether the service answered other requests in the second before `t`: a path that
        // failed then did not come back with it; one last tried while nothing answered was
        // not seen either way.
        let served_before = |t: Stamp| {
            all.iter()
                .any(|s| s.ok && s.answered <= t && t.since(s.answered) < STEADY)
        };
        for &class in &classes {
            let of: Vec<&Sample> = all.iter().copied().filter(|s| s.class == class).collect();
            match path_outages(&of, f.start, until) {
                PathOutage::Back { .. } => {}
                // Still failing when the next fault came (the start after a kill): that
                // fault's window judges whether it came back.
                PathOutage::Never(_, last) if last >= until => {}
                PathOutage::Never(from, last) if served_before(last) => {
                    outage.never(from);
                    outage.class = Some(class.to_string());
                }
                PathOutage::Never(..) | PathOutage::Untried => {
                    outage.untried = Some(class.to_string());
                }
            }
        }
        out.push(outage);
    }
    out
}

/// The worst of some windows: `None` if one never recovered.
fn worst_of(windows: &[Outage]) -> Option<Duration> {
    windows
        .iter()
        .try_fold(Duration::ZERO, |w, x| x.window.map(|x| w.max(x)))
}

/// Per fault: the unavailability window as users saw it, per path (`outage_windows`) over the
/// availability probe (a read a user makes, through the entry point) and each kind of the web
/// users' own requests — and success rate and latency before, during and after. A liveness probe, if one ran, is measured the same way
/// and reported apart; it never decides the verdict.
pub fn availability(
    events: &[Event],
    probe_period: Duration,
    traffic: &Traffic,
    budgets: &Budgets,
) -> CheckResult {
    let all_ops = ops(events);
    let faults: Vec<FaultRecord> = faults(events);
    let expected = expected_rejections(&all_ops, &faults, traffic);
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
        .filter(|o| traffic.is_user_request(o) && !expected.contains(&o.id))
        .collect();
    let mut samples: Vec<Sample> = probes
        .iter()
        .chain(users.iter())
        .map(|o| sample(o, &faults))
        .collect();
    samples.sort();
    let mut liveness: Vec<Sample> = all_ops
        .iter()
        .filter(|o| o.kind == OpKind::LIVENESS)
        .map(|o| sample(o, &faults))
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
    let end = samples.last().map_or(Stamp(0), |s| s.at);
    let measured = outage_windows(&samples, &faults, end);
    let worst = worst_of(&measured);
    let live_windows = outage_windows(
        &liveness,
        &faults,
        liveness.last().map_or(Stamp(0), |s| s.at),
    );
    let mut last_recovery = faults.first().map_or(Stamp(0), |f| f.start);
    let mut windows = Vec::new();
    for (i, (f, m)) in faults.iter().zip(&measured).enumerate() {
        if let Some(r) = m.recovered {
            last_recovery = last_recovery.max(r);
        }
        let until = faults.get(i + 1).map_or(end, |n| n.start);
        let inside = |o: &&&OpRecord| {
            let s = sample(o, &faults);
            s.at >= f.start && s.at < until && !s.ok
        };
        windows.push(json!({
            "fault": f.id,
            "kind": f.fault.name(),
            "nodes": f.nodes,
            "start_s": f.start.as_duration().as_secs_f64(),
            "unavailable_ms": m.window.map(|w| w.as_millis() as u64),
            "from_s": secs(m.from),
            "uncertainty_ms": m.uncertainty.map(|w| w.as_millis() as u64),
            "path": m.class,
            "not_tried_again": m.untried,
            "failed_probes": probes.iter().filter(inside).count(),
            "failed_user_requests": users.iter().filter(inside).count(),
            "failures": m.failures,
            "liveness_unavailable_ms": (!liveness.is_empty())
                .then(|| live_windows[i].window.map(|w| w.as_millis() as u64)),
        }));
    }
    let liveness_figures = (!liveness.is_empty()).then(|| {
        json!({
            "probes": liveness.len(),
            "failed": liveness.iter().filter(|s| !s.ok).count(),
            "worst_unavailable_ms": worst_of(&live_windows).map(|w| w.as_millis() as u64),
        })
    });
    // The resolution achieved: one probe period, or wider where the worst outage's last failure
    // and first answered success lay further apart (a prober short of CPU during a failover
    // keeps no schedule).
    let resolution = measured
        .iter()
        .filter(|m| m.window.is_some() && m.window == worst)
        .filter_map(|m| m.uncertainty)
        .fold(probe_period, Duration::max);
    let first = faults.first().map_or(end, |f| f.start);
    let figures = json!({
        "resolution_ms": probe_period.as_millis() as u64,
        "worst_resolution_ms": resolution.as_millis() as u64,
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
    // The path and fault of the worst window (or of the one that never recovered).
    let worst_at = faults
        .iter()
        .zip(&measured)
        .find(|(_, m)| m.window == worst)
        .map(|(f, m)| {
            let path = m
                .class
                .as_deref()
                .map_or("the service".to_string(), |c| format!("`{c}`"));
            (f, path)
        });
    let mut problems = Vec::new();
    match (worst, budgets.max_unavailability) {
        (None, _) => problems.push(match worst_at {
            Some((f, path)) => format!(
                "{path} never recovered after the {} at {:.1} s",
                f.fault.name(),
                secs(f.start)
            ),
            None => "the service never recovered after a fault".to_string(),
        }),
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
        resolution.as_millis(),
        probes.len(),
        users.len(),
    );
    // A path whose last request in a fault's window failed and that was not tried again: its
    // recovery was never observed, and the verdict cannot rest on it.
    let untried: Vec<String> = faults
        .iter()
        .zip(&measured)
        .filter_map(|(f, m)| {
            m.untried.as_ref().map(|path| {
                format!(
                    "`{path}` failed after the {} at {:.1} s and was not tried again: whether it recovered is not known",
                    f.fault.name(),
                    secs(f.start)
                )
            })
        })
        .collect();
    let clean = if untried.is_empty() {
        Verdict::Pass
    } else {
        summary = format!("{}; {summary}", untried.join("; "));
        Verdict::Unknown
    };
    if !liveness.is_empty() {
        summary.push_str(&format!(
            "; liveness probe alone: {} (not judged)",
            worst_of(&live_windows).map_or("never recovered".into(), |w| format!(
                "{} ms",
                w.as_millis()
            ))
        ));
    }
    judged("availability", &problems, clean, summary, figures)
}

/// The web users' requests: how many failed and how many ended unknown, each against its
/// budget (default 0); the rejections a secret rotation explains, counted apart and named;
/// and where the traffic went — each app server's share of the requests (the node that answered) and
/// its failures, in total and over time.
pub fn user_requests(events: &[Event], traffic: &Traffic, budgets: &Budgets) -> CheckResult {
    let all = ops(events);
    let expected = expected_rejections(&all, &faults(events), traffic);
    let mut users: Vec<&OpRecord> = all.iter().filter(|o| traffic.is_user_request(o)).collect();
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
    // The requests a fraction budget is a share of: those sent from the first fault on.
    let first_fault = faults(events).first().map(|f| f.start);
    let exposed = users
        .iter()
        .filter(|o| first_fault.is_some_and(|t| o.invoke >= t))
        .count() as u64;
    let (allowed_failed, allowed_unknown) = (
        budgets.max_failed_requests.allows(exposed),
        budgets.max_unknown_requests.allows(exposed),
    );
    let budget = |b: RequestBudget, allowed: u64| match b {
        RequestBudget::Count(_) => format!("budget {allowed}"),
        RequestBudget::Fraction(_) => {
            format!("budget {b} of {exposed} from the first fault on: {allowed}")
        }
    };
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
        "budget_failed": allowed_failed,
        "budget_unknown": allowed_unknown,
        "requests_from_first_fault": exposed,
        "servers": servers,
        "traffic": {
            "bucket_s": bucket_s,
            "buckets": buckets.iter().map(|(t, by)| json!({ "t_s": t, "servers": by })).collect::<Vec<_>>(),
        },
        "failure_detail": detail,
    });
    let mut problems = Vec::new();
    let failed_budget = budget(budgets.max_failed_requests, allowed_failed);
    let unknown_budget = budget(budgets.max_unknown_requests, allowed_unknown);
    if failed > allowed_failed {
        problems.push(format!("{failed} failed user requests, {failed_budget}"));
    }
    if unknown > allowed_unknown {
        problems.push(format!("{unknown} unknown user requests, {unknown_budget}"));
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
        "{} user requests: {failed} failed ({failed_budget}), {unknown} unknown ({unknown_budget})",
        users.len(),
    );
    if excused > 0 {
        summary.push_str(&format!(
            ", {excused} sessions rejected after the secret rotation (expected)"
        ));
    }
    summary.push_str(&format!("; served by {shares}"));
    judged("user-requests", &problems, Verdict::Pass, summary, figures)
}

/// `availability` as a scenario's check: probes at `probe_period`, and the users' `traffic`.
pub struct Availability {
    pub probe_period: Duration,
    pub traffic: Traffic<'static>,
    /// The client whose probes are judged, when several workloads probe (a Redis's and an
    /// S3 store's probes together would hide an outage of either); `None`: every probe.
    pub probes_of: Option<String>,
}

impl Check for Availability {
    fn name(&self) -> &str {
        "availability"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        let Some(client) = &self.probes_of else {
            return availability(e.events, self.probe_period, &self.traffic, e.budgets);
        };
        let events: Vec<Event> = e
            .events
            .iter()
            .filter(
                |ev| !matches!(ev, Event::Op(o) if o.kind == OpKind::PROBE && o.client != *client),
            )
            .cloned()
            .collect();
        availability(&events, self.probe_period, &self.traffic, e.budgets)
    }
}

/// `user_requests` as a scenario's check.
pub struct UserRequests(pub Traffic<'static>);

impl Check for UserRequests {
    fn name(&self) -> &str {
        "user-requests"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        user_requests(e.events, &self.0, e.budgets)
    }
}

/// How long the load balancer kept sending users to the servers a cut isolated: per
/// partition, isolation or split, from its start to the last user request one of its targets
/// answered (sent before the next fault), against `max_drain`. It names the server and the
/// requests it took. Only answered requests name their server, so a cut server whose requests
/// all time out shows as no traffic here (and as failures in `user-requests`). Runs when the
/// scenario sets the budget.
pub struct Drain(pub Traffic<'static>);

impl Check for Drain {
    fn name(&self) -> &str {
        "drain"
    }

    fn applies(&self, e: &Evidence<'_>) -> bool {
        e.budgets.max_drain.is_some()
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        let Some(budget) = e.budgets.max_drain else {
            return CheckResult::unknown(self.name(), "no max_drain budget".into());
        };
        let all = ops(e.events);
        let faults = faults(e.events);
        let mut problems = Vec::new();
        let mut lines = Vec::new();
        let mut windows = Vec::new();
        for (i, f) in faults.iter().enumerate() {
            if !matches!(
                f.fault,
                Fault::Partition { .. } | Fault::Isolate { .. } | Fault::Split { .. }
            ) {
                continue;
            }
            let until = faults.get(i + 1).map_or(Stamp(u64::MAX), |n| n.start);
            let mut by_server: BTreeMap<&str, (usize, Stamp)> = BTreeMap::new();
            for o in all.iter().filter(|o| self.0.is_user_request(o)) {
                let Some(node) = o.node.as_deref().filter(|n| f.nodes.iter().any(|t| t == n))
                else {
                    continue;
                };
                if o.invoke >= f.start && o.invoke < until {
                    let (n, last) = by_server.entry(node).or_insert((0, o.invoke));
                    *n += 1;
                    *last = (*last).max(o.invoke);
                }
            }
            let what = format!("#{} {}", f.id, f.fault.name());
            if by_server.is_empty() {
                lines.push(format!(
                    "no user was sent to {} after {what}",
                    f.nodes.join(",")
                ));
            }
            for (server, (requests, last)) in &by_server {
                let kept = last.since(f.start);
                let line = format!(
                    "{server} kept receiving users for {} ms after {what} ({requests} requests)",
                    kept.as_millis()
                );
                if kept > budget {
                    problems.push(format!("{line}, budget {} ms", budget.as_millis()));
                } else {
                    lines.push(line);
                }
                windows.push(json!({
                    "fault": f.id,
                    "server": server,
                    "requests": requests,
                    "kept_ms": kept.as_millis() as u64,
                }));
            }
        }
        judged(
            self.name(),
            &problems,
            Verdict::Pass,
            lines.join("; "),
            json!({ "budget_ms": budget.as_millis() as u64, "windows": windows }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{fault_on, kill as kill_on, op};
    use hadrill_model::Fault;

    const LOGIN: OpKind = OpKind::new("login");
    const UPLOAD: OpKind = OpKind::new("upload");
    const READ: OpKind = OpKind::new("read");
    /// A web product's users: they sign in, upload and read.
    const TRAFFIC: Traffic = Traffic {
        requests: Cow::Borrowed(&[LOGIN, UPLOAD, READ]),
        login: Some(LOGIN),
    };

    fn fault(id: u64, kind: Fault, at_ms: u64) -> Event {
        fault_on("app1", id, kind, at_ms)
    }

    fn kill() -> Fault {
        kill_on("app1")
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
        let r = availability(&outage(4500), Duration::from_millis(50), &TRAFFIC, &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        // To the first answer to a success (sent at 4 500 ms, answered 5 ms later).
        assert_eq!(r.figures["worst_unavailable_ms"], 1505);
        assert_eq!(r.figures["uncertainty_ms"], serde_json::Value::Null);
        assert_eq!(r.figures["windows"][0]["uncertainty_ms"], 55);

        // A probe sent during the outage that waits for the service and succeeds says the
        // service was back when it was answered, not when it was sent.
        // The outage of `outage(4500)` with the probe sent at `sent_ms` succeeding, answered
        // at `answered_ms`.
        let waiting = |sent_ms: u64, answered_ms: u64| {
            let mut events = outage(4500);
            if let Event::Op(o) = &mut events[sent_ms as usize / 50 + 1] {
                o.outcome = Outcome::Ok;
                o.complete = Stamp(answered_ms * 1_000_000);
            }
            events
        };
        let r = availability(
            &waiting(4000, 4700),
            Duration::from_millis(50),
            &TRAFFIC,
            &budgets,
        );
        assert_eq!(r.figures["worst_unavailable_ms"], 1505);
        // The last success to be sent during the outage, answered at 4 800 ms when the probe
        // sent at 4 500 ms was answered at 4 505 ms: the service was back at 4 505 ms (a CI run
        // once reported 6.7 s for a request a paused server held while the other served).
        let held = waiting(4450, 4800);
        let r = availability(&held, Duration::from_millis(50), &TRAFFIC, &budgets);
        assert_eq!(r.figures["worst_unavailable_ms"], 1505);
        // The last failure was sent at 4 400 ms, 105 ms before that answer: the resolution.
        assert!(r.summary.contains("(±105 ms resolution)"), "{}", r.summary);

        let r = availability(&outage(6000), Duration::from_millis(50), &TRAFFIC, &budgets);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary
                .contains("unavailable for 3005 ms, budget 2000 ms"),
            "{}",
            r.summary
        );
    }

    /// A CI run's case: back-to-back faults, and the only failure a request sent just
    /// before the second and cut by it. It is the second fault's, and it cost milliseconds;
    /// counted by its sending it stretched the first fault's window to its end (5.2 s).
    #[test]
    fn a_failure_in_flight_at_a_fault_counts_from_that_fault() {
        let mut events = vec![fault(1, kill(), 3000), fault(2, kill(), 5000)];
        for (i, t) in (0..8_000).step_by(50).enumerate() {
            events.push(Event::Op(op(i as u64, OpKind::PROBE, t, Outcome::Ok)));
        }
        let mut cut = op(1_000, OpKind::PROBE, 4_990, Outcome::Unknown);
        cut.complete = Stamp(5_010 * 1_000_000);
        events.push(Event::Op(cut));
        let r = availability(
            &events,
            Duration::from_millis(50),
            &TRAFFIC,
            &Budgets::default(),
        );
        let windows = &r.figures["windows"];
        assert_eq!(windows[0]["unavailable_ms"], 0, "{windows}");
        // Back at the answer to the next probe, sent at 5 050 ms and answered 5 ms later.
        assert_eq!(windows[1]["unavailable_ms"], 55, "{windows}");
        assert_eq!(windows[1]["failed_probes"], 1, "{windows}");
        assert_eq!(windows[0]["failed_probes"], 0, "{windows}");
    }

    #[test]
    fn never_recovering_fails_and_no_probe_is_unknown() {
        let r = availability(
            &outage(20_000),
            Duration::from_millis(50),
            &TRAFFIC,
            &Budgets::default(),
        );
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.summary.contains("never recovered"));
        let r = availability(
            &[fault(1, kill(), 0)],
            Duration::from_millis(50),
            &TRAFFIC,
            &Budgets::default(),
        );
        assert_eq!(r.verdict, Verdict::Unknown);
    }

    /// The CI run behind this rule: a kill cost the probe 100 ms, and one probe timed out 3 s
    /// later while every other probe and request was answered. That lone timeout is a window of
    /// its own (sent, then answered again 50 ms later), not the kill's outage stretched to it.
    #[test]
    fn a_lone_failure_long_after_the_recovery_is_its_own_window() {
        let mut e = outage(3100);
        let late = 6000 / 50 + 1;
        if let Event::Op(o) = &mut e[late] {
            o.outcome = Outcome::Unknown;
            o.complete = Stamp(7_000 * 1_000_000);
        }
        let budgets = Budgets {
            max_unavailability: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["worst_unavailable_ms"], 105, "{}", r.summary);
        // Failures less than a second apart are one outage: a path failing every other
        // request for 3 s was down for 3 s.
        let mut flapping = outage(3000);
        for t in (3000..6000).step_by(100) {
            if let Event::Op(o) = &mut flapping[t / 50 + 1] {
                o.outcome = Outcome::Fail;
            }
        }
        let r = availability(&flapping, Duration::from_millis(50), &TRAFFIC, &budgets);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert_eq!(r.figures["worst_unavailable_ms"], 2955, "{}", r.summary);
        // The negative control cut-app-from-redis@web-ha-liveness: a server kept in rotation
        // holds each upload 3 s before its 503, from 3 s to 9 s, while the probe is answered
        // throughout. Each failure keeps the outage open until its answer: one outage, to the
        // first answer after the last failure.
        let mut held = outage(3000);
        for (i, t) in (3000..9000).step_by(1000).enumerate() {
            let mut o = op(1000 + i as u64, UPLOAD, t + 100, Outcome::Fail);
            o.complete = Stamp((t + 3100) * 1_000_000);
            held.push(Event::Op(o));
        }
        // Uploads served again once the server is out of rotation.
        held.push(Event::Op(op(999, UPLOAD, 9500, Outcome::Ok)));
        let r = availability(&held, Duration::from_millis(50), &TRAFFIC, &budgets);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        // From the first failure (the probe was answered after the fault before it) to the
        // answer to the probe sent after the last (8 150 ms, answered 8 155 ms).
        assert_eq!(r.figures["worst_unavailable_ms"], 5055, "{}", r.summary);
    }

    /// A path is back when it succeeds again: uploads that fail from the kill to the end fail
    /// availability as never recovered, though every probe and read was answered.
    #[test]
    fn a_path_that_never_recovers_fails_whatever_the_others_do() {
        let mut e = outage(3000);
        for (i, t) in (0..10_000).step_by(200).enumerate() {
            let outcome = if t < 3000 { Outcome::Ok } else { Outcome::Fail };
            e.push(user_op(1000 + i as u64, UPLOAD, t, outcome, "app2"));
            e.push(user_op(2000 + i as u64, READ, t + 100, Outcome::Ok, "app2"));
        }
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert!(
            r.summary
                .contains("`upload` never recovered after the kill at 3.0 s"),
            "{}",
            r.summary
        );
        // Reads of what was lost fail to the end while the other reads are served: the path
        // works, for some (continuity judges what is gone); its outage runs to its last answer.
        let mut e = outage(3000);
        for (i, t) in (3000..10_000).step_by(200).enumerate() {
            let outcome = if i % 2 == 0 {
                Outcome::Fail
            } else {
                Outcome::Ok
            };
            e.push(user_op(1000 + i as u64, READ, t, outcome, "app2"));
        }
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        // A path whose one failure was its last attempt: its recovery was never seen.
        let mut e = outage(3000);
        e.push(user_op(999, LOGIN, 4000, Outcome::Fail, "app2"));
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &Budgets::default());
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
        assert!(
            r.summary
                .contains("`login` failed after the kill at 3.0 s and was not tried again"),
            "{}",
            r.summary
        );
    }

    /// The store killed at 3 s and started at 5 s (mlflow-s3-outage, 2026-12-08): uploads fail
    /// to the start, and the one sent just after it, the last, fails too. The kill's window
    /// does not call the path never recovered: the start's window judges it, and its recovery
    /// was not seen.
    #[test]
    fn a_path_still_failing_at_the_next_fault_is_judged_by_that_faults_window() {
        let mut e = outage(3000);
        e.push(fault(2, Fault::start(["app1"]), 5000));
        for (i, t) in (3000..=5200).step_by(200).enumerate() {
            e.push(user_op(1000 + i as u64, UPLOAD, t, Outcome::Fail, "app2"));
        }
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &Budgets::default());
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
        assert!(!r.summary.contains("never recovered"), "{}", r.summary);
        assert!(
            r.summary
                .contains("`upload` failed after the start at 5.0 s and was not tried again"),
            "{}",
            r.summary
        );
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
            e.push(user_op(1000 + i as u64, READ, t, Outcome::Fail, "app1"));
            e.push(user_op(2000 + i as u64, READ, t + 100, Outcome::Ok, "app2"));
        }
        let budgets = Budgets {
            max_unavailability: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &budgets);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert_eq!(r.figures["windows"][0]["failed_probes"], 0);
        assert_eq!(r.figures["windows"][0]["failed_user_requests"], 25);
        assert!(
            r.summary.contains("unavailable for 4855 ms"),
            "{}",
            r.summary
        );
        let r = user_requests(&e, &TRAFFIC, &budgets);
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
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &Budgets::default());
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
        let r = availability(&e, Duration::from_millis(50), &TRAFFIC, &budgets);
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
        assert_eq!(
            (b.max_failed_requests, b.max_unknown_requests),
            (RequestBudget::Count(0), RequestBudget::Count(0))
        );
        let e = vec![
            user_op(1, UPLOAD, 100, Outcome::Ok, "app1"),
            user_op(2, UPLOAD, 200, Outcome::Fail, "app2"),
        ];
        let r = user_requests(&e, &TRAFFIC, &b);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert!(
            r.summary.contains("1 failed user requests, budget 0"),
            "{}",
            r.summary
        );
        // Nothing to judge is not a pass.
        assert_eq!(user_requests(&[], &TRAFFIC, &b).verdict, Verdict::Unknown);
    }

    #[test]
    fn failed_and_unknown_user_requests_are_counted_apart() {
        let mut e = vec![user_op(1, READ, 100, Outcome::Ok, "app1")];
        e.extend((2..5).map(|i| user_op(i, READ, i * 100, Outcome::Fail, "app1")));
        e.extend((5..7).map(|i| user_op(i, UPLOAD, i * 100, Outcome::Unknown, "app2")));
        // The probe and the verifier are not users.
        e.push(Event::Op(op(9, OpKind::PROBE, 900, Outcome::Fail)));
        let r = user_requests(&e, &TRAFFIC, &Budgets::default());
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
            max_failed_requests: RequestBudget::Count(3),
            ..Default::default()
        };
        let r = user_requests(&e, &TRAFFIC, &b);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            !r.summary.contains("failed user requests, budget"),
            "{}",
            r.summary
        );
        let b = Budgets {
            max_failed_requests: RequestBudget::Count(3),
            max_unknown_requests: RequestBudget::Count(2),
            ..Default::default()
        };
        assert_eq!(user_requests(&e, &TRAFFIC, &b).verdict, Verdict::Pass);
    }

    /// A share of the requests sent from the first fault on: a product that fails fast and
    /// one that fails slowly, with the same share failing, are judged alike.
    #[test]
    fn a_fraction_budget_is_a_share_of_the_requests_from_the_first_fault_on() {
        let b: Budgets =
            toml::from_str("max_failed_requests = \"25%\"\nmax_unknown_requests = 1").unwrap();
        assert_eq!(b.max_failed_requests, RequestBudget::Fraction(0.25));
        let history = |sent: u64| {
            let mut e = vec![fault_on("app1", 1, kill_on("app1"), 1_000)];
            // Before the fault: not exposed. From it on: one in four fails.
            e.push(user_op(1, READ, 500, Outcome::Ok, "app1"));
            e.extend((0..sent).map(|i| {
                let outcome = if i % 4 == 0 {
                    Outcome::Fail
                } else {
                    Outcome::Ok
                };
                user_op(10 + i, READ, 1_000 + i * 100, outcome, "app2")
            }));
            e
        };
        for sent in [8, 40] {
            let r = user_requests(&history(sent), &TRAFFIC, &b);
            assert_eq!(r.verdict, Verdict::Pass, "{sent}: {}", r.summary);
            assert!(
                r.summary
                    .contains(&format!("budget 25% of {sent} from the first fault on")),
                "{}",
                r.summary
            );
        }
        let mut worse = history(8);
        worse.push(user_op(99, READ, 1_950, Outcome::Fail, "app2"));
        assert_eq!(user_requests(&worse, &TRAFFIC, &b).verdict, Verdict::Fail);
        for bad in ["\"5\"", "\"150%\"", "\"x%\""] {
            let e = toml::from_str::<Budgets>(&format!("max_failed_requests = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not a request budget"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_rejections_a_rotation_explains_are_expected() {
        let rotate = Fault::RotateSecret {
            secret: "SECRET_KEY".into(),
            targets: vec!["app".into()],
        };
        let restart = |id, node: &str, at_ms: u64| {
            let kind = Fault::Restart {
                targets: vec![node.into()],
                timeout: Duration::from_secs(10),
            };
            fault_on(node, id, kind, at_ms)
        };
        let rejected = |id, at_ms, node: &str| {
            let mut o = op(id, UPLOAD, at_ms, Outcome::Fail);
            o.error = Some(hadrill_model::UNAUTHORIZED.into());
            o.node = Some(node.into());
            Event::Op(o)
        };
        let mut rot = FaultRecord::applied(
            1,
            rotate,
            &["app1", "app2"],
            Stamp(2_000_000_000),
            Stamp(2_001_000_000),
        );
        let e = vec![
            user_op(1, LOGIN, 1000, Outcome::Ok, "app1"),
            Event::Fault(rot.clone()),
            restart(2, "app1", 3000),
            // The cookie from before the rotation, refused by app1 with its new secret.
            rejected(3, 4000, "app1"),
            // A new cookie from app1 (new secret), refused by app2 (old secret).
            user_op(4, LOGIN, 4100, Outcome::Ok, "app1"),
            rejected(5, 4200, "app2"),
            restart(3, "app2", 5000),
            // Both on the new secret: a refusal now is a defect.
            rejected(6, 6000, "app2"),
            // While app2 restarts, its old process may still be answering: explained.
            rejected(7, 5000, "app2"),
        ];
        let r = user_requests(&e, &TRAFFIC, &Budgets::default());
        assert_eq!(r.figures["expected_rejections"], 3, "{}", r.summary);
        // The probe names the issuer of its cookie: a refusal the rotation explains is no
        // outage, one it does not explain is.
        let probe_refused = |id, at_ms, issuer: &str, node: &str| {
            let mut o = op(id, OpKind::PROBE, at_ms, Outcome::Fail);
            o.error = Some(hadrill_model::UNAUTHORIZED.into());
            o.key = Some(issuer.into());
            o.node = Some(node.into());
            Event::Op(o)
        };
        let mut with_probes = e.clone();
        with_probes.push(probe_refused(20, 4300, "app1", "app2"));
        with_probes.push(Event::Op(op(21, OpKind::PROBE, 4400, Outcome::Ok)));
        let a = availability(
            &with_probes,
            Duration::from_millis(50),
            &TRAFFIC,
            &Budgets::default(),
        );
        assert_eq!(a.figures["probes_rejected_by_rotation"], 1, "{}", a.summary);
        assert_eq!(a.figures["probes"], 1);
        with_probes.push(probe_refused(22, 6100, "app2", "app2"));
        let a = availability(
            &with_probes,
            Duration::from_millis(50),
            &TRAFFIC,
            &Budgets::default(),
        );
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
        let r = user_requests(&e, &TRAFFIC, &Budgets::default());
        assert_eq!(r.figures["expected_rejections"], 0);
        assert_eq!(r.figures["failed"], 4);
    }

    fn served_by(id: u64, node: &str, at_ms: u64) -> Event {
        let mut o = op(id, READ, at_ms, Outcome::Ok);
        o.node = Some(node.into());
        Event::Op(o)
    }

    fn drain(events: &[Event]) -> CheckResult {
        let budgets = Budgets {
            max_drain: Some(Duration::from_secs(2)),
            ..Budgets::default()
        };
        let finals = BTreeMap::new();
        Drain(TRAFFIC).judge(&Evidence {
            events,
            budgets: &budgets,
            finals: &finals,
        })
    }

    #[test]
    fn a_server_kept_in_rotation_after_its_cut_fails_drain_and_is_named() {
        let cut = Fault::Isolate {
            targets: vec!["app1".into()],
            effect: Default::default(),
        };
        let mut events = vec![fault(1, cut.clone(), 1_000)];
        // Readiness: app1 answers users for 400 ms after the cut, then only app2.
        events.extend([served_by(2, "app1", 1_200), served_by(3, "app1", 1_400)]);
        events.extend((0..10).map(|i| served_by(10 + i, "app2", 1_500 + i * 500)));
        events.push(fault(30, Fault::Heal, 11_000));
        let ok = drain(&events);
        assert_eq!(ok.verdict, Verdict::Pass, "{}", ok.summary);
        assert!(
            ok.summary.contains("app1 kept receiving users for 400 ms"),
            "{}",
            ok.summary
        );
        // Liveness: app1 keeps answering users until the heal.
        events.push(served_by(40, "app1", 9_000));
        let bad = drain(&events);
        assert_eq!(bad.verdict, Verdict::Fail, "{}", bad.summary);
        assert!(
            bad.summary
                .contains("app1 kept receiving users for 8000 ms"),
            "{}",
            bad.summary
        );
    }
}
