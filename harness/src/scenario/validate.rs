//! A scenario checked against its topology before anything starts: every name it uses (nodes,
//! groups, selectors, ports, secrets, roles, checks), every number's range and each step's
//! shape. An error points at the offending value, names its field (`steps[2].fault.a[0]`) and
//! says what is allowed.
//!
//! The typed spec has no spans, so the file is parsed a second time into a spanned document
//! and each problem is located by its field path.

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{AbortSpec, Condition, NemesisFault, NemesisSpec, Scenario, ScenarioError, Step, Wait};
use crate::faults::When;
use crate::patroni::{LeaderSource, StatusSource};
use crate::reference::agents::AgentsSpec;
use crate::reference::finals::{AGENTS_READ, WEB_READ};
use crate::reference::web::WorkloadSpec;
use crate::topology::{Invalid, Topology, placeholders};
use crate::workload::http::HttpSpec;
use crate::workload::sql::SqlSpec;
use crate::workload::{Pace, Store};
use hadrill_model::{Effect, Fault, SQL_READ, Selector};

/// Longer than any drill, so a typo such as `300h` is caught (and the run's deadlines, an
/// `Instant` plus a duration, cannot overflow).
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Operations per second and probe frequencies: more than one machine's harness drives.
const MAX_RATE: f64 = 10_000.0;
const MAX_HZ: f64 = 1000.0;
const MAX_CLIENTS: u64 = 1000;
const MAX_AGENTS: u64 = 10_000;
/// Uploads are generated in memory.
const MAX_UPLOAD: u64 = 1 << 30;

/// Checks `scenario`, loaded from `text`, against its topology.
pub(super) fn check(scenario: &Scenario, text: &str) -> Result<(), ScenarioError> {
    let doc = DeTable::parse(text).map_err(|e| {
        ScenarioError::Invalid(Invalid::at(
            &scenario.path,
            text,
            e.span().unwrap_or(0..0),
            e.message().to_string(),
            None,
        ))
    })?;
    let v = Validator {
        scenario,
        text,
        doc: Spanned::new(doc.span(), DeValue::Table(doc.into_inner())),
    };
    let spec = &scenario.spec;
    v.duration("warmup", spec.warmup, true)?;
    v.duration("settle", spec.settle, true)?;
    if let Some(web) = scenario.web() {
        v.web(&web)?;
        v.final_read()?;
    }
    if let Some(http) = &spec.http {
        v.http(http)?;
    }
    if let Some(sql) = &spec.sql {
        v.sql(sql)?;
    }
    if let Some(redis) = &spec.redis {
        v.keyed("redis", &redis.name, &redis.node, redis.port, redis.pace())?;
        v.duration("redis.op_timeout", redis.op_timeout, false)?;
        if redis.prefix.is_empty() {
            return Err(v.error(
                "redis.prefix",
                "empty: the workload's keys would not be set apart from the product's".into(),
                Some("give a name such as `hadrill:`".into()),
            ));
        }
    }
    if let Some(s3) = &spec.s3 {
        v.keyed("s3", &s3.name, &s3.node, s3.port, s3.pace())?;
        v.secret("s3.secret_key_secret", &s3.secret_key_secret)?;
        v.duration("s3.op_timeout", s3.op_timeout, false)?;
        if s3.sizes.is_empty() || s3.sizes.iter().any(|s| s.0 > MAX_UPLOAD) {
            return Err(v.error(
                "s3.sizes",
                "each object's size is drawn from these: give at least one".into(),
                Some(format!(
                    "sizes such as [\"4KiB\", \"1MiB\"], each at most {MAX_UPLOAD} bytes"
                )),
            ));
        }
    }
    if let Some(agents) = &spec.agents {
        v.agents(agents)?;
    }
    v.code_workloads()?;
    match (&spec.nemesis, spec.steps.is_empty()) {
        (Some(_), false) => {
            return Err(v.error(
                "steps",
                "a scenario with `[nemesis]` draws its steps from a seed".into(),
                Some("remove `[[steps]]` or `[nemesis]`".into()),
            ));
        }
        (Some(nemesis), true) => v.nemesis(nemesis)?,
        // No fault at all is a steady-state run: load and checks alone.
        (None, _) => {}
    }
    for (i, step) in spec.steps.iter().enumerate() {
        v.step(i, step)?;
    }
    if let Some(abort) = &spec.abort {
        v.abort(abort)?;
    }
    v.expect_fail()
}

struct Validator<'a> {
    scenario: &'a Scenario,
    text: &'a str,
    doc: Spanned<DeValue<'a>>,
}

type Checked = Result<(), ScenarioError>;

/// What a name may be, for the list of what is allowed.
#[derive(Clone, Copy)]
enum Names {
    Nodes,
    NodesAndGroups,
    Targets,
}

impl Validator<'_> {
    fn topology(&self) -> &Topology {
        &self.scenario.topology
    }

    /// An error at `field`'s value. A field the file does not write holds a default that does
    /// not fit the topology: the error points at the nearest enclosing table the file writes,
    /// or at `topology`.
    fn error(&self, field: &str, problem: String, help: Option<String>) -> ScenarioError {
        let (span, written) = self.locate(field);
        let default = if written {
            ""
        } else {
            " (the default: this file does not set it)"
        };
        ScenarioError::Invalid(Invalid::at(
            &self.scenario.path,
            self.text,
            span,
            format!("{field}: {problem}{default}"),
            help,
        ))
    }

    /// The span of the value at `field` (`steps[2].fault.targets[0]`) and whether the file
    /// writes it.
    fn locate(&self, field: &str) -> (Range<usize>, bool) {
        let mut at = &self.doc;
        for segment in field.split('.') {
            let mut parts = segment.split('[');
            let key = parts.next().unwrap_or_default();
            let indices = parts.map(|i| i.trim_end_matches(']').parse::<usize>().ok());
            let mut next = at.get_ref().get(key);
            for i in indices {
                next = next.zip(i).and_then(|(v, i)| v.get_ref().get(i));
            }
            match next {
                Some(v) => at = v,
                None if std::ptr::eq(at, &self.doc) => {
                    return (self.scenario.spec.topology.span(), false);
                }
                None => return (at.span(), false),
            }
        }
        (at.span(), true)
    }

    /// What a name of `kind` may be in this scenario's topology.
    fn allowed(&self, kind: Names) -> String {
        let t = self.topology();
        let list = |names: Vec<&str>| names.join(", ");
        let mut s = format!(
            "nodes of topology `{}`: {}",
            t.name,
            list(t.nodes.keys().map(String::as_str).collect())
        );
        if matches!(kind, Names::NodesAndGroups | Names::Targets) {
            s += &format!(
                "; groups: {}",
                list(t.groups.keys().map(String::as_str).collect())
            );
        }
        if matches!(kind, Names::Targets) {
            s += &format!("; selectors: {}", selectors());
        }
        s
    }

    fn node(&self, field: &str, name: &str) -> Result<Vec<String>, ScenarioError> {
        if self.topology().nodes.contains_key(name) {
            Ok(vec![name.to_string()])
        } else {
            Err(self.error(
                field,
                format!("unknown node `{name}`"),
                Some(self.allowed(Names::Nodes)),
            ))
        }
    }

    /// Each name of a list field a node; an unknown one named at its element, or at the field
    /// where the file wrote a single name rather than a list.
    fn node_list(&self, field: &str, names: &[String]) -> Result<Vec<String>, ScenarioError> {
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let element = format!("{field}[{i}]");
            let at = if self.locate(&element).1 {
                element.as_str()
            } else {
                field
            };
            nodes.extend(self.node(at, name)?);
        }
        Ok(nodes)
    }

    /// The nodes a node or group name stands for.
    fn nodes(&self, field: &str, name: &str, kind: Names) -> Result<Vec<String>, ScenarioError> {
        self.topology().resolve(name).ok_or_else(|| {
            self.error(
                field,
                format!("unknown node or group `{name}`"),
                Some(self.allowed(kind)),
            )
        })
    }

    /// A fault target of step `step`: a node, a group, or a selector this scenario can
    /// satisfy. Returns the nodes known now (none for a selector).
    fn target(&self, field: &str, name: &str, step: usize) -> Result<Vec<String>, ScenarioError> {
        let Some(selector) = name.strip_prefix('@') else {
            return self.nodes(field, name, Names::Targets);
        };
        let spec = &self.scenario.spec;
        let needs = match Selector::parse(selector) {
            None => {
                return Err(self.error(
                    field,
                    format!("unknown selector `{name}`"),
                    Some(format!("selectors: {}", selectors())),
                ));
            }
            Some(Selector::LastServed)
                if self.scenario.web().is_none()
                    && spec.http.as_ref().is_none_or(|h| h.served_by.is_none()) =>
            {
                "a workload whose answers name their server (`[workload]`, or `[http]` with `served_by`): it picks the app server that served the last user request"
            }
            Some(Selector::Primary | Selector::Standby)
                if spec.sql.is_none() && spec.observers.is_empty() =>
            {
                "an observer of the members' roles: the `[sql]` workload's, or a drill's own (`Drill::observer`)"
            }
            Some(Selector::Previous) if !spec.steps[..step].iter().any(|s| s.fault.is_some()) => {
                "an earlier step with a fault: it picks that fault's nodes"
            }
            Some(_) => return Ok(Vec::new()),
        };
        Err(self.error(field, format!("`{name}` needs {needs}"), None))
    }

    /// The port HTTP clients use on `node` for `port` (its TLS port, if it serves TLS).
    fn http_port(&self, node: &str, port: u16) -> u16 {
        self.topology()
            .node(node)
            .map_or(port, |n| n.http_port(port))
    }

    /// Each of `nodes` publishes `port`: the harness reaches nodes only through published
    /// ports.
    fn publishes(&self, field: &str, nodes: &[String], port: u16) -> Checked {
        for name in nodes {
            let Some(node) = self.topology().node(name) else {
                continue;
            };
            if !node.ports.contains(&port) {
                let ports: Vec<String> = node.ports.iter().map(u16::to_string).collect();
                return Err(self.error(
                    field,
                    format!("node `{name}` publishes no port {port}"),
                    Some(format!(
                        "`{name}` publishes: {} (its `ports` in topology `{}`)",
                        if ports.is_empty() {
                            "nothing".to_string()
                        } else {
                            ports.join(", ")
                        },
                        self.topology().name
                    )),
                ));
            }
        }
        Ok(())
    }

    fn secret(&self, field: &str, name: &str) -> Checked {
        if self.topology().secrets.iter().any(|s| s == name) {
            return Ok(());
        }
        Err(self.error(
            field,
            format!("unknown secret `{name}`"),
            Some(format!(
                "secrets of topology `{}`: {}",
                self.topology().name,
                self.topology().secrets.join(", ")
            )),
        ))
    }

    /// A rate or frequency: above 0 and at most `max` per second.
    fn per_second(&self, field: &str, value: f64, max: f64) -> Checked {
        if value > 0.0 && value <= max {
            return Ok(());
        }
        Err(self.error(
            field,
            format!("{value} is out of range: give more than 0 and at most {max} per second"),
            None,
        ))
    }

    fn count(&self, field: &str, value: u64, allowed: RangeInclusive<u64>) -> Checked {
        if allowed.contains(&value) {
            return Ok(());
        }
        let range = if *allowed.end() == u64::MAX {
            format!("at least {}", allowed.start())
        } else {
            format!("from {} to {}", allowed.start(), allowed.end())
        };
        Err(self.error(
            field,
            format!("{value} is out of range: give {range}"),
            None,
        ))
    }

    /// At most `MAX_DURATION`, and above 0 unless `zero` makes sense.
    fn duration(&self, field: &str, value: Duration, zero: bool) -> Checked {
        if value <= MAX_DURATION && (zero || !value.is_zero()) {
            return Ok(());
        }
        let floor = if zero { "" } else { "more than 0 and " };
        Err(self.error(
            field,
            format!(
                "`{}` is out of range: give {floor}at most {}",
                humantime::format_duration(value),
                humantime::format_duration(MAX_DURATION)
            ),
            None,
        ))
    }

    fn path(&self, field: &str, value: &str) -> Checked {
        if value.starts_with('/') {
            return Ok(());
        }
        Err(self.error(
            field,
            format!("`{value}` is not a path: start it with `/`"),
            None,
        ))
    }

    fn web(&self, w: &WorkloadSpec) -> Checked {
        self.count("workload.users", w.users as u64, 1..=MAX_CLIENTS)?;
        self.per_second("workload.rate", w.rate, MAX_RATE)?;
        let [small, large] = w.upload_size;
        if small.0 > large.0 || large.0 > MAX_UPLOAD {
            return Err(self.error(
                "workload.upload_size",
                format!(
                    "[{}, {}] bytes is out of range: give [smallest, largest], the largest at most 1GiB",
                    small.0, large.0
                ),
                None,
            ));
        }
        // The users draw from the weights' sum, a u32.
        let m = w.mix;
        let total = u64::from(m.upload) + u64::from(m.read) + u64::from(m.session);
        if total == 0 || total > u64::from(u32::MAX) {
            return Err(self.error(
                "workload.mix",
                format!(
                    "weights {}, {}, {} are out of range: give relative shares adding up to more than 0 and at most {}",
                    m.upload,
                    m.read,
                    m.session,
                    u32::MAX
                ),
                None,
            ));
        }
        self.per_second("workload.probe_hz", w.probe_hz, MAX_HZ)?;
        self.path("workload.probe_path", &w.probe_path)?;
        if !w.liveness_path.is_empty() {
            self.path("workload.liveness_path", &w.liveness_path)?;
        }
        let entry = self.node("workload.entry", &w.entry)?;
        self.publishes(
            "workload.entry_port",
            &entry,
            self.http_port(&w.entry, w.entry_port),
        )?;
        self.count("workload.max_ops", w.max_ops, 1..=u64::MAX)?;
        self.duration("workload.op_timeout", w.op_timeout, false)
    }

    /// How the web workload's final state is read: only a web workload reads it.
    /// Each code workload's name is its own and names none of the built-in final reads: its
    /// final read is kept under it.
    fn code_workloads(&self) -> Checked {
        let reserved = [WEB_READ, SQL_READ, AGENTS_READ];
        let mut seen = std::collections::BTreeSet::new();
        for (i, w) in self.scenario.spec.code_workloads.iter().enumerate() {
            let problem = if reserved.contains(&w.name.as_str()) {
                format!("`{}` is the name of a built-in workload", w.name)
            } else if !seen.insert(w.name.as_str()) {
                format!("two workloads are named `{}`", w.name)
            } else {
                continue;
            };
            return Err(self.error(
                &format!("code_workloads[{i}].name"),
                problem,
                Some(format!(
                    "give each workload its own name, other than {}",
                    reserved.join(", ")
                )),
            ));
        }
        Ok(())
    }

    fn final_read(&self) -> Checked {
        let f = &self.scenario.spec.final_read;
        let db = self.node("final_read.database_node", &f.database_node)?;
        self.publishes("final_read.database_port", &db, f.database_port)?;
        self.secret("final_read.password_secret", &f.password_secret)?;
        let app: Vec<String> = self
            .topology()
            .nodes
            .values()
            .filter(|n| n.role == f.app_role)
            .map(|n| n.name.clone())
            .collect();
        if app.is_empty() {
            let roles: std::collections::BTreeSet<&str> = self
                .topology()
                .nodes
                .values()
                .map(|n| n.role.as_str())
                .collect();
            return Err(self.error(
                "final_read.app_role",
                format!("no node has the role `{}`", f.app_role),
                Some(format!(
                    "roles in topology `{}`: {}",
                    self.topology().name,
                    roles.into_iter().collect::<Vec<_>>().join(", ")
                )),
            ));
        }
        self.publishes("final_read.app_port", &app, f.app_port)?;
        self.duration("final_read.analysis_timeout", f.analysis_timeout, false)
    }

    fn http(&self, h: &HttpSpec) -> Checked {
        self.workload_name("http.name", &h.name)?;
        let entry = self.node("http.entry", &h.entry)?;
        self.publishes("http.port", &entry, self.http_port(&h.entry, h.port))?;
        self.count("http.users", h.users as u64, 1..=MAX_CLIENTS)?;
        self.per_second("http.rate", h.rate, MAX_RATE)?;
        self.per_second("http.probe_hz", h.probe_hz, MAX_HZ)?;
        self.path("http.probe_path", &h.probe_path)?;
        if let Some(login) = &h.login {
            self.path("http.login.path", &login.path)?;
        }
        for (i, w) in h.writes.iter().enumerate() {
            self.path(&format!("http.writes[{i}].path"), &w.path)?;
            self.path(&format!("http.writes[{i}].read"), &w.read)?;
        }
        if let Some((field, message)) = h.problems() {
            return Err(self.error(&field, message, None));
        }
        for (field, secret) in h.secrets() {
            self.secret(&field, &secret)?;
        }
        self.duration("http.op_timeout", h.op_timeout, false)?;
        self.duration("http.probe_timeout", h.probe_timeout, false)?;
        self.count("http.max_ops", h.max_ops, 1..=u64::MAX)
    }

    /// What `[redis]` and `[s3]` share: a name of their own, an endpoint, a pace.
    fn keyed(&self, table: &str, name: &str, node: &str, port: u16, pace: Pace) -> Checked {
        self.workload_name(&format!("{table}.name"), name)?;
        let node = self.node(&format!("{table}.node"), node)?;
        self.publishes(&format!("{table}.port"), &node, port)?;
        self.count(
            &format!("{table}.clients"),
            pace.clients as u64,
            1..=MAX_CLIENTS,
        )?;
        self.per_second(&format!("{table}.rate"), pace.rate, MAX_RATE)?;
        self.per_second(&format!("{table}.probe_hz"), pace.probe_hz, MAX_HZ)?;
        self.count(&format!("{table}.max_ops"), pace.max_ops, 1..=u64::MAX)
    }

    /// A declared workload's name: not a built-in's, nor another declared one's.
    fn workload_name(&self, field: &str, name: &str) -> Checked {
        let reserved = [WEB_READ, SQL_READ, AGENTS_READ];
        if reserved.contains(&name) {
            return Err(self.error(
                field,
                format!("`{name}` is the name of a built-in workload"),
                Some(format!("give another name than {}", reserved.join(", "))),
            ));
        }
        let spec = &self.scenario.spec;
        let mut declared = spec
            .http
            .iter()
            .map(|h| ("http.name", &h.name))
            .chain(spec.redis.iter().map(|r| ("redis.name", &r.name)))
            .chain(spec.s3.iter().map(|s| ("s3.name", &s.name)));
        if let Some((other, _)) = declared.find(|(f, n)| *f != field && *n == name) {
            return Err(self.error(
                field,
                format!(
                    "`{other}` is `{name}` too: each workload's final read is kept under its name"
                ),
                Some("give each workload a name of its own".into()),
            ));
        }
        Ok(())
    }

    fn sql(&self, s: &SqlSpec) -> Checked {
        let entry = self.node("sql.entry", &s.entry)?;
        self.publishes("sql.port", &entry, s.port)?;
        self.secret("sql.password_secret", &s.password_secret)?;
        self.count("sql.clients", s.clients as u64, 0..=MAX_CLIENTS)?;
        if s.clients > 0 {
            self.per_second("sql.rate", s.rate, MAX_RATE)?;
            self.count(
                "sql.read_back_every",
                s.read_back_every as u64,
                1..=u64::MAX,
            )?;
        }
        // 0 turns the routed probe off, for when a web workload's probe measures availability.
        let spec = &self.scenario.spec;
        let other_probe = self.scenario.web().is_some()
            || spec.http.is_some()
            || spec.redis.is_some()
            || spec.s3.is_some();
        if s.probe_hz == 0.0 && !other_probe {
            return Err(self.error(
                "sql.probe_hz",
                "0 turns off the probe, and no web, `[http]`, `[redis]` or `[s3]` workload measures availability instead".into(),
                Some(format!("give more than 0 and at most {MAX_HZ} per second")),
            ));
        }
        if s.probe_hz != 0.0 {
            self.per_second("sql.probe_hz", s.probe_hz, MAX_HZ)?;
        }
        self.per_second("sql.member_probe_hz", s.member_probe_hz, MAX_HZ)?;
        let c = &s.cluster;
        let members = self.nodes("sql.members", &c.members, Names::NodesAndGroups)?;
        self.publishes("sql.member_port", &members, s.member_port)?;
        match c.status {
            StatusSource::Rest => {
                self.publishes("sql.rest_port", &members, c.rest_port)?;
                self.path("sql.rest_path", &c.rest_path)?;
            }
            // The virtual IP's holder is in the REST status only.
            StatusSource::Sql if c.leader == LeaderSource::Vip => {
                return Err(self.error(
                    "sql.leader",
                    "`vip` reads who holds the virtual IP from each member's REST status, and `status = \"sql\"` reads none".into(),
                    Some("give `leader = \"none\"` or `\"etcd\"`, or `status = \"rest\"`".into()),
                ));
            }
            StatusSource::Sql => {}
        }
        if c.leader == LeaderSource::Etcd {
            let dcs = self.nodes("sql.dcs", &c.dcs, Names::NodesAndGroups)?;
            self.publishes("sql.dcs_port", &dcs, c.dcs_port)?;
        }
        self.per_second("sql.observe_hz", c.observe_hz, MAX_HZ)?;
        self.duration("sql.op_timeout", s.op_timeout, false)?;
        self.duration("sql.converge_timeout", s.converge_timeout, false)?;
        self.count("sql.max_ops", s.max_ops, 1..=u64::MAX)
    }

    fn agents(&self, a: &AgentsSpec) -> Checked {
        self.count("agents.count", a.count as u64, 1..=MAX_AGENTS)?;
        self.count("agents.late_count", a.late_count as u64, 0..=MAX_AGENTS)?;
        for (field, value, zero) in [
            ("agents.late_after", a.late_after, true),
            ("agents.notify_interval", a.notify_interval, false),
            ("agents.event_interval", a.event_interval, false),
            ("agents.reconnect_delay", a.reconnect_delay, true),
            ("agents.jitter", a.jitter, true),
            ("agents.start_spread", a.start_spread, true),
        ] {
            self.duration(field, value, zero)?;
        }
        let enrol = self.node("agents.enrol", &a.enrol)?;
        self.publishes("agents.enrol_port", &enrol, a.enrol_port)?;
        // Named as the file writes it: `report_port` is read as the same field.
        let ports_field = if self.locate("agents.report_port").1 {
            "agents.report_port"
        } else {
            "agents.report_ports"
        };
        if a.report_ports.is_empty() {
            return Err(self.error(
                ports_field,
                "no port to report on".into(),
                Some("give one port (`report_ports = 1514`) or several".into()),
            ));
        }
        let report = if a.failover_list.is_empty() {
            if a.report.is_empty() {
                return Err(self.error(
                    "agents.report",
                    "no node to report to".into(),
                    Some("give a load balancer (`report = \"cluster-lb\"`) or several".into()),
                ));
            }
            self.node_list("agents.report", &a.report)?
        } else {
            self.node_list("agents.failover_list", &a.failover_list)?
        };
        for port in &a.report_ports {
            self.publishes(ports_field, &report, *port)?;
        }
        self.node_list("agents.expect_on", &a.expect_on)?;
        let master = self.node("agents.master", &a.master)?;
        self.publishes("agents.api_port", &master, a.api_port)?;
        let nodes = self.nodes("agents.nodes", &a.nodes, Names::NodesAndGroups)?;
        self.publishes("agents.api_port", &nodes, a.api_port)?;
        let store = self.node("agents.store", &a.store)?;
        self.publishes("agents.store_port", &store, a.store_port)?;
        self.secret("agents.store_password_secret", &a.store_password_secret)
    }

    /// `[nemesis]`: kinds to draw, nodes to hit (each able to take what is drawn), and spans
    /// that keep the schedule finite.
    fn nemesis(&self, n: &NemesisSpec) -> Checked {
        if n.faults.is_empty() {
            let kinds: Vec<String> = NemesisFault::ALL
                .iter()
                .map(|k| serde_json::to_string(k).unwrap_or_default())
                .collect();
            return Err(self.error(
                "nemesis.faults",
                "names no fault kind".into(),
                Some(format!("kinds: {}", kinds.join(", "))),
            ));
        }
        let mut nodes: Vec<String> = Vec::new();
        for (j, t) in n.targets.iter().enumerate() {
            let field = format!("nemesis.targets[{j}]");
            nodes.extend(self.nodes(&field, t, Names::NodesAndGroups)?);
            let cuts = n
                .faults
                .iter()
                .any(|k| matches!(k, NemesisFault::Partition | NemesisFault::Isolate));
            let lacking: Vec<String> = self
                .topology()
                .resolve(t)
                .unwrap_or_default()
                .into_iter()
                .filter(|m| !self.topology().nodes[m].has_capability("NET_ADMIN"))
                .collect();
            if cuts && !lacking.is_empty() {
                return Err(self.error(
                    &field,
                    format!(
                        "`{}` {} NET_ADMIN, and the nemesis may cut it",
                        lacking.join("`, `"),
                        if lacking.len() == 1 { "lacks" } else { "lack" }
                    ),
                    Some(format!(
                        "add `cap_add = [\"NET_ADMIN\"]` to it in topology `{}`, or draw no partition or isolate",
                        self.topology().name
                    )),
                ));
            }
        }
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            return Err(self.error(
                "nemesis.targets",
                "names nothing: a fault that hits nothing proves nothing".into(),
                Some(self.allowed(Names::NodesAndGroups)),
            ));
        }
        if nodes.len() < 2 && n.faults.contains(&NemesisFault::Partition) {
            return Err(self.error(
                "nemesis.targets",
                format!(
                    "a partition cuts the drawn node from the others, and `{}` is the only one",
                    nodes[0]
                ),
                Some("name more nodes, or draw no partition".into()),
            ));
        }
        self.duration("nemesis.total", n.total, false)?;
        self.duration("nemesis.interval", n.interval.max, false)?;
        // A quiet of 0 could draw faults without end at one instant.
        self.duration("nemesis.interval", n.interval.min, false)?;
        self.duration("nemesis.duration", n.duration.max, true)
    }

    fn step(&self, i: usize, step: &Step) -> Checked {
        let at = format!("steps[{i}]");
        let problem = match (step.at, step.after, &step.fault, &step.wait) {
            (Some(_), Some(_), _, _) => Some("give `at` or `after`, not both"),
            (_, _, None, None) => Some("a step needs a `fault` or a `wait`"),
            _ => None,
        };
        if let Some(p) = problem {
            return Err(self.error(&at, p.into(), None));
        }
        for (field, value) in [("at", step.at), ("after", step.after)] {
            if let Some(d) = value {
                self.duration(&format!("{at}.{field}"), d, true)?;
            }
        }
        if let Some(fault) = &step.fault {
            self.fault(i, fault)?;
        }
        if let Some(when) = &step.when {
            self.when(i, step, when)?;
        }
        match &step.wait {
            Some(wait) => self.wait(i, step, wait),
            None => Ok(()),
        }
    }

    fn fault(&self, i: usize, fault: &Fault) -> Checked {
        let at = format!("steps[{i}].fault");
        if let Fault::RotateSecret { secret, .. } = fault {
            self.secret(&format!("{at}.secret"), secret)?;
        }
        for (field, names) in fault.targets() {
            if names.is_empty() {
                return Err(self.error(
                    &format!("{at}.{field}"),
                    "names nothing: a fault that hits nothing proves nothing".into(),
                    Some(self.allowed(Names::Targets)),
                ));
            }
            for (j, name) in names.iter().enumerate() {
                // `exec` names one node, the others a list.
                let place = match fault {
                    Fault::Exec { .. } => format!("{at}.{field}"),
                    _ => format!("{at}.{field}[{j}]"),
                };
                let nodes = self.target(&place, name, i)?;
                match fault {
                    Fault::RotateSecret { secret, .. } => {
                        self.mounts_secret(&place, &nodes, secret)?
                    }
                    Fault::SkewClock { .. } => self.loads_faketime(&place, &nodes)?,
                    Fault::FillDisk { path, .. } => self.limits_disk(&place, &nodes, path)?,
                    _ => {}
                }
            }
        }
        match fault {
            Fault::Stop { timeout, .. }
            | Fault::Restart { timeout, .. }
            | Fault::Replace { timeout, .. } => {
                self.duration(&format!("{at}.timeout"), *timeout, true)
            }
            Fault::Upgrade { image, timeout, .. } => match self.topology().image(image) {
                Err(msg) => Err(self.error(&format!("{at}.image"), msg, None)),
                Ok(_) => self.duration(&format!("{at}.timeout"), *timeout, true),
            },
            Fault::Signal { process, .. } if process.trim().is_empty() => Err(self.error(
                &format!("{at}.process"),
                "is empty: give a pattern of the process's command line (`patroni`)".into(),
                None,
            )),
            Fault::Exec { command, .. } if command.is_empty() => Err(self.error(
                &format!("{at}.command"),
                "is empty: give the program and its arguments".into(),
                None,
            )),
            Fault::Split { nodes, shape, .. }
                if !nodes.iter().any(|n| n.starts_with('@')) && {
                    let mut all: Vec<String> = nodes
                        .iter()
                        .flat_map(|n| self.topology().resolve(n).unwrap_or_default())
                        .collect();
                    all.sort();
                    all.dedup();
                    all.len() < shape.needs()
                } =>
            {
                Err(self.error(
                    &format!("{at}.nodes"),
                    format!(
                        "a {} split needs {} nodes at least",
                        shape.name(),
                        shape.needs()
                    ),
                    Some("name more nodes, or groups".into()),
                ))
            }
            Fault::Partition {
                effect: Effect::Loss(p),
                ..
            }
            | Fault::Isolate {
                effect: Effect::Loss(p),
                ..
            }
            | Fault::Split {
                effect: Effect::Loss(p),
                ..
            } if !(*p > 0.0 && *p <= 1.0) => Err(self.error(
                &format!("{at}.effect.loss"),
                format!("{p} is out of range"),
                Some("a probability: more than 0, at most 1 (0.3 loses 30 % of packets)".into()),
            )),
            Fault::Delay { latency, .. } if latency.is_zero() => Err(self.error(
                &format!("{at}.latency"),
                "is zero: a delay that holds nothing proves nothing".into(),
                Some("write it like `latency = \"100ms\"`".into()),
            )),
            _ => Ok(()),
        }
    }

    /// `when` waits for work in flight on the fault's targets, or agents connected to them:
    /// the step needs a fault and at least one thing to wait for; work in flight needs
    /// targets that can list it, agents need `[agents]`.
    fn when(&self, i: usize, step: &Step, when: &When) -> Checked {
        let at = format!("steps[{i}].when");
        let Some(fault) = &step.fault else {
            return Err(self.error(
                &at,
                "waits to fire a fault, and the step has none".into(),
                None,
            ));
        };
        if !fault.disturbs() {
            return Err(self.error(
                &at,
                format!(
                    "`{}` disturbs no work, so there is nothing to aim it at",
                    fault.name()
                ),
                Some("put `when` on the step that kills, stops, pauses or cuts".into()),
            ));
        }
        if let Some(selector) = fault
            .targets()
            .iter()
            .flat_map(|(_, names)| names.iter())
            .find(|n| n.starts_with('@'))
        {
            return Err(self.error(
                &at,
                format!(
                    "the fault names `{selector}`: a selector is resolved before the wait, and may name another node by the time it fires"
                ),
                Some("name the node, or drop `when`".into()),
            ));
        }
        let example = "write it like `when = { in_flight = 1, timeout = \"30s\" }` or `when = { agents = 10, timeout = \"30s\" }`";
        // `in_flight = 0` aims at idle targets; no agents is no aim.
        if when.agents == Some(0) {
            return Err(self.error(
                &format!("{at}.agents"),
                "is 0: a fault aimed at nothing is not aimed".into(),
                Some(example.into()),
            ));
        }
        if when.in_flight.is_none() && when.agents.is_none() {
            return Err(self.error(
                &at,
                "names nothing to wait for".into(),
                Some(example.into()),
            ));
        }
        self.duration(&format!("{at}.timeout"), when.timeout, false)?;
        if when.agents.is_some() && self.scenario.spec.agents.is_none() {
            return Err(self.error(
                &format!("{at}.agents"),
                "the scenario has no `[agents]` to connect".into(),
                None,
            ));
        }
        if when.in_flight.is_none() {
            return Ok(());
        }
        let listed = fault
            .targets()
            .iter()
            .flat_map(|(_, names)| names.iter())
            .flat_map(|n| self.topology().resolve(n).unwrap_or_default())
            .any(|n| {
                self.topology()
                    .node(&n)
                    .is_some_and(|n| n.in_flight.is_some())
            });
        if listed {
            return Ok(());
        }
        Err(self.error(
            &format!("{at}.in_flight"),
            "no target of the fault lists the work it holds".into(),
            Some(
                "give the target an `in_flight` command in the topology, e.g. `in_flight = [\"cat\", \"/tmp/worker.in-flight\"]`"
                    .into(),
            ),
        ))
    }

    /// `[abort]` judges the probe as the run goes: the scenario must have one.
    fn abort(&self, abort: &AbortSpec) -> Checked {
        let field = "abort.unavailable_for";
        self.duration(field, abort.unavailable_for, false)?;
        let spec = &self.scenario.spec;
        let probed = self.scenario.web().is_some()
            || spec.sql.is_some()
            || spec.code_workloads.iter().any(|c| c.probe_hz.is_some());
        if probed {
            return Ok(());
        }
        Err(self.error(
            field,
            "no workload of this scenario probes the system".into(),
            Some("the web workload, `[sql]` or a code workload with a probe gives one".into()),
        ))
    }

    /// `skew-clock` moves the clock libfaketime gives a node's processes: each target must
    /// load it.
    fn loads_faketime(&self, field: &str, nodes: &[String]) -> Checked {
        let lacking = nodes
            .iter()
            .filter_map(|n| self.topology().node(n))
            .find(|n| !n.faketime);
        match lacking {
            Some(n) if n.host.is_some() => Err(self.error(
                field,
                format!("host `{}` does not say its service loads libfaketime", n.name),
                Some(format!(
                    "on a host hadrill skews the clock libfaketime gives the service, never the host's own: make its unit load libfaketime reading the offset from {}, and add `clock = \"faketime\"` to [hosts.{}]",
                    crate::topology::FAKETIME_FILE,
                    n.name
                )),
            )),
            Some(n) => Err(self.error(
                field,
                format!("node `{}` does not load libfaketime", n.name),
                Some(format!(
                    "add `clock = \"faketime\"` to [nodes.{}] in the topology (dynamically linked programs only: not static binaries or Go)",
                    n.name
                )),
            )),
            None => Ok(()),
        }
    }

    /// `fill-disk` fills only a size-limited filesystem of a container: `path` must be in one
    /// of each target's `tmpfs` mounts. On a host, the path is the user's to choose.
    fn limits_disk(&self, field: &str, nodes: &[String], path: &str) -> Checked {
        for name in nodes {
            let Some(node) = self.topology().node(name).filter(|n| n.host.is_none()) else {
                continue;
            };
            let inside = |mount: &String| {
                std::path::Path::new(path).starts_with(std::path::Path::new(mount))
            };
            if !node.tmpfs.keys().any(inside) {
                return Err(self.error(
                    field,
                    format!("`{path}` of node `{name}` is not on a size-limited filesystem"),
                    Some(format!(
                        "declare one for it on [nodes.{name}] in the topology, e.g. `tmpfs = {{ \"{path}\" = \"64m\" }}`: hadrill never fills the engine's own disk"
                    )),
                ));
            }
        }
        Ok(())
    }

    /// `rotate-secret` runs the node's own command for the secret, or else rewrites it in the
    /// node's mounted config files: each target must have one or the other (a host, the
    /// command).
    fn mounts_secret(&self, field: &str, nodes: &[String], secret: &str) -> Checked {
        for name in nodes {
            let Some(node) = self.topology().node(name) else {
                continue;
            };
            if node.rotate_secret.contains_key(secret) {
                continue;
            }
            if node.host.is_some() {
                return Err(self.error(
                    field,
                    format!("host `{name}` gives no command to rotate {secret}"),
                    Some(format!(
                        "add the product's own command to [hosts.{name}]: `rotate_secret = {{ {secret} = [\"…\"] }}`; it reads the new value on its standard input"
                    )),
                ));
            }
            let holds = node.config.iter().any(|m| {
                std::fs::read_to_string(&m.source)
                    .is_ok_and(|text| placeholders(&text, "secret").contains(&secret))
            });
            if !holds {
                return Err(self.error(
                    field,
                    format!("node `{name}` mounts no config file with `${{secret:{secret}}}`"),
                    Some(
                        "rotate-secret rewrites the secret in the config files its targets mount"
                            .into(),
                    ),
                ));
            }
        }
        Ok(())
    }

    fn wait(&self, i: usize, step: &Step, wait: &Wait) -> Checked {
        let at = format!("steps[{i}].wait");
        self.duration(&format!("{at}.timeout"), wait.timeout, false)?;
        for (j, name) in wait.nodes.iter().enumerate() {
            self.node(&format!("{at}.nodes[{j}]"), name)?;
        }
        match wait.until {
            Condition::Analysed if self.scenario.web().is_none() => Err(self.error(
                &format!("{at}.until"),
                "`analysed` needs the web workload: it waits for its users' uploads".into(),
                None,
            )),
            Condition::AgentsConnected if self.scenario.spec.agents.is_none() => Err(self.error(
                &format!("{at}.until"),
                "`agents-connected` needs `[agents]`: it waits for that fleet".into(),
                None,
            )),
            Condition::Healthy if wait.nodes.is_empty() && step.fault.is_none() => {
                Err(self.error(
                    &at,
                    "waits for no node: name `nodes`, or give the step a fault whose nodes it waits for".into(),
                    Some(self.allowed(Names::Nodes)),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Each name, the scenario's own and its variants', is a check this scenario runs, or the
    /// run could never pass. (A variant's run holds its variant's names in place of the
    /// scenario's own.)
    fn expect_fail(&self) -> Checked {
        let spec = &self.scenario.spec;
        let own = (!self.scenario.name.contains(super::VARIANT_SEPARATOR))
            .then(|| ("expect_fail".to_string(), &spec.expect_fail));
        let variants = spec
            .variants
            .iter()
            .enumerate()
            .map(|(j, v)| (format!("variants[{j}].expect_fail"), &v.expect_fail));
        let run = super::check_names(spec);
        for (field, list) in own.into_iter().chain(variants) {
            for (i, name) in list.iter().enumerate() {
                if !run.contains(name) {
                    let mut names = run.clone();
                    names.sort_unstable();
                    names.dedup();
                    return Err(self.error(
                        &format!("{field}[{i}]"),
                        format!("no check `{name}` runs in this scenario"),
                        Some(format!("checks this scenario runs: {}", names.join(", "))),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn selectors() -> String {
    Selector::ALL
        .iter()
        .map(|s| format!("@{}", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
