//! Without a reachable Docker engine a run fails at once with a message saying what is missing
//! and what to do (it does not hang, panic or pass).

use std::path::Path;

use hadrill::{Run, RunOptions, Topology};

#[tokio::test]
async fn an_unreachable_engine_is_named_with_what_to_do() {
    // SAFETY: this binary has this one test; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("DOCKER_HOST", "unix:///nonexistent/docker.sock") };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let topology = Topology::load(root, "smoke").unwrap();
    let err = match Run::start(topology, &RunOptions::new(root)).await {
        Ok(_) => panic!("a run started without a Docker engine"),
        Err(e) => e,
    };
    let msg = format!("{:?}", miette::Report::new(err));
    assert!(
        msg.contains("cannot reach the Docker engine (unix:///nonexistent/docker.sock)"),
        "{msg}"
    );
    assert!(msg.contains("start a Docker engine"), "{msg}");
}
