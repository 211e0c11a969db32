//! The background tasks of a run (clients, probes, observers): joined so that a panic in one
//! is reported with its message instead of vanishing into a shorter history.

use tokio::task::{JoinError, JoinSet};

/// Waits for every task of `set`; returns the messages of those that panicked.
pub(crate) async fn join_all(set: &mut JoinSet<()>) -> Vec<String> {
    let mut panics = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Err(e) = done
            && let Some(message) = panic_message(e)
        {
            tracing::error!("a workload task panicked: {message}");
            panics.push(message);
        }
    }
    panics
}

/// Waits for every task of a workload's own `set`, re-raising the first panic in the task
/// that joins them (the run's `join_all` then reports it).
pub async fn join_nested(set: &mut JoinSet<()>) {
    while let Some(done) = set.join_next().await {
        propagate(done);
    }
}

/// Re-raises a panic of a nested task in the task that joins it, so it reaches `join_all`.
pub fn propagate(done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The message a task panicked with; None for a task that was cancelled.
fn panic_message(e: JoinError) -> Option<String> {
    let payload = e.try_into_panic().ok()?;
    Some(
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-text payload".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_message() {
        let mut set = JoinSet::new();
        set.spawn(async {});
        set.spawn(async { panic!("probe exploded at t=3s") });
        set.spawn(async {
            let mut inner = JoinSet::new();
            inner.spawn(async { panic!("nested {}", 7) });
            while let Some(done) = inner.join_next().await {
                propagate(done);
            }
        });
        let mut panics = join_all(&mut set).await;
        panics.sort();
        assert_eq!(panics, vec!["nested 7", "probe exploded at t=3s"]);
    }

    #[tokio::test]
    async fn cancelled_tasks_are_not_panics() {
        let mut set = JoinSet::new();
        set.spawn(std::future::pending::<()>());
        set.abort_all();
        assert!(join_all(&mut set).await.is_empty());
    }
}
