//! Agents of a user's own protocol (`hadrill_examples::agents`), judged by hadrill's
//! reconnection check: the store they hold connections to is restarted; agents that dial again
//! pass within the budget, agents that never do are caught.

mod common;

use std::time::Duration;

use common::here;
use hadrill::{Budgets, Drill, Fault, Results, Step, Verdict};
use hadrill_examples::agents::PingAgents;

const AGENTS: usize = 50;

async fn restart_under_agents(name: &str, reconnects: bool) -> Results {
    let topology = here().join("topologies/kv.toml");
    let mut drill = Drill::new(name, topology.to_str().unwrap())
        .describe("restart the store the agents hold connections to")
        .workload(PingAgents {
            node: "kv",
            port: 6379,
            agents: AGENTS,
            reconnects,
        })
        .warmup(Duration::from_secs(2))
        .step(Step::at(Duration::ZERO).fault(Fault::restart(["kv"])))
        .settle(Duration::from_secs(5))
        .budgets(Budgets {
            max_reconnect: Some(Duration::from_secs(5)),
            ..Budgets::default()
        });
    if !reconnects {
        drill = drill.expect_fail("reconnection");
    }
    common::run(drill).await.0
}

fn reconnection(r: &Results) -> &hadrill::CheckResult {
    r.checks
        .iter()
        .find(|c| c.check == "reconnection")
        .expect("agents of a user's own workload are judged by the reconnection check")
}

#[tokio::test]
async fn agents_of_a_users_own_protocol_reconnect_within_budget() {
    let r = restart_under_agents("example-agents-restart", true).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    let check = reconnection(&r);
    let window = &check.figures["windows"][0];
    assert_eq!(window["dropped"], AGENTS, "{}", check.summary);
    assert_eq!(window["reconnected"], AGENTS, "{}", check.summary);
}

/// The negative control: agents that never dial again after the restart. The check must fail
/// (the drill expects it to), naming them.
#[tokio::test]
async fn agents_that_never_dial_again_are_caught() {
    let r = restart_under_agents("example-agents-no-retry", false).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    let check = reconnection(&r);
    assert_eq!(check.verdict, Verdict::Fail, "{}", check.summary);
    assert_eq!(check.figures["windows"][0]["never_reconnected"], AGENTS);
    assert!(
        check.summary.contains("never reconnected"),
        "{}",
        check.summary
    );
}
