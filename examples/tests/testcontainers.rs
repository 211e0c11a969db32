//! A plain testcontainers test gains hadrill's faults: two containers of hadrill's offline
//! base image, started by testcontainers (never pulled: the image is in the engine), cut
//! apart by a hadrill partition, healed, and one of them killed, each fault recorded.

use std::path::Path;
use std::time::Duration;

use hadrill::images::{ImageBuilder, ImageRef};
use hadrill::{Fault, Outcome, Run, RunOptions};
use testcontainers::core::{ExecCommand, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// Whether `client` fetches the server's page within 2 s.
async fn reaches(client: &ContainerAsync<GenericImage>, url: &str) -> bool {
    let mut exec = client
        .exec(ExecCommand::new([
            "curl",
            "-fsS",
            "-m",
            "2",
            "-o",
            "/dev/null",
            url,
        ]))
        .await
        .expect("exec curl");
    // Drain the output so the exit code is known.
    let _ = exec.stdout_to_vec().await;
    exec.exit_code().await.expect("exit code") == Some(0)
}

#[tokio::test]
async fn a_testcontainers_pair_is_partitioned_healed_and_killed_by_hadrill() {
    let hadrill = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docker = hadrill::docker::connect().await.expect("Docker");
    let base = ImageBuilder::new(docker, &hadrill)
        .ensure(&ImageRef::Base)
        .await
        .expect("hadrill's base image, built offline if missing");
    let (name, tag) = base.name_and_tag();
    let network = format!("hadrill-tc-{}", std::process::id());
    let server = GenericImage::new(name, tag)
        .with_wait_for(WaitFor::Nothing)
        .with_cmd(["python3", "-m", "http.server", "8000"])
        .with_network(&network)
        .start()
        .await
        .expect("server starts");
    // The client holds the partition rules: it needs NET_ADMIN, as a topology node would.
    let client = GenericImage::new(name, tag)
        .with_wait_for(WaitFor::Nothing)
        .with_cmd(["sleep", "300"])
        .with_network(&network)
        .with_cap_add("NET_ADMIN")
        .start()
        .await
        .expect("client starts");

    let options = RunOptions::new(&hadrill).with_signal_handler();
    let mut run = Run::attach(
        "testcontainers-pair",
        &[("client", client.id()), ("server", server.id())],
        &options,
    )
    .await
    .expect("attach");
    let ip = run.node("server").unwrap().ips()[0];
    let url = format!("http://{ip}:8000/");
    let mut up = false;
    for _ in 0..50 {
        if reaches(&client, &url).await {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server never answered");

    let cut = run
        .inject(Fault::partition(["client"], ["server"]))
        .await
        .expect("partition");
    assert_eq!(cut.outcome, Outcome::Ok, "{:?}", cut.error);
    assert!(
        !reaches(&client, &url).await,
        "the partition let traffic through"
    );
    run.inject(Fault::Heal).await.expect("heal");
    assert!(
        reaches(&client, &url).await,
        "healing did not restore traffic"
    );

    let killed = run.node("server").unwrap().kill().await.expect("kill");
    assert_eq!(killed.outcome, Outcome::Ok, "{:?}", killed.error);
    assert!(
        !server.is_running().await.unwrap(),
        "testcontainers still sees it running"
    );

    let recorded: Vec<String> = hadrill::model::faults(&run.history().events())
        .iter()
        .map(|f| f.fault.name().to_string())
        .collect();
    assert_eq!(recorded, ["partition", "heal", "kill"]);
    // The containers stay testcontainers': teardown leaves them, and they go when dropped.
    run.teardown().await.expect("teardown");
    assert!(
        client.is_running().await.unwrap(),
        "teardown removed a container it does not own"
    );
}
