//! The reference product's licence (SYSTEMS.md §1: "a licence file is uploaded to one VM and
//! synchronised from there"): which runs drill it, what each app server holds after the run,
//! and the `license` check. A run drills it when its script runs the product's `license`
//! command (`web … license install|synchronize|status`) in an `exec` step; the plan, the
//! check's `applies` and the final read all ask `drills`, so they agree.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::finals::{FinalState, Held, ProductRead, Seen, WEB_READ};
use crate::checks::judged;
use crate::workload::{Context, Endpoint};
use hadrill_model::{Check, CheckResult, Event, Evidence, Fault, Outcome, Verdict, faults};

/// The product's binaries that have the `license` command (`web-next` is release 2's `web`).
const PRODUCT: &[&str] = &["web", "web-next"];

/// How long an app server may take to say which licence it holds.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The `license` action an operator command runs (`install`, `synchronize`, `status`; empty
/// if none is given), when it runs the product's `license` command at all.
pub fn action(fault: &Fault) -> Option<&str> {
    let Fault::Exec { command, .. } = fault else {
        return None;
    };
    let program = command
        .iter()
        .position(|a| PRODUCT.contains(&a.rsplit('/').next().unwrap_or(a)))?;
    let rest = &command[program + 1..];
    let at = rest.iter().position(|a| a == "license")?;
    Some(rest.get(at + 1).map_or("", String::as_str))
}

/// Whether any of `faults` runs the product's `license` command: whether the run drills the
/// licence, so the `license` check runs and the final read asks each app server for it.
pub fn drills<'a>(faults: impl IntoIterator<Item = &'a Fault>) -> bool {
    faults.into_iter().any(|f| action(f).is_some())
}

/// Asks every app server (by role, directly on `app_port`) which licence it holds.
pub(super) async fn read(ctx: &Context, f: &ProductRead) -> BTreeMap<String, Seen> {
    let mut seen = BTreeMap::new();
    for node in ctx.nodes().iter().filter(|n| n.spec().role == f.app_role) {
        let found = match node.status().await {
            Err(e) => Seen::Unreachable { why: e.to_string() },
            Ok(s) if !s.running => Seen::Down,
            Ok(_) => ask(node, f.app_port).await,
        };
        seen.insert(node.name().to_string(), found);
    }
    seen
}

async fn ask(node: &crate::node::Node, port: u16) -> Seen {
    let unreachable = |why: String| Seen::Unreachable { why };
    let endpoint = match Endpoint::of(node, port) {
        Ok(e) => e,
        Err(why) => return unreachable(why),
    };
    let http = match endpoint.builder().timeout(READ_TIMEOUT).build() {
        Ok(h) => h,
        Err(e) => return unreachable(e.to_string()),
    };
    let answer = match http.get(format!("{}/license", endpoint.base)).send().await {
        Ok(a) => a,
        Err(e) => return unreachable(e.to_string()),
    };
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    match status.as_u16() {
        200 => serde_json::from_str(&body).map_or_else(
            |e| {
                unreachable(format!(
                    "HTTP 200 with an answer not a licence ({e}): {body}"
                ))
            },
            Seen::Held,
        ),
        404 => Seen::Absent {
            why: serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(body),
        },
        _ => unreachable(format!("HTTP {status}: {body}")),
    }
}

/// The digest in a command's output (`… sha256 <hex> …`): what `license install` installed.
fn digest_in(line: &str) -> Option<&str> {
    let (_, after) = line.split_once("sha256 ")?;
    let hex = after.get(..64)?;
    hex.bytes().all(|b| b.is_ascii_hexdigit()).then_some(hex)
}

/// The first 12 hex digits of a digest, as summaries name it.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// Every running app server holds the licence, the same one (the one installed, when its
/// digest is known), and every licence command the script ran succeeded.
pub fn license(events: &[Event], seen: Result<&BTreeMap<String, Seen>, String>) -> CheckResult {
    let fs = faults(events);
    let commands: Vec<_> = fs
        .iter()
        .filter_map(|f| Some((f, action(&f.fault)?)))
        .collect();
    let installed = commands
        .iter()
        .filter(|(f, act)| *act == "install" && f.outcome == Outcome::Ok)
        .flat_map(|(f, _)| f.notes.iter().filter_map(|n| digest_in(n)))
        .next_back();
    let mut problems: Vec<String> = commands
        .iter()
        .filter(|(f, _)| f.outcome != Outcome::Ok)
        .map(|(f, act)| {
            format!(
                "`license {act}` on {} (step #{}) failed: {}",
                f.nodes.join(","),
                f.id,
                f.error.as_deref().unwrap_or("no reason recorded")
            )
        })
        .collect();
    let mut figures = json!({
        "commands": commands.iter().map(|(f, act)| json!({
            "step": f.id,
            "action": act,
            "node": f.nodes.join(","),
            "outcome": f.outcome,
            "error": f.error,
        })).collect::<Vec<_>>(),
        "installed_sha256": installed,
    });
    let seen = match seen {
        Ok(s) => s,
        Err(why) => {
            return judged(
                "license",
                &problems,
                Verdict::Unknown,
                format!("what the app servers hold could not be read: {why}"),
                figures,
            );
        }
    };
    figures["nodes"] = json!(seen);
    let held: BTreeMap<&str, &Held> = seen
        .iter()
        .filter_map(|(n, s)| match s {
            Seen::Held(h) => Some((n.as_str(), h)),
            _ => None,
        })
        .collect();
    for (node, s) in seen {
        if let Seen::Absent { why } = s {
            problems.push(format!("{node} holds no licence ({why})"));
        }
    }
    match installed {
        Some(sha) => problems.extend(held.iter().filter(|(_, h)| h.sha256 != sha).map(
            |(node, h)| {
                format!(
                    "{node} holds another licence ({} sha256 {}…) than the one installed (sha256 {}…)",
                    h.id,
                    short(&h.sha256),
                    short(sha)
                )
            },
        )),
        None => {
            let digests: BTreeSet<&str> = held.values().map(|h| h.sha256.as_str()).collect();
            if digests.len() > 1 {
                let each: Vec<String> = held
                    .iter()
                    .map(|(node, h)| format!("{node} sha256 {}…", short(&h.sha256)))
                    .collect();
                problems.push(format!(
                    "the app servers hold different licences: {}",
                    each.join(", ")
                ));
            }
        }
    }
    let absent = seen
        .values()
        .filter(|s| matches!(s, Seen::Absent { .. }))
        .count();
    let read = held.len() + absent;
    let unreachable: Vec<String> = seen
        .iter()
        .filter_map(|(n, s)| match s {
            Seen::Unreachable { why } => Some(format!("{n} ({why})")),
            _ => None,
        })
        .collect();
    let down: Vec<&str> = seen
        .iter()
        .filter(|(_, s)| **s == Seen::Down)
        .map(|(n, _)| n.as_str())
        .collect();
    figures["read"] = json!(read);
    figures["held"] = json!(held.len());
    let mut summary = match held.values().next() {
        Some(h) => format!(
            "{} of {} app servers read hold licence {} (sha256 {}…); {} licence commands, {} failed",
            held.len(),
            read,
            h.id,
            short(&h.sha256),
            commands.len(),
            commands
                .iter()
                .filter(|(f, _)| f.outcome != Outcome::Ok)
                .count()
        ),
        None => format!("none of {read} app servers read holds a licence"),
    };
    if !down.is_empty() {
        summary.push_str(&format!("; not running at the end: {}", down.join(", ")));
    }
    let clean = if read < 2 {
        summary.push_str(&format!(
            "; only {read} app servers could be read: too few to show the licence was synchronised"
        ));
        Verdict::Unknown
    } else if !unreachable.is_empty() {
        summary.push_str(&format!("; not read: {}", unreachable.join(", ")));
        Verdict::Unknown
    } else {
        Verdict::Pass
    };
    judged("license", &problems, clean, summary, figures)
}

/// The licence on every app server, in the product's final read (`license`).
pub struct License;

impl Check for License {
    fn name(&self) -> &str {
        "license"
    }

    fn applies(&self, e: &Evidence<'_>) -> bool {
        drills(faults(e.events).iter().map(|f| &f.fault))
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        let state = e.final_read::<FinalState>(WEB_READ);
        license(
            e.events,
            state.as_ref().map(|s| &s.licenses).map_err(Clone::clone),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{fault_on, kill};

    const A: &str = "2c2f5e63b29a16ec9ad1a106521e8851f6ca725495ea42bd7b9b363a9a2ace9c";
    const B: &str = "ffff5e63b29a16ec9ad1a106521e8851f6ca725495ea42bd7b9b363a9a2ace9c";

    /// An `exec` step as a scenario file writes it.
    fn exec(args: &[&str]) -> Fault {
        serde_json::from_value(json!({ "kind": "exec", "node": "app1", "command": args })).unwrap()
    }

    fn license_cmd(action: &str) -> Fault {
        exec(&[
            "web",
            "--config",
            "/etc/hadrill/web.conf",
            "license",
            action,
        ])
    }

    /// `license <action>` on `node` as step `id`, with its output or its failure.
    fn step(id: u64, node: &str, action: &str, ok: bool, note: &str) -> Event {
        let Event::Fault(mut f) = fault_on(node, id, license_cmd(action), id * 1000) else {
            unreachable!()
        };
        if ok {
            f.notes = vec![format!("{node}: {note}")];
        } else {
            f.outcome = Outcome::Fail;
            f.error = Some(note.into());
        }
        Event::Fault(f)
    }

    /// The drill: installed on app1, synchronised, app1 killed, status on app2.
    fn drill() -> Vec<Event> {
        vec![
            step(
                1,
                "app1",
                "install",
                true,
                &format!(
                    "installed licence L-1 for Acme, expires 2099-12-31, sha256 {A} at /var/lib/product/license"
                ),
            ),
            step(
                2,
                "app1",
                "synchronize",
                true,
                "synchronised licence L-1 to app2:8080",
            ),
            fault_on("app1", 3, kill("app1"), 3000),
            step(4, "app2", "status", true, "licence L-1 …"),
        ]
    }

    fn held(sha: &str) -> Seen {
        Seen::Held(Held {
            id: "L-1".into(),
            customer: "Acme".into(),
            expires: "2099-12-31".into(),
            sha256: sha.into(),
        })
    }

    fn nodes(list: &[(&str, Seen)]) -> BTreeMap<String, Seen> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    #[test]
    fn the_product_license_command_is_recognised_and_nothing_else() {
        assert_eq!(action(&license_cmd("install")), Some("install"));
        assert_eq!(
            action(&exec(&[
                "env",
                "X=1",
                "/usr/local/bin/web-next",
                "license",
                "status"
            ])),
            Some("status")
        );
        assert_eq!(action(&exec(&["web", "license"])), Some(""));
        assert_eq!(action(&exec(&["web", "database", "migrate"])), None);
        assert_eq!(action(&exec(&["cat", "license"])), None);
        assert_eq!(action(&kill("app1")), None);
        assert!(!drills(&[
            kill("app1"),
            exec(&["web", "maintenance", "on"])
        ]));
        assert!(drills(&[kill("app1"), license_cmd("synchronize")]));
    }

    #[test]
    fn every_app_server_holding_the_installed_licence_passes() {
        let seen = nodes(&[("app1", held(A)), ("app2", held(A))]);
        let r = license(&drill(), Ok(&seen));
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["installed_sha256"], A);
        assert_eq!(r.figures["nodes"]["app2"]["state"], "held");
        assert_eq!(r.figures["nodes"]["app2"]["sha256"], A);
        assert_eq!(r.figures["commands"].as_array().unwrap().len(), 3);
        assert!(
            r.summary
                .starts_with("2 of 2 app servers read hold licence L-1 (sha256 2c2f5e63b29a…)"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn an_app_server_without_the_licence_fails() {
        let why = "no licence at /var/lib/product/license: upload …";
        let seen = nodes(&[
            ("app1", held(A)),
            ("app2", Seen::Absent { why: why.into() }),
        ]);
        let r = license(&drill(), Ok(&seen));
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary
                .starts_with(&format!("app2 holds no licence ({why})")),
            "{}",
            r.summary
        );
    }

    #[test]
    fn app_servers_holding_different_licences_fail() {
        let seen = nodes(&[("app1", held(A)), ("app2", held(B))]);
        let r = license(&drill(), Ok(&seen));
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary.contains(
                "app2 holds another licence (L-1 sha256 ffff5e63b29a…) than the one installed"
            ),
            "{}",
            r.summary
        );
        // Without the install's output, the servers are held against each other.
        let mut events = drill();
        events.remove(0);
        let r = license(&events, Ok(&seen));
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary
                .contains("the app servers hold different licences: app1 sha256 2c2f5e63b29a…, app2 sha256 ffff5e63b29a…"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn a_failed_licence_command_fails() {
        let mut events = drill();
        events[1] = step(
            2,
            "app1",
            "synchronize",
            false,
            "exit 1: app2:8080 (timed out)",
        );
        let seen = nodes(&[("app1", held(A)), ("app2", held(A))]);
        let r = license(&events, Ok(&seen));
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary
                .starts_with("`license synchronize` on app1 (step #2) failed: exit 1: app2:8080"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn too_few_app_servers_read_is_unknown() {
        let down = nodes(&[("app1", Seen::Down), ("app2", held(A))]);
        let r = license(&drill(), Ok(&down));
        assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
        assert!(
            r.summary.contains("not running at the end: app1"),
            "{}",
            r.summary
        );
        let cut = nodes(&[
            (
                "app1",
                Seen::Unreachable {
                    why: "timed out".into(),
                },
            ),
            ("app2", held(A)),
            ("app3", held(A)),
        ]);
        let r = license(&drill(), Ok(&cut));
        assert_eq!(r.verdict, Verdict::Unknown, "a running server not read");
        assert!(
            r.summary.contains("not read: app1 (timed out)"),
            "{}",
            r.summary
        );
        let r = license(&drill(), Err("the final read of web is missing".into()));
        assert_eq!(r.verdict, Verdict::Unknown);
        // What was seen still fails when it shows a defect.
        let bad = nodes(&[
            ("app1", Seen::Down),
            ("app2", Seen::Absent { why: "none".into() }),
        ]);
        assert_eq!(license(&drill(), Ok(&bad)).verdict, Verdict::Fail);
    }

    #[test]
    fn it_applies_only_to_runs_that_ran_the_licence_command() {
        let (finals, budgets) = (BTreeMap::new(), hadrill_model::Budgets::default());
        let drilled = drill();
        let e = Evidence {
            events: &drilled,
            budgets: &budgets,
            finals: &finals,
        };
        assert!(License.applies(&e));
        let other = vec![fault_on("app1", 1, kill("app1"), 1000)];
        assert!(!License.applies(&Evidence {
            events: &other,
            ..e
        }));
    }
}
