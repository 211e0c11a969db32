//! Checks of a replicated database under a failover manager, from the SQL workload's history,
//! the cluster observer's records and the final read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::writes::Audit;
use super::{judged, secs};
use crate::clock::Stamp;
use hadrill_model::{
    Budgets, Check, CheckResult, ClusterFinal, Event, Evidence, Fault, FaultRecord, OpKind,
    OpRecord, Outcome, SQL_READ, SqlFinal, Verdict, faults, is_primary, last_roles, ops,
};

fn ms_between(from: Stamp, to: Stamp) -> u64 {
    to.since(from).as_millis() as u64
}

/// Every acknowledged insert is in the table afterwards (read through the routed endpoint).
/// Lost acknowledged commits are the RPO, judged against `max_lost_writes`. A key present that
/// no insert explains, or whose insert was reported as certainly failed, is a defect.
pub fn continuity(
    events: &[Event],
    keys: Option<&BTreeSet<String>>,
    budgets: &Budgets,
) -> CheckResult {
    let all = ops(events);
    let Some(keys) = keys else {
        let acked = all
            .iter()
            .filter(|o| o.kind == OpKind::INSERT && o.outcome == Outcome::Ok && o.key.is_some())
            .count();
        return CheckResult::new(
            "continuity",
            Verdict::Unknown,
            format!("{acked} acknowledged commits, but the table could not be read afterwards"),
            json!({ "acknowledged": acked }),
        );
    };
    let held: BTreeMap<String, Option<String>> = keys.iter().map(|k| (k.clone(), None)).collect();
    let restore = hadrill_model::Restore::of(events);
    let audit = Audit::new(&all, &OpKind::INSERT, &held, restore.as_ref());
    let read_back_misses = all
        .iter()
        .filter(|o| o.kind == OpKind::READ_BACK && o.outcome == Outcome::Fail)
        .count();
    let mut figures = audit.figures(budgets);
    figures["rows"] = json!(keys.len());
    figures["rpo_commits"] = json!(audit.lost.len());
    figures["failed_inserts"] = json!(audit.failed.len());
    figures["unknown_inserts"] = json!(audit.unknown.len());
    figures["read_back_misses"] = json!(read_back_misses);
    let summary = format!(
        "{} acknowledged, {} verified, {} lost (RPO), {} unknown ({} took effect), {} read-back misses",
        audit.acked.len(),
        audit.acked.len() - audit.lost.len(),
        audit.lost.len(),
        audit.unknown.len(),
        audit.unknown_took_effect,
        read_back_misses
    );
    judged(
        "continuity",
        &audit.problems("commits", budgets),
        audit.clean(),
        summary,
        figures,
    )
}

/// The longest gap between probe rounds single-primary accepts: a split brain of a failover
/// manager lasts seconds (a leader key's TTL), and a probe starved of CPU now and then (the
/// mean rate of a 10 Hz probe measured 8.9 Hz on a loaded 2-core machine, its longest gap
/// 0.75 s) still sees one.
const MAX_ROUND_GAP: Duration = Duration::from_secs(1);

/// No probe round in which two members accepted a write. Each round writes to every member
/// directly at the same moment; a member accepting it is acting as a primary. Unknown when
/// rounds were further apart than `MAX_ROUND_GAP`.
pub fn single_primary(events: &[Event], probe_hz: f64) -> CheckResult {
    let probes: Vec<OpRecord> = ops(events)
        .into_iter()
        .filter(|o| o.kind == OpKind::WRITE_PROBE)
        .collect();
    let mut per_node: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut accepted: BTreeMap<i64, Vec<&OpRecord>> = BTreeMap::new();
    for p in &probes {
        let node = p.key.clone().unwrap_or_default();
        per_node.entry(node).or_default()[p.outcome as usize] += 1;
        if p.outcome == Outcome::Ok
            && let Some(round) = p.value.as_ref().and_then(|v| v.parse().ok())
        {
            accepted.entry(round).or_default().push(p);
        }
    }
    let rounds: BTreeSet<&str> = probes.iter().filter_map(|p| p.value.as_deref()).collect();
    let span = match (
        probes.iter().map(|p| p.invoke).min(),
        probes.iter().map(|p| p.invoke).max(),
    ) {
        (Some(a), Some(b)) if b > a => b.since(a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = if span > 0.0 {
        (rounds.len().saturating_sub(1)) as f64 / span
    } else {
        0.0
    };
    // The check's resolution: two primaries for less than the longest gap between rounds
    // could go unseen.
    let mut starts: BTreeMap<&str, Stamp> = BTreeMap::new();
    for p in &probes {
        if let Some(round) = p.value.as_deref() {
            let at = starts.entry(round).or_insert(p.invoke);
            *at = (*at).min(p.invoke);
        }
    }
    let mut starts: Vec<Stamp> = starts.into_values().collect();
    starts.sort();
    let longest_gap = starts
        .windows(2)
        .map(|w| w[1].since(w[0]))
        .max()
        .unwrap_or_default();
    let conflicts: Vec<serde_json::Value> = accepted
        .iter()
        .filter(|(_, ps)| ps.iter().map(|p| &p.key).collect::<BTreeSet<_>>().len() > 1)
        .map(|(round, ps)| {
            json!({
                "round": round,
                "at_s": ps.iter().map(|p| p.invoke).min().map(secs),
                "nodes": ps.iter().filter_map(|p| p.key.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let window = (
        conflicts.first().and_then(|c| c["at_s"].as_f64()),
        conflicts.last().and_then(|c| c["at_s"].as_f64()),
    );
    let figures = json!({
        "two_primaries_from_s": window.0,
        "two_primaries_until_s": window.1,
        "probes": probes.len(),
        "rounds": rounds.len(),
        "rounds_per_second": (rate * 10.0).round() / 10.0,
        "configured_hz": probe_hz,
        "longest_gap_ms": longest_gap.as_millis() as u64,
        "per_node": per_node.iter().map(|(n, c)| (n.clone(), json!({"accepted": c[0], "refused": c[1], "unknown": c[2]}))).collect::<BTreeMap<_, _>>(),
        "two_primaries": conflicts.len(),
        "conflicts": conflicts.iter().take(20).collect::<Vec<_>>(),
    });
    if per_node.len() < 2 {
        return CheckResult::new(
            "single-primary",
            Verdict::Unknown,
            format!("{} members probed; need at least 2", per_node.len()),
            figures,
        );
    }
    // Two members holding a virtual IP at once is a split brain too, whoever took writes.
    let shared_vip: Vec<OpRecord> = leaders(events)
        .into_iter()
        .filter(|o| o.value.as_deref().is_some_and(|v| v.contains(',')))
        .collect();
    if let Some(first) = shared_vip.first() {
        let mut figures = figures;
        figures["vip_held_by_two"] = json!(
            shared_vip
                .iter()
                .map(|o| json!({"at_s": secs(o.invoke), "holders": o.value}))
                .collect::<Vec<_>>()
        );
        return CheckResult::new(
            "single-primary",
            Verdict::Fail,
            format!(
                "split brain: {} held the virtual IP at once at t={:.2}s{}",
                first
                    .value
                    .clone()
                    .unwrap_or_default()
                    .replace(',', " and "),
                secs(first.invoke),
                conflicts.first().map_or(String::new(), |c| format!(
                    "; {} rounds in which two members accepted writes, from t={:.2}s to t={:.2}s",
                    conflicts.len(),
                    c["at_s"].as_f64().unwrap_or(0.0),
                    window.1.unwrap_or(0.0)
                ))
            ),
            figures,
        );
    }
    if let Some(first) = conflicts.first() {
        return CheckResult::new(
            "single-primary",
            Verdict::Fail,
            format!(
                "two primaries: {} accepted writes in the same round at t={:.2}s ({} such rounds, the last at t={:.2}s)",
                first["nodes"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(" and "))
                    .unwrap_or_default(),
                first["at_s"].as_f64().unwrap_or(0.0),
                conflicts.len(),
                window.1.unwrap_or(0.0)
            ),
            figures,
        );
    }
    let summary = format!(
        "{} rounds at {:.1} Hz over {} members (at most {} ms apart), never two accepting writes",
        rounds.len(),
        rate,
        per_node.len(),
        longest_gap.as_millis()
    );
    if longest_gap > MAX_ROUND_GAP {
        return CheckResult::new(
            "single-primary",
            Verdict::Unknown,
            format!(
                "rounds as far as {} ms apart (the {probe_hz} Hz probe was held up): two primaries for less than that could go unseen; {summary}",
                longest_gap.as_millis()
            ),
            figures,
        );
    }
    CheckResult::new("single-primary", Verdict::Pass, summary, figures)
}

fn leaders(events: &[Event]) -> Vec<OpRecord> {
    ops(events)
        .into_iter()
        .filter(|o| o.kind == OpKind::LEADER)
        .collect()
}

/// Faults that can take the primary away.
fn can_remove_primary(f: &FaultRecord) -> bool {
    matches!(
        f.fault.name(),
        "kill" | "stop" | "restart" | "pause" | "partition" | "isolate" | "exec"
    )
}

/// Per fault: if it hit the primary, the timeline fault → leader key released or expired →
/// old primary demoted → another member promoted → first write acknowledged through the
/// routed endpoint after the promotion, each on the run's clock. A fault that did not hit the
/// primary must not cause a promotion.
pub fn failover(events: &[Event], write_kinds: &[OpKind], budgets: &Budgets) -> CheckResult {
    let all = ops(events);
    let observed = |kind: OpKind| -> Vec<&OpRecord> {
        all.iter().filter(|o| o.kind == kind).collect::<Vec<_>>()
    };
    let (roles, leaders) = (observed(OpKind::ROLE), observed(OpKind::LEADER));
    let members: BTreeSet<&str> = roles.iter().filter_map(|o| o.key.as_deref()).collect();
    // The direct write probes, by member: who took writes, whatever its status API said (a
    // primary cut from its DCS may still call itself primary while refusing writes).
    let member_probes: Vec<&OpRecord> = all
        .iter()
        .filter(|o| o.kind == OpKind::WRITE_PROBE && o.node.is_some())
        .collect();
    // The members seen primary by `t`, each by its last role observed by then.
    let primaries_at = |t: Stamp| -> Vec<&str> {
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for o in roles.iter().filter(|o| o.invoke <= t) {
            if let (Some(k), Some(v)) = (o.key.as_deref(), o.value.as_deref()) {
                last.insert(k, v);
            }
        }
        last.into_iter()
            .filter(|(_, r)| is_primary(r))
            .map(|(m, _)| m)
            .collect()
    };
    // Whether `member` may have taken a write sent at `t`: its last direct write probe
    // answered by then succeeded, or, with no probe of it, it was seen primary.
    let accepting_at = |member: &str, t: Stamp| -> bool {
        let probes = member_probes
            .iter()
            .filter(|o| o.node.as_deref() == Some(member));
        match probes.clone().next() {
            Some(_) => probes
                .filter(|o| o.complete <= t)
                .max_by_key(|o| o.complete)
                .is_some_and(|o| o.outcome == Outcome::Ok),
            None => primaries_at(t).contains(&member),
        }
    };
    // Writes through the application (the kinds the workloads declare: SQL inserts, a
    // product's uploads) and the routed write probe.
    let writes: Vec<&OpRecord> = all
        .iter()
        .filter(|o| {
            o.kind.is_any(write_kinds) || (o.kind == OpKind::PROBE && o.client == "sql-probe")
        })
        .collect();
    let triggers: Vec<FaultRecord> = faults(events)
        .into_iter()
        .filter(|f| f.outcome == Outcome::Ok && can_remove_primary(f))
        .collect();
    let mut timelines = Vec::new();
    let mut problems = Vec::new();
    for (i, f) in triggers.iter().enumerate() {
        let until = triggers.get(i + 1).map_or(Stamp(u64::MAX), |n| n.start);
        // What the observer knew when the fault started: answers it had by then. A poll sent
        // just before a kill and answered after it saw the kill, not the state before it.
        let before: Vec<Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Op(o) if o.complete <= f.start))
            .cloned()
            .collect();
        let old = last_roles(&before)
            .into_iter()
            .find(|(_, r)| is_primary(r))
            .map(|(n, _)| n);
        let old_leader = leaders
            .iter()
            .rfind(|o| o.complete <= f.start)
            .and_then(|o| o.value.clone());
        let in_window = |o: &&&OpRecord| o.invoke >= f.start && o.invoke < until;
        let promoted = roles
            .iter()
            .filter(in_window)
            .find(|o| is_primary(o.value.as_deref().unwrap_or("")) && o.key != old);
        // A partition hits the primary when it is on side `a`, the side cut off; an operator
        // command (a switchover) is meant to move it.
        let hit = match &f.fault {
            Fault::Partition { a, .. } => {
                a.iter().any(|t| t == "@primary" || Some(t) == old.as_ref())
            }
            Fault::Exec { .. } => true,
            _ => old.as_ref().is_some_and(|o| f.nodes.contains(o)),
        };
        if !hit {
            if let Some(p) = promoted {
                problems.push(format!(
                    "fault #{} ({} {}) did not touch the primary, yet {} was promoted at t={:.2}s",
                    f.id,
                    f.fault.name(),
                    f.nodes.join(","),
                    p.key.clone().unwrap_or_default(),
                    secs(p.invoke)
                ));
            }
            continue;
        }
        let leader_change = leaders
            .iter()
            .filter(in_window)
            .find(|o| o.value != old_leader);
        let demoted = roles
            .iter()
            .filter(in_window)
            .find(|o| o.key == old && !is_primary(o.value.as_deref().unwrap_or("")));
        let new = promoted.and_then(|p| p.key.as_deref());
        // A write counts for the new primary only if it took it: by the node that answered
        // when that is a member, else because no other member was seen primary when it was
        // sent (a deposed primary cut off and still taking writes is not a failover).
        let on_new = |w: &OpRecord| match w.node.as_deref() {
            Some(n) if members.contains(n) => Some(n) == new,
            _ => members
                .iter()
                .filter(|m| Some(**m) != new)
                .all(|m| !accepting_at(m, w.invoke)),
        };
        let first_write = promoted.and_then(|p| {
            writes
                .iter()
                .find(|w| w.outcome == Outcome::Ok && w.invoke >= p.invoke && on_new(w))
        });
        // Writes the old primary took after another was promoted: by the answering node, or
        // by the write probes sent to it directly.
        let deposed_writes = promoted.map_or(0, |p| {
            all.iter()
                .filter(|w| {
                    w.outcome == Outcome::Ok
                        && w.invoke >= p.invoke
                        && w.invoke < until
                        && (w.kind.is_any(write_kinds) || w.kind == OpKind::WRITE_PROBE)
                        && w.node.is_some()
                        && w.node == old
                })
                .count()
        });
        let since = |o: Option<&&OpRecord>, at: fn(&OpRecord) -> Stamp| {
            o.map(|o| ms_between(f.start, at(o)))
        };
        let to_write = since(first_write, |o| o.complete);
        timelines.push(json!({
            "fault": f.id,
            "kind": f.fault.name(),
            "nodes": f.nodes,
            "fault_at_s": secs(f.start),
            "old_primary": old,
            "leader_key_changed_ms": since(leader_change, |o| o.invoke),
            "leader_key_value": leader_change.and_then(|o| o.value.clone()),
            "old_primary_demoted_ms": since(demoted, |o| o.invoke),
            "old_primary_seen_as": demoted.and_then(|o| o.value.clone()),
            "promoted_ms": since(promoted, |o| o.invoke),
            "new_primary": promoted.and_then(|o| o.key.clone()),
            "first_write_ms": to_write,
            "deposed_primary_writes": deposed_writes,
            "budget_ms": budgets.max_failover.map(|b| b.as_millis() as u64),
        }));
        if deposed_writes > 0 {
            problems.push(format!(
                "fault #{}: the deposed primary {} took {deposed_writes} writes after {} was promoted",
                f.id,
                old.as_deref().unwrap_or("?"),
                new.unwrap_or("?")
            ));
        }
        match (promoted, to_write) {
            (None, _) => problems.push(format!(
                "fault #{} ({} {}): no other member was seen promoted",
                f.id,
                f.fault.name(),
                f.nodes.join(",")
            )),
            (Some(_), None) => problems.push(format!(
                "fault #{}: {} was promoted but no write it took succeeded afterwards",
                f.id,
                new.unwrap_or("a member")
            )),
            (Some(_), Some(ms)) => {
                if let Some(b) = budgets.max_failover
                    && ms > b.as_millis() as u64
                {
                    problems.push(format!(
                        "fault #{}: writes resumed {ms} ms after it, budget {} ms",
                        f.id,
                        b.as_millis()
                    ));
                }
            }
        }
    }
    let figures = json!({
        "failovers": timelines,
        "role_observations": roles.len(),
        "leader_observations": leaders.len(),
    });
    if roles.is_empty() {
        return CheckResult::new(
            "failover",
            Verdict::Unknown,
            "the cluster observer recorded no roles".into(),
            figures,
        );
    }
    let summary = match timelines.as_slice() {
        [] if problems.is_empty() => "no fault hit the primary; no member was promoted".into(),
        [] => String::new(),
        ts => ts
            .iter()
            .map(|t| {
                let ms = |k: &str| t[k].as_u64().map_or("—".into(), |v| format!("{v} ms"));
                format!(
                    "#{}: leader key {}, promoted {} ({}), first write {}",
                    t["fault"],
                    ms("leader_key_changed_ms"),
                    ms("promoted_ms"),
                    t["new_primary"].as_str().unwrap_or("none"),
                    ms("first_write_ms")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    if problems.is_empty() {
        CheckResult::new("failover", Verdict::Pass, summary, figures)
    } else {
        let problems = problems.join("; ");
        let summary = if summary.is_empty() {
            problems
        } else {
            format!("{problems}; {summary}")
        };
        CheckResult::new("failover", Verdict::Fail, summary, figures)
    }
}

/// After the run: one primary, every running replica streaming on its timeline with nothing
/// left to replay, and holding exactly the primary's rows (no divergence left behind). `None`
/// when the script left every other member down, so there is no replica to judge.
pub fn replicas(cluster: &ClusterFinal) -> Option<CheckResult> {
    let primary = cluster
        .members
        .iter()
        .find(|m| m.status.as_ref().is_some_and(|s| is_primary(&s.role)));
    let replica_expected = cluster
        .members
        .iter()
        .filter(|m| primary.is_none_or(|p| p.name != m.name))
        .any(|m| m.running || !m.left_down);
    if primary.is_some() && !replica_expected {
        return None;
    }
    let figures = json!({
        "converged_after_ms": cluster.converged_after_ms,
        "members": cluster.members.iter().map(|m| json!({
            "name": m.name,
            "running": m.running,
            "left_down_by_script": m.left_down,
            "role": m.status.as_ref().map(|s| s.role.clone()),
            "state": m.status.as_ref().map(|s| s.state.clone()),
            "timeline": m.status.as_ref().and_then(|s| s.timeline),
            "wal_position": m.status.as_ref().and_then(|s| s.wal_position),
            "rows": m.keys,
            "digest": m.digest,
            "rewind_log": m.rewind_lines,
        })).collect::<Vec<_>>(),
    });
    let Some(primary) = primary else {
        return Some(CheckResult::new(
            "replicas",
            Verdict::Fail,
            "no primary after the run".into(),
            figures,
        ));
    };
    let p = primary.status.clone().unwrap_or_default();
    let mut problems = Vec::new();
    let mut healthy = Vec::new();
    for m in cluster.members.iter().filter(|m| m.name != primary.name) {
        if m.left_down && !m.running {
            continue;
        }
        let Some(s) = &m.status else {
            problems.push(format!("{}: not answering", m.name));
            continue;
        };
        if is_primary(&s.role) {
            problems.push(format!("{}: also primary", m.name));
        } else if s.state != "running" {
            problems.push(format!("{}: {} ({})", m.name, s.state, s.role));
        } else if s.timeline != p.timeline {
            problems.push(format!(
                "{}: on timeline {:?}, the primary on {:?}",
                m.name, s.timeline, p.timeline
            ));
        } else if s.wal_position != p.wal_position {
            problems.push(format!(
                "{}: replayed to {:?}, the primary is at {:?}",
                m.name, s.wal_position, p.wal_position
            ));
        } else if m.digest.is_none() || m.digest != primary.digest {
            problems.push(format!(
                "{}: holds {:?} rows, the primary {:?} (diverged)",
                m.name, m.keys, primary.keys
            ));
        } else {
            healthy.push(m.name.clone());
        }
    }
    let summary = format!(
        "primary {} on timeline {}; {} in sync (lag 0, same rows){}",
        primary.name,
        p.timeline.map_or("?".into(), |t| t.to_string()),
        if healthy.is_empty() {
            "no replica".to_string()
        } else {
            healthy.join(", ")
        },
        cluster
            .converged_after_ms
            .map_or(String::new(), |ms| format!(
                ", converged {ms} ms after the load stopped"
            ))
    );
    if healthy.is_empty() && problems.is_empty() {
        problems.push("no replica running".into());
    }
    Some(judged(
        "replicas",
        &problems,
        Verdict::Pass,
        summary,
        figures,
    ))
}

/// The SQL workload's acknowledged inserts against its final read (`continuity`).
pub struct SqlContinuity;

impl Check for SqlContinuity {
    fn name(&self) -> &str {
        "continuity"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        match e.final_read::<SqlFinal>(SQL_READ) {
            Ok(f) => continuity(e.events, f.keys.as_ref(), e.budgets),
            Err(why) => CheckResult::unknown(self.name(), why),
        }
    }
}

/// `single_primary` as a scenario's check, at the member probe's frequency.
pub struct SinglePrimary {
    pub member_probe_hz: f64,
}

impl Check for SinglePrimary {
    fn name(&self) -> &str {
        "single-primary"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        single_primary(e.events, self.member_probe_hz)
    }
}

/// `failover` as a scenario's check: `writes` are the kinds the workloads write with.
pub struct Failover {
    pub writes: Vec<OpKind>,
}

impl Check for Failover {
    fn name(&self) -> &str {
        "failover"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        failover(e.events, &self.writes, e.budgets)
    }
}

/// `replicas` as a scenario's check: left out when the script left no replica to judge.
pub struct Replicas;

impl Check for Replicas {
    fn name(&self) -> &str {
        "replicas"
    }

    fn applies(&self, e: &Evidence<'_>) -> bool {
        e.final_read::<SqlFinal>(SQL_READ)
            .map_or(true, |f| replicas(&f.cluster).is_some())
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        match e.final_read::<SqlFinal>(SQL_READ) {
            Ok(f) => replicas(&f.cluster).unwrap_or_else(|| {
                CheckResult::unknown(self.name(), "no replica was left to judge".into())
            }),
            Err(why) => CheckResult::unknown(self.name(), why),
        }
    }
}

/// A standby as `pg_stat_replication` described it (`name state sync_state`) streams
/// synchronously: its primary waits for it before acknowledging a commit.
pub fn streams_synchronously(standby: &str) -> bool {
    standby.ends_with(" streaming sync") || standby.ends_with(" streaming quorum")
}

/// Does the tier replicate as its topology promises? Judged from the primary's live state the
/// `[sql]` workload read before the faults: a promise of synchronous replication needs a
/// standby streaming as `sync` (or `quorum`). Applies when the topology promises synchronous
/// replication: an asynchronous tier promises nothing a standby could break.
pub struct ReplicationClaim;

impl Check for ReplicationClaim {
    fn name(&self) -> &str {
        "replication"
    }

    fn applies(&self, e: &Evidence<'_>) -> bool {
        ops(e.events)
            .iter()
            .any(|o| o.kind == OpKind::REPLICATION && o.key.as_deref() == Some("synchronous"))
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        let all = ops(e.events);
        let Some(read) = all.iter().find(|o| o.kind == OpKind::REPLICATION) else {
            return CheckResult::unknown(self.name(), "the replication state was not read".into());
        };
        let claim = read.key.as_deref().unwrap_or("none");
        let Some(state) = read
            .value
            .as_deref()
            .filter(|_| read.outcome == Outcome::Ok)
        else {
            return CheckResult::unknown(
                self.name(),
                format!(
                    "the topology promises {claim} replication, and the primary's replication state could not be read: {}",
                    read.error.as_deref().unwrap_or("no answer")
                ),
            );
        };
        let standbys: Vec<&str> = state
            .split("; ")
            .filter(|s| *s != "none streaming")
            .collect();
        let sync = standbys.iter().filter(|s| streams_synchronously(s)).count();
        let figures = json!({"promised": claim, "standbys": standbys, "synchronous": sync});
        let (verdict, summary) = if sync > 0 {
            (
                Verdict::Pass,
                format!("promised {claim}; the primary streams synchronously to {state}"),
            )
        } else if standbys.is_empty() {
            (
                Verdict::Unknown,
                format!("promised {claim}, and no standby was streaming to judge it by"),
            )
        } else {
            (
                Verdict::Fail,
                format!(
                    "promised {claim}, but no standby is synchronous: {state}; a commit is acknowledged before any standby has it"
                ),
            )
        };
        CheckResult::new(self.name(), verdict, summary, figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hadrill_model::{FaultRecord, OpRecord, Role};
    use hadrill_model::{MemberFinal, MemberStatus};

    fn at(ms: u64) -> Stamp {
        Stamp(ms * 1_000_000)
    }

    fn op(kind: OpKind, client: &str, key: &str, value: &str, ms: u64, outcome: Outcome) -> Event {
        Event::Op(OpRecord {
            id: ms,
            client: client.into(),
            role: match client {
                "observer" => Role::Observer,
                "verifier" => Role::Verifier,
                c if c.starts_with("sql-") && c != "sql-probe" => Role::User,
                _ => Role::Probe,
            },
            kind,
            key: (!key.is_empty()).then(|| key.into()),
            value: (!value.is_empty()).then(|| value.into()),
            invoke: at(ms),
            complete: at(ms + 2),
            outcome,
            error: None,
            status: None,
            node: None,
            version: None,
        })
    }

    fn insert(key: &str, ms: u64, outcome: Outcome) -> Event {
        op(OpKind::INSERT, "sql-0", key, "", ms, outcome)
    }

    fn role(node: &str, role: &str, ms: u64) -> Event {
        op(OpKind::ROLE, "observer", node, role, ms, Outcome::Ok)
    }

    fn leader(holder: &str, ms: u64) -> Event {
        op(OpKind::LEADER, "observer", "", holder, ms, Outcome::Ok)
    }

    fn probe(node: &str, round: u64, outcome: Outcome) -> Event {
        op(
            OpKind::WRITE_PROBE,
            "member-probe",
            node,
            &round.to_string(),
            round * 100,
            outcome,
        )
    }

    fn partition(a: &str, b: &str, ms: u64) -> Event {
        Event::Fault(FaultRecord::applied(
            1,
            Fault::partition([a], [b]),
            &[a, b],
            at(ms),
            at(ms + 100),
        ))
    }

    fn kill(node: &str, ms: u64) -> Event {
        Event::Fault(FaultRecord::applied(
            1,
            Fault::kill([node]),
            &[node],
            at(ms),
            at(ms + 100),
        ))
    }

    fn keys(k: &[&str]) -> BTreeSet<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn continuity_passes_when_every_acknowledged_key_is_there() {
        let events = vec![
            insert("a", 1, Outcome::Ok),
            insert("b", 2, Outcome::Unknown),
            insert("c", 3, Outcome::Fail),
        ];
        let r = continuity(&events, Some(&keys(&["a", "b"])), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["unknown_that_took_effect"], 1);
    }

    #[test]
    fn continuity_fails_on_a_lost_acknowledged_commit_and_reports_the_rpo() {
        let events = vec![insert("a", 1, Outcome::Ok), insert("b", 2, Outcome::Ok)];
        let r = continuity(&events, Some(&keys(&["a"])), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.figures["rpo_commits"], 1);
        assert_eq!(r.figures["lost_keys"][0], "b");
        // In asynchronous mode the scenario allows some loss.
        let budgets = Budgets {
            max_lost_writes: 1,
            ..Budgets::default()
        };
        assert_eq!(
            continuity(&events, Some(&keys(&["a"])), &budgets).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn continuity_fails_on_keys_nothing_explains_or_refused_inserts_present() {
        let events = vec![insert("a", 1, Outcome::Ok), insert("c", 3, Outcome::Fail)];
        let r = continuity(&events, Some(&keys(&["a", "c"])), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail);
        let r = continuity(&events, Some(&keys(&["a", "zz"])), &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(
            continuity(&events, None, &Budgets::default()).verdict,
            Verdict::Unknown
        );
    }

    #[test]
    fn single_primary_fails_when_two_members_accept_writes_in_one_round() {
        let mut events = Vec::new();
        for round in 0..50 {
            events.push(probe("pg1", round, Outcome::Ok));
            let pg2 = if round == 30 {
                Outcome::Ok
            } else {
                Outcome::Fail
            };
            events.push(probe("pg2", round, pg2));
        }
        let r = single_primary(&events, 10.0);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.summary.contains("t=3.00s"), "{}", r.summary);
        assert_eq!(r.figures["two_primaries"], 1);
    }

    #[test]
    fn single_primary_passes_a_clean_handover_and_needs_two_members() {
        let mut events = Vec::new();
        for round in 0..50 {
            let (a, b) = match round {
                0..20 => (Outcome::Ok, Outcome::Fail),
                20..25 => (Outcome::Unknown, Outcome::Fail),
                _ => (Outcome::Fail, Outcome::Ok),
            };
            events.push(probe("pg1", round, a));
            events.push(probe("pg2", round, b));
        }
        let r = single_primary(&events, 10.0);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        let one: Vec<Event> = events
            .into_iter()
            .filter(|e| matches!(e, Event::Op(o) if o.key.as_deref() == Some("pg1")))
            .collect();
        assert_eq!(single_primary(&one, 10.0).verdict, Verdict::Unknown);
    }

    /// The check's resolution is the longest gap between rounds, not the mean rate: a probe
    /// held up now and then still sees a split brain of a second or more; one that stalled
    /// for longer cannot say there was none.
    #[test]
    fn single_primary_is_unknown_only_when_rounds_were_too_far_apart() {
        let rounds = |skip: &[u64]| {
            let mut events = Vec::new();
            for round in (0..50).filter(|r| !skip.contains(r)) {
                events.push(probe("pg1", round, Outcome::Ok));
                events.push(probe("pg2", round, Outcome::Fail));
            }
            events
        };
        // Only every third round: 3.3 Hz of the 10 asked, gaps of 300 ms.
        let thinned: Vec<u64> = (0..50).filter(|r| r % 3 != 0 && *r != 49).collect();
        let r = single_primary(&rounds(&thinned), 10.0);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert!(r.summary.contains("at most 300 ms apart"), "{}", r.summary);
        // Rounds 20 to 34 missing: a stall of 1.6 s.
        let r = single_primary(&rounds(&(20..35).collect::<Vec<_>>()), 10.0);
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
        assert!(
            r.summary.starts_with("rounds as far as 1600 ms apart"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn single_primary_fails_when_two_members_hold_the_virtual_ip() {
        let mut events = Vec::new();
        for round in 0..50 {
            events.push(probe("node1", round, Outcome::Ok));
            events.push(probe("node2", round, Outcome::Fail));
        }
        events.push(leader("node1", 100));
        events.push(leader("node1,node2", 2_500));
        let r = single_primary(&events, 10.0);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary.contains("node1 and node2 held the virtual IP"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn a_partition_hits_the_primary_only_from_side_a() {
        let base = vec![role("pg1", "primary", 0), role("pg2", "replica", 0)];
        // The standby cut off: no failover is called for, and none must happen.
        let mut quiet = base.clone();
        quiet.push(partition("pg2", "pg1", 1_000));
        assert_eq!(
            failover(&quiet, &[OpKind::INSERT], &Budgets::default()).verdict,
            Verdict::Pass
        );
        let mut rogue = quiet.clone();
        rogue.push(role("pg2", "primary", 4_000));
        assert_eq!(
            failover(&rogue, &[OpKind::INSERT], &Budgets::default()).verdict,
            Verdict::Fail
        );
        // The primary cut off: a promotion is required.
        let mut cut = base;
        cut.push(partition("@primary", "pg2", 1_000));
        assert_eq!(
            failover(&cut, &[OpKind::INSERT], &Budgets::default()).verdict,
            Verdict::Fail
        );
    }

    fn failover_history(promote_ms: Option<u64>) -> Vec<Event> {
        let mut events = vec![
            role("pg1", "primary", 0),
            role("pg2", "replica", 0),
            leader("pg1", 0),
            insert("a", 500, Outcome::Ok),
            kill("pg1", 1_000),
            role("pg1", "unreachable", 1_100),
            insert("b", 2_000, Outcome::Fail),
            leader("none", 11_000),
        ];
        if let Some(ms) = promote_ms {
            events.push(role("pg2", "primary", ms));
            events.push(insert("c", ms + 200, Outcome::Ok));
        }
        events
    }

    #[test]
    fn failover_measures_the_timeline_from_the_fault() {
        let budgets = Budgets {
            max_failover: Some(std::time::Duration::from_secs(15)),
            ..Budgets::default()
        };
        let r = failover(&failover_history(Some(11_500)), &[OpKind::INSERT], &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        let t = &r.figures["failovers"][0];
        assert_eq!(t["leader_key_changed_ms"], 10_000);
        assert_eq!(t["old_primary_demoted_ms"], 100);
        assert_eq!(t["promoted_ms"], 10_500);
        assert_eq!(t["first_write_ms"], 10_702);
        assert_eq!(t["new_primary"], "pg2");
    }

    #[test]
    fn a_poll_answered_after_the_fault_does_not_say_who_was_primary_before_it() {
        // The observer asked pg1 at 999 ms and heard "unreachable" at 1,001 ms, after the kill
        // at 1,000 ms: pg1 was still the primary the kill hit.
        let events: Vec<Event> = failover_history(Some(11_500))
            .into_iter()
            .map(|e| match e {
                Event::Op(o)
                    if o.kind == OpKind::ROLE && o.value.as_deref() == Some("unreachable") =>
                {
                    role("pg1", "unreachable", 999)
                }
                e => e,
            })
            .collect();
        let r = failover(&events, &[OpKind::INSERT], &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["failovers"][0]["new_primary"], "pg2");
    }

    /// A primary cut off from its peers but still taking writes: the first write after the
    /// promotion counts only once the old primary is no longer seen primary, and each write
    /// the deposed primary took after the promotion fails the check.
    #[test]
    fn failover_is_judged_on_the_promoted_member() {
        let member_probe = |node: &str, ms: u64| {
            let mut e = op(
                OpKind::WRITE_PROBE,
                "member-probe",
                node,
                "",
                ms,
                Outcome::Ok,
            );
            if let Event::Op(o) = &mut e {
                o.node = Some(node.into());
            }
            e
        };
        let cut_off = |deposed_writes: bool| {
            let mut events = vec![
                role("pg1", "primary", 0),
                role("pg2", "replica", 0),
                partition("@primary", "pg2", 1_000),
                role("pg2", "primary", 9_000),
                // Both claim to be primary: a write now may have gone to either.
                insert("a", 9_500, Outcome::Ok),
                role("pg1", "replica", 12_000),
                insert("b", 12_500, Outcome::Ok),
            ];
            if deposed_writes {
                events.push(member_probe("pg1", 10_000));
            }
            events
        };
        let r = failover(&cut_off(false), &[OpKind::INSERT], &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["failovers"][0]["first_write_ms"], 11_502);
        // Its status API still says primary, but its direct write probes are refused: the
        // writes went to the new one.
        let mut refusing = cut_off(false);
        let mut refused = member_probe("pg1", 9_200);
        if let Event::Op(o) = &mut refused {
            o.outcome = Outcome::Fail;
        }
        refusing.push(refused);
        let r = failover(&refusing, &[OpKind::INSERT], &Budgets::default());
        assert_eq!(r.figures["failovers"][0]["first_write_ms"], 8_502);
        let r = failover(&cut_off(true), &[OpKind::INSERT], &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
        assert!(
            r.summary
                .contains("the deposed primary pg1 took 1 writes after pg2 was promoted"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn failover_fails_without_promotion_or_over_budget() {
        let budgets = Budgets {
            max_failover: Some(std::time::Duration::from_secs(5)),
            ..Budgets::default()
        };
        assert_eq!(
            failover(&failover_history(None), &[OpKind::INSERT], &budgets).verdict,
            Verdict::Fail
        );
        let r = failover(&failover_history(Some(11_500)), &[OpKind::INSERT], &budgets);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.summary.contains("budget 5000 ms"), "{}", r.summary);
    }

    #[test]
    fn failover_fails_when_a_standby_fault_promotes_someone() {
        let events = vec![
            role("pg1", "primary", 0),
            role("pg2", "replica", 0),
            kill("pg2", 1_000),
            role("pg3", "primary", 2_000),
        ];
        let r = failover(&events, &[OpKind::INSERT], &Budgets::default());
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary);
    }

    fn member(name: &str, role: &str, timeline: i64, wal: i64, digest: &str) -> MemberFinal {
        MemberFinal {
            name: name.into(),
            running: true,
            left_down: false,
            status: Some(MemberStatus {
                role: role.into(),
                state: "running".into(),
                timeline: Some(timeline),
                wal_position: Some(wal),
                replication_state: None,
                vip: None,
            }),
            keys: Some(10),
            digest: Some(digest.into()),
            rewind_lines: vec![],
        }
    }

    fn cluster(members: Vec<MemberFinal>) -> ClusterFinal {
        ClusterFinal {
            members,
            converged_after_ms: Some(10),
        }
    }

    #[test]
    fn replicas_pass_only_in_sync_on_the_same_timeline_with_the_same_rows() {
        let ok = cluster(vec![
            member("pg1", "replica", 2, 100, "d"),
            member("pg2", "primary", 2, 100, "d"),
        ]);
        assert_eq!(replicas(&ok).unwrap().verdict, Verdict::Pass);
        for bad in [
            member("pg1", "replica", 1, 100, "d"),
            member("pg1", "replica", 2, 90, "d"),
            member("pg1", "replica", 2, 100, "other"),
            member("pg1", "primary", 2, 100, "d"),
        ] {
            let c = cluster(vec![bad, member("pg2", "primary", 2, 100, "d")]);
            assert_eq!(replicas(&c).unwrap().verdict, Verdict::Fail);
        }
    }

    #[test]
    fn replicas_do_not_apply_when_the_script_left_the_others_down() {
        let mut down = member("pg1", "replica", 1, 0, "");
        down.running = false;
        down.left_down = true;
        down.status = None;
        let c = cluster(vec![down.clone(), member("pg2", "primary", 2, 100, "d")]);
        assert!(replicas(&c).is_none());
        // A member that should be up but is not answering fails.
        down.left_down = false;
        let c = cluster(vec![down, member("pg2", "primary", 2, 100, "d")]);
        assert_eq!(replicas(&c).unwrap().verdict, Verdict::Fail);
    }

    fn replication(claim: &str, state: &str) -> Option<CheckResult> {
        let events = [op(
            OpKind::REPLICATION,
            "replication",
            claim,
            state,
            100,
            Outcome::Ok,
        )];
        let budgets = Budgets::default();
        let finals = BTreeMap::new();
        let evidence = Evidence {
            events: &events,
            budgets: &budgets,
            finals: &finals,
        };
        ReplicationClaim
            .applies(&evidence)
            .then(|| ReplicationClaim.judge(&evidence))
    }

    #[test]
    fn a_promise_of_synchronous_replication_fails_on_an_asynchronous_standby() {
        let ok = replication("synchronous", "pg2 streaming sync").unwrap();
        assert_eq!(ok.verdict, Verdict::Pass, "{}", ok.summary);
        let bad = replication("synchronous", "pg2 streaming async").unwrap();
        assert_eq!(bad.verdict, Verdict::Fail, "{}", bad.summary);
        assert!(
            bad.summary.contains("pg2 streaming async"),
            "{}",
            bad.summary
        );
        let none = replication("synchronous", "none streaming").unwrap();
        assert_eq!(none.verdict, Verdict::Unknown, "{}", none.summary);
        // An asynchronous tier promises nothing a standby could break: nothing to judge.
        assert!(replication("asynchronous", "pg2 streaming async").is_none());
    }
}
