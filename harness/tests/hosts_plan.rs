//! A topology of existing hosts, and what each fault would run on them (`hadrill run --plan`,
//! and the preflight that checks it): no host is reached, no Docker needed.

use std::path::Path;

use hadrill::faults::plan;
use hadrill::model::{Direction, Effect, Fault};
use hadrill::topology::Topology;

fn pair() -> Topology {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/pair.toml");
    Topology::load(root, path.to_str().unwrap()).unwrap()
}

fn lines(fault: &Fault) -> Vec<String> {
    plan(fault, &pair())
        .unwrap()
        .into_iter()
        .flat_map(|p| {
            let command = format!(
                "{} {}{}",
                p.node,
                if p.root { "sudo " } else { "" },
                p.argv.join(" ")
            );
            let input = p.input.iter().flat_map(|i| i.lines());
            std::iter::once(command)
                .chain(input.map(|l| format!("  | {l}")))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_hosts_topology_reads_its_ssh_targets_services_and_entry_points() {
    let t = pair();
    assert!(t.is_hosts());
    assert!(t.images().is_empty(), "hosts need no image");
    let app1 = t.nodes["app1"].host.as_deref().unwrap();
    assert_eq!(app1.addresses.len(), 2);
    assert_eq!(app1.ssh.port, 2201);
    assert!(app1.ssh.identity.ends_with("keys/id"));
    assert_eq!(app1.entry[&8080].to_string(), "127.0.0.1:18080");
    assert_eq!(
        app1.service.kill,
        [["systemctl", "kill", "--signal=SIGKILL", "myapp-web"]]
    );
    assert_eq!(t.nodes["app1"].logs, ["/var/log/myapp/web.log"]);
    // The SSH host defaults to the first address, the port to 22.
    let app2 = t.nodes["app2"].host.as_deref().unwrap();
    assert_eq!((app2.ssh.host.as_str(), app2.ssh.port), ("10.0.0.12", 22));
    // A preset's command given explicitly replaces the preset's.
    let db = t.nodes["db"].host.as_deref().unwrap();
    assert_eq!(db.service.kill[1], ["pkill", "-KILL", "-u", "postgres"]);
    assert_eq!(db.service.stop, [["sv", "-w", "30", "down", "postgresql"]]);
}

#[test]
fn a_partition_plans_rules_on_one_side_against_every_address_of_the_other_and_its_undo() {
    let cut = lines(&Fault::Partition {
        a: vec!["db".into()],
        b: vec!["app".into()],
        direction: Direction::Both,
        effect: Effect::Drop,
    });
    // Rules on db only, for each of app1's two addresses and app2's one, in and out: after a
    // look at what the firewall holds, one iptables-restore applies hadrill's chains and jumps
    // (as on a firewall lacking them) and every rule at once.
    assert!(
        cut.iter()
            .all(|l| l.starts_with("db ") || l.starts_with("  | ")),
        "{cut:#?}"
    );
    assert_eq!(cut[0], "db sudo iptables -w -S");
    assert_eq!(cut[1], "db sudo iptables-restore -w --noflush");
    let input: Vec<&str> = cut[2..]
        .iter()
        .map_while(|l| l.strip_prefix("  | "))
        .collect();
    let mut expected: Vec<String> = [
        "*filter",
        ":HADRILL-IN - [0:0]",
        "-I INPUT 1 -j HADRILL-IN",
        ":HADRILL-OUT - [0:0]",
        "-I OUTPUT 1 -j HADRILL-OUT",
    ]
    .map(String::from)
    .to_vec();
    for ip in ["10.0.0.11", "10.1.0.11", "10.0.0.12"] {
        expected.push(format!("-A HADRILL-IN -s {ip} -j DROP"));
        expected.push(format!("-A HADRILL-OUT -d {ip} -j DROP"));
    }
    expected.push("COMMIT".into());
    assert_eq!(input, expected, "{cut:#?}");
    // Its undo removes the chains, jumps first.
    assert_eq!(
        cut[2 + input.len()],
        "db sudo iptables -w -D INPUT -j HADRILL-IN"
    );
    assert!(cut.contains(&"db sudo iptables -w -X HADRILL-OUT".to_string()));
}

#[test]
fn a_kill_plans_the_services_own_commands_its_check_and_its_undo() {
    assert_eq!(
        lines(&Fault::kill(["app2"])),
        [
            "app2 sudo pkill -KILL -f /opt/app/bin/server",
            "app2 sudo /opt/app/bin/ctl status",
            "app2 sudo /opt/app/bin/ctl start",
        ]
    );
    // A selector stands for every host it could pick.
    let any = plan(&Fault::kill(["@last-served"]), &pair()).unwrap();
    let hosts: std::collections::BTreeSet<&str> = any.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(
        hosts.into_iter().collect::<Vec<_>>(),
        ["app1", "app2", "db"]
    );
    assert!(
        any.iter()
            .all(|p| p.why.contains("if @last-served picks it"))
    );
}

#[test]
fn a_fault_hosts_cannot_take_is_refused_with_its_targets() {
    let e = plan(
        &Fault::LimitMemory {
            targets: vec!["db".into()],
            headroom: hadrill::model::ByteSize { bytes: 64 << 20 },
        },
        &pair(),
    )
    .unwrap_err();
    assert!(
        e.contains("`limit-memory` of db is not built for existing hosts"),
        "{e}"
    );
}

#[test]
fn a_rotation_runs_the_products_own_command_fed_the_secret_and_its_undo_restarts() {
    let rotate = lines(&Fault::RotateSecret {
        secret: "SESSION_KEY".into(),
        targets: vec!["app1".into()],
    });
    assert_eq!(
        rotate,
        [
            "app1 sudo /opt/app/bin/ctl set-secret SESSION_KEY",
            "  | <a new value of SESSION_KEY>",
            "app1 sudo /opt/app/bin/ctl set-secret SESSION_KEY",
            "  | <the install's SESSION_KEY, from its secrets_file>",
            "app1 sudo systemctl stop myapp-web",
            "app1 sudo systemctl start myapp-web",
        ]
    );
    // A host whose entry gives no such command is refused before anything runs.
    let e = plan(
        &Fault::RotateSecret {
            secret: "SESSION_KEY".into(),
            targets: vec!["app".into()],
        },
        &pair(),
    )
    .unwrap_err();
    assert!(
        e.contains(
            "`rotate-secret` of app2: its entry gives no `rotate_secret = { SESSION_KEY = [...] }`"
        ),
        "{e}"
    );
}

#[test]
fn a_full_disk_plans_a_filler_of_hadrills_name_and_its_removal() {
    assert_eq!(
        lines(&Fault::FillDisk {
            targets: vec!["db".into()],
            path: "/var/lib/postgresql/".into(),
        }),
        [
            "db df -P -k /var/lib/postgresql/",
            "db sudo fallocate -l <free bytes> /var/lib/postgresql/.hadrill-fill",
            "db sudo dd if=/dev/zero of=/var/lib/postgresql/.hadrill-fill bs=64k oflag=append conv=notrunc",
            "db sudo rm -f /var/lib/postgresql/.hadrill-fill",
        ]
    );
}

#[test]
fn a_skew_writes_the_offset_libfaketime_reads_on_a_host_that_says_so_and_its_undo_removes_it() {
    let skew = |target: &str| Fault::SkewClock {
        targets: vec![target.into()],
        offset: hadrill::model::ClockOffset { millis: 3_600_000 },
        drift: None,
    };
    assert_eq!(
        lines(&skew("db")),
        [
            "db sudo tee /tmp/hadrill-clock",
            "  | +3600",
            "db sudo rm -f /tmp/hadrill-clock",
        ]
    );
    // A host whose service does not load libfaketime: its own clock is never set instead.
    let e = plan(&skew("app2"), &pair()).unwrap_err();
    assert!(e.contains("does not say `clock = \"faketime\"`"), "{e}");
}

#[test]
fn a_throttle_plans_a_token_bucket_on_each_interface_and_its_removal() {
    let rate = hadrill::model::Bandwidth::try_from("8mbit".to_string()).unwrap();
    assert_eq!(
        lines(&Fault::throttle(["app2"], rate)),
        [
            "app2 find /sys/class/net -mindepth 1 -maxdepth 1 -type l -printf %f\\n",
            "app2 sudo tc qdisc replace dev <dev> root tbf rate 8000000bit burst 20000 latency 200ms",
            "app2 sudo tc qdisc del dev <dev> root",
        ]
    );
}

#[test]
fn a_delay_plans_the_proxy_as_the_ssh_user_and_only_the_redirect_and_its_undo_as_root() {
    let delay = plan(
        &Fault::Delay {
            targets: vec!["app1".into()],
            port: 8080,
            latency: std::time::Duration::from_millis(100),
            jitter: std::time::Duration::ZERO,
        },
        &pair(),
    )
    .unwrap();
    let root: Vec<String> = delay
        .iter()
        .filter(|p| p.root)
        .map(|p| p.argv.join(" "))
        .collect();
    assert_eq!(
        root,
        [
            "iptables -w -t nat -S",
            "iptables-restore -w --noflush",
            "iptables -w -t nat -D PREROUTING -j HADRILL-DELAY",
            "iptables -w -t nat -F HADRILL-DELAY",
            "iptables -w -t nat -X HADRILL-DELAY",
            "pkill -f ^python3 /tmp/hadrill-delay.py",
        ]
    );
    let redirect = delay
        .iter()
        .find_map(|p| p.input.as_deref().filter(|i| i.starts_with("*nat")));
    assert_eq!(
        redirect,
        Some(
            "*nat\n:HADRILL-DELAY - [0:0]\n-A PREROUTING -j HADRILL-DELAY\n\
             -A HADRILL-DELAY -p tcp --dport 8080 -j REDIRECT --to-ports 38080\nCOMMIT\n"
        )
    );
    let proxy = delay.iter().find(|p| p.argv[0] == "setsid").unwrap();
    assert!(!proxy.root);
    assert_eq!(proxy.argv[2..4], ["python3", "/tmp/hadrill-delay.py"]);
}
