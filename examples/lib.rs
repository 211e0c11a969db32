//! Drills as a user writes them in their own crate: see `tests/`.
