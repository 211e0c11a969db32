//! The services node's scheduler: a historian roll-up per 2-second slot. The slot is the
//! primary key, so a restart or a second services node never computes a slot twice, and the
//! slots missed during an outage are caught up afterwards. Time comes from the database, so
//! nodes with skewed clocks agree on the slots (unless the `local-clock` fixture plants the
//! defect of reading the node's own clock).

use std::ops::Range;

pub const SLOT_SECONDS: i64 = 2;
/// At most this many missed slots are caught up per pass, to keep each pass short.
const MAX_CATCH_UP: i64 = 600;

/// The completed slots still to compute, given the last computed one and the current slot.
pub fn slots_to_compute(last_done: Option<i64>, current: i64) -> Range<i64> {
    let start = last_done.map_or(current - 1, |l| l + 1);
    let end = current.min(start + MAX_CATCH_UP);
    start..end.max(start)
}

/// Computes every completed slot not yet computed. Returns the slots this call wrote. The
/// present is the database's clock, or `local_now` (seconds since the epoch) where given.
pub async fn catch_up(
    client: &deadpool_postgres::Object,
    node: &str,
    local_now: Option<f64>,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT floor(coalesce($2::float8, extract(epoch FROM clock_timestamp())::float8)
                          / $1::bigint)::bigint,
                    (SELECT max(slot) FROM rollups)",
            &[&SLOT_SECONDS, &local_now],
        )
        .await?;
    let (current, last): (i64, Option<i64>) = (row.get(0), row.get(1));
    let mut written = Vec::new();
    for slot in slots_to_compute(last, current) {
        let n = client
            .execute(
                "INSERT INTO rollups (slot, traces, bytes, computed_by)
                 SELECT $1, count(*), coalesce(sum(size), 0)::bigint, $3 FROM traces
                  WHERE created_at >= to_timestamp(($1::bigint * $2::bigint)::float8)
                    AND created_at < to_timestamp((($1::bigint + 1) * $2::bigint)::float8)
                 ON CONFLICT (slot) DO NOTHING",
                &[&slot, &SLOT_SECONDS, &node],
            )
            .await?;
        if n == 1 {
            written.push(slot);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pass_computes_only_the_last_completed_slot() {
        assert_eq!(slots_to_compute(None, 100), 99..100);
    }

    #[test]
    fn nothing_to_do_when_up_to_date() {
        assert!(slots_to_compute(Some(99), 100).is_empty());
        // A clock that went backwards never recomputes a slot.
        assert!(slots_to_compute(Some(120), 100).is_empty());
    }

    #[test]
    fn missed_slots_are_caught_up_once_each_in_order() {
        let slots: Vec<i64> = slots_to_compute(Some(90), 100).collect();
        assert_eq!(slots, (91..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_long_outage_is_caught_up_in_bounded_passes() {
        let r = slots_to_compute(Some(0), 10_000);
        assert_eq!(r, 1..601);
    }
}
