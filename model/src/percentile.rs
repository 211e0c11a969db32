//! Percentiles of measured figures, as the checks and the trend page report them.

/// The value at quantile `q` (0 to 1) of `sorted`, to the nearest rank; `None` when empty.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted
        .get((last as f64 * q.clamp(0.0, 1.0)).round() as usize)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_sorted_values() {
        let v = [10, 20, 30, 40, 50];
        assert_eq!(percentile(&v, 0.5), Some(30));
        assert_eq!(percentile(&v, 0.99), Some(50));
        assert_eq!(percentile(&v, 0.0), Some(10));
        assert_eq!(percentile::<u64>(&[], 0.5), None);
        assert_eq!(percentile(&[1.5], 0.99), Some(1.5));
    }
}
