//! The scenario files live beside this crate; `run.rs` makes each one a test.
