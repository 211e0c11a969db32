//! Malformed topology files: each must give an error naming the file, the line and the field.
//! (No Docker needed.)

mod common;

use std::path::{Path, PathBuf};

use hadrill::topology::{Topology, TopologyError};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load_bad(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad")
        .join(file);
    match Topology::load(&root(), path.to_str().unwrap()) {
        Ok(_) => panic!("{file} was accepted"),
        Err(e @ TopologyError::Invalid(_)) => e.to_string(),
        Err(other) => panic!("{file}: expected a validation error, got {other}"),
    }
}

/// `(file, line, what the message must say)`.
const CASES: &[(&str, usize, &[&str])] = &[
    (
        "unknown-field.toml",
        5,
        &["unknown field `imgae`", "expected one of"],
    ),
    ("missing-image.toml", 4, &["missing field `image`"]),
    (
        "dangling-depends.toml",
        3,
        &["nodes.lb.depends_on", "unknown node `db`"],
    ),
    ("duplicate-node.toml", 7, &["duplicate key"]),
    (
        "cycle.toml",
        3,
        &["depends_on", "dependency cycle a -> b -> c -> a"],
    ),
    (
        "bad-duration.toml",
        3,
        &["invalid duration `5 parsecs`", "500ms"],
    ),
    (
        "unknown-image.toml",
        2,
        &["nodes.web1.image", "unknown image `postgres:15`"],
    ),
    (
        "missing-config.toml",
        3,
        &["nodes.web1.config", "`nowhere/app.conf` does not exist"],
    ),
    (
        "unknown-clock.toml",
        5,
        &["nodes.web1.clock", "unknown clock `ntp`"],
    ),
    (
        "in-flight-empty.toml",
        5,
        &["nodes.worker.in_flight", "the command must not be empty"],
    ),
    (
        "unknown-replication.toml",
        2,
        &["replication", "synchronous", "asynchronous"],
    ),
    ("zero-weight.toml", 2, &["weight: must be at least 1"]),
    (
        "tmpfs-relative.toml",
        5,
        &[
            "nodes.web1.tmpfs",
            "`data` = `64m` is not an absolute path and a size",
        ],
    ),
    (
        "unknown-network.toml",
        5,
        &["nodes.web1.networks", "unknown network `back`"],
    ),
    (
        "bad-node-name.toml",
        1,
        &["node name `Web_1` is not allowed"],
    ),
    (
        "unknown-group-member.toml",
        2,
        &["groups.app", "unknown node `app3`"],
    ),
    (
        "undeclared-setting.toml",
        1,
        &["nodes.web1.env.MODE", "`${setting:nope}`", "does not set"],
    ),
    (
        "extends-self.toml",
        1,
        &["extends: cycle extends-self.toml → extends-self.toml"],
    ),
    (
        "exclude-unknown.toml",
        2,
        &["exclude: no inherited node `nope`"],
    ),
    (
        "depends-on-late-node.toml",
        1,
        &["nodes.lb.depends_on", "`late` has autostart = false"],
    ),
    (
        "exclude-needed.toml",
        1,
        &["nodes.lb.depends_on", "`web1` is not in this topology"],
    ),
    (
        "recipe-bad-requirement.toml",
        2,
        &[
            "images.shop.pypi",
            "`--index-url=http://elsewhere` is not a requirement",
        ],
    ),
    (
        "recipe-bad-debian.toml",
        2,
        &[
            "images.shop.debian",
            "`Python3` is not a Debian package name",
        ],
    ),
    (
        "recipe-missing-file.toml",
        2,
        &["images.shop.files", "`nowhere/app.py` does not exist"],
    ),
    (
        "recipe-named-base.toml",
        1,
        &["images: `base` is the name of an image hadrill builds"],
    ),
    (
        "recipe-unknown-image.toml",
        5,
        &["nodes.web1.image", "unknown image `shpo`", "[images]: shop"],
    ),
    (
        "host-bad-address.toml",
        3,
        &["hosts.app1.address", "IP address"],
    ),
    (
        "host-missing-identity.toml",
        3,
        &["hosts.app1.ssh.identity", "does not exist"],
    ),
    (
        "host-service-incomplete.toml",
        4,
        &["hosts.app1.service", "no `kill`, `status` command"],
    ),
    (
        "host-bad-entry.toml",
        5,
        &["hosts.lb.entry", "not a port and an address"],
    ),
    (
        "hosts-and-nodes.toml",
        1,
        &["either containers", "not both"],
    ),
];

#[test]
fn every_malformed_file_is_rejected_with_file_line_and_field() {
    let mut failures = Vec::new();
    for (file, line, needles) in CASES {
        failures.extend(common::missing_from(&load_bad(file), file, line, needles));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rendered_error_shows_the_offending_source_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/bad-duration.toml");
    let err = Topology::load(&root(), path.to_str().unwrap()).unwrap_err();
    let rendered = hadrill::scenario::describe(&err);
    assert!(
        rendered.contains("startup_timeout = \"5 parsecs\""),
        "{rendered}"
    );
}

#[test]
fn unknown_topology_lists_the_available_ones() {
    let err = Topology::load(&root(), "no-such-topology").unwrap_err();
    let TopologyError::NotFound { available, .. } = &err else {
        panic!("expected NotFound, got {err}");
    };
    assert!(available.contains("smoke"), "{available}");
}

#[test]
fn smoke_topology_parses_with_groups_and_start_order() {
    let t = Topology::load(&root(), "smoke").unwrap();
    assert_eq!(t.resolve("backends").unwrap(), ["web1", "web2"]);
    assert_eq!(t.start_waves(), vec![vec!["web1", "web2"], vec!["lb"]]);
    let lb = t.node("lb").unwrap();
    assert_eq!(lb.networks, ["front", "back"]);
    assert_eq!(lb.ports, [8080, 8404]);
    assert!(t.node("web1").unwrap().has_capability("NET_ADMIN"));
    assert!(!lb.has_capability("NET_ADMIN"));
}

#[test]
fn a_topology_extends_another_replacing_only_what_it_declares() {
    let base = Topology::load(&root(), "web-ha").unwrap();
    let t = Topology::load(&root(), "web-ha-nginx").unwrap();
    assert_eq!(t.node("lb").unwrap().ports, [80, 443]);
    assert_eq!(base.node("lb").unwrap().ports, [80, 8404]);
    assert_eq!(t.nodes.len(), base.nodes.len());
    assert_eq!(t.secrets, base.secrets);
    assert_eq!(t.groups, base.groups);
    assert_eq!(t.networks, base.networks);
    assert!(t.node("app1").unwrap().once == base.node("app1").unwrap().once);
    assert!(t.node("init").unwrap().once);
}

#[test]
fn settings_are_inherited_and_overridden() {
    let sync = Topology::load(&root(), "db-ha").unwrap();
    let asynchronous = Topology::load(&root(), "db-ha-async").unwrap();
    assert_eq!(sync.settings["synchronous_mode"], "true");
    assert_eq!(asynchronous.settings["synchronous_mode"], "false");
    assert_eq!(asynchronous.settings["ttl"], sync.settings["ttl"]);
    let defaults = Topology::load(&root(), "db-ha-patroni-defaults").unwrap();
    assert_eq!(
        (
            &defaults.settings["ttl"][..],
            &defaults.settings["loop_wait"][..]
        ),
        ("30", "10")
    );
}

#[test]
fn a_topology_merges_several_and_excludes_nodes() {
    let t = Topology::load(&root(), "full").unwrap();
    assert!(t.node("dblb").is_none(), "excluded");
    assert_eq!(t.node("db").unwrap().role, "dblb");
    assert_eq!(t.node("db").unwrap().depends_on, ["pg1", "pg2"]);
    for n in ["app1", "worker2", "s3", "etcd3", "pg2"] {
        assert!(t.node(n).is_some(), "{n} inherited");
    }
    assert_eq!(t.networks, ["front", "back", "main"]);
    assert_eq!(t.resolve("postgres").unwrap(), ["pg1", "pg2"]);
    assert!(t.secrets.contains(&"REPL_PASSWORD".to_string()));
    assert!(t.secrets.contains(&"SECRET_KEY".to_string()));
    assert_eq!(t.settings["synchronous_mode"], "true");
}

#[test]
fn a_node_can_wait_for_a_start_step() {
    let t = Topology::load(&root(), "cluster").unwrap();
    assert!(!t.node("cluster-worker3").unwrap().autostart);
    assert!(t.node("cluster-worker1").unwrap().autostart);
    assert_eq!(
        t.resolve("cluster-workers").unwrap(),
        ["cluster-worker1", "cluster-worker2", "cluster-worker3"]
    );
}

#[test]
fn a_topology_outside_the_project_reads_config_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config/mine")).unwrap();
    std::fs::write(dir.path().join("config/mine/app.conf"), "x = 1\n").unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(
        &file,
        format!(
            r#"extends = "{}"
[nodes.extra]
role = "app"
image = "base"
command = ["sleep", "infinity"]
config = {{ "/etc/app.conf" = "mine/app.conf" }}
"#,
            root().join("topologies/smoke.toml").display()
        ),
    )
    .unwrap();
    let t = Topology::load(&root(), file.to_str().unwrap()).unwrap();
    let extra = &t.node("extra").unwrap().config[0];
    assert_eq!(extra.source, dir.path().join("config/mine/app.conf"));
    // The inherited nodes keep their files, relative to the parent's directory.
    let web1 = &t.node("web1").unwrap().config[0];
    assert_eq!(
        web1.source,
        root().join("topologies/config/smoke/nginx.conf")
    );

    // A missing file names the directory it was looked for in.
    std::fs::remove_file(dir.path().join("config/mine/app.conf")).unwrap();
    let err = format!(
        "{:?}",
        miette::Report::new(Topology::load(&root(), file.to_str().unwrap()).unwrap_err())
    );
    assert!(
        err.contains(&dir.path().join("config").display().to_string()),
        "{err}"
    );
}
