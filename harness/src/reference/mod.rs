//! The reference product (`sut/`, SYSTEMS.md §1 and §4) as a plug-in beside the core: its web
//! users and their API, its agents and their protocol, what it holds after a run and how that
//! is read, and the checks only it needs (its uploads and analyses, its historian, its
//! sessions, its licence, its cluster's event store, agent registry and synced files).
//!
//! The core knows none of this: it plans these checks when a scenario has `[web]` or
//! `[agents]`, and judges availability, user requests and failover from the verbs declared
//! here (`TRAFFIC`, `WRITES`) like those of any other workload.

pub mod agents;
pub mod checks;
pub mod cluster;
pub mod finals;
pub mod license;
pub mod web;

use crate::checks::Traffic;
use hadrill_model::OpKind;

/// The operations the reference product's clients record.
pub mod verbs {
    use hadrill_model::OpKind;

    /// A user signs in (`POST /login`); the node that answered issued the session cookie.
    pub const LOGIN: OpKind = OpKind::new("login");
    /// A user uploads a trace (key: its id; value: the SHA-256 of its bytes).
    pub const UPLOAD: OpKind = OpKind::new("upload");
    /// A user reads back a trace it uploaded and compares the digest.
    pub const READ: OpKind = OpKind::new("read");
    /// A user checks its session is still valid (`GET /me`).
    pub const SESSION: OpKind = OpKind::new("session");
    /// After a secret rotation: is a cookie from before it rejected by an app server?
    pub const OLD_SESSION: OpKind = OpKind::new("old-session");
    /// An agent enrolled (key: agent name; value: its id).
    pub const ENROLL: OpKind = OpKind::new("enroll");
    /// An agent event acknowledged by a node (key: `<agent id>/<seq>`).
    pub const EVENT: OpKind = OpKind::new("event");
    /// The digest of a cluster node's synced files changed (key: node; value: digest).
    pub const FILES: OpKind = OpKind::new("files");
}

/// The web users' requests through the load balancer, and their sign-in.
pub const TRAFFIC: Traffic<'static> = Traffic {
    requests: std::borrow::Cow::Borrowed(&[
        verbs::LOGIN,
        verbs::UPLOAD,
        verbs::READ,
        verbs::SESSION,
    ]),
    login: Some(verbs::LOGIN),
};

/// The web users' writes that must survive a database failover.
pub const WRITES: &[OpKind] = &[verbs::UPLOAD];
