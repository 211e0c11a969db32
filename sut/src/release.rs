//! The product's releases. Both are built from this crate, as two binaries (`web` and
//! `web-next`), so that a drill can run release N and N+1 side by side and upgrade one to the
//! other.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Release N (version 1): schema version 1.
    Current,
    /// Release N+1 (version 2): needs schema version 2, and records in each trace the release
    /// that uploaded it (`traces.release`).
    Next,
}

impl Release {
    /// The product version, as `x-product-version` and `web --version` show it.
    pub fn version(self) -> &'static str {
        match self {
            Release::Current => "1",
            Release::Next => "2",
        }
    }

    /// The newest schema version this release knows: `web database init` creates it and
    /// `web database migrate` goes no further.
    pub fn schema_version(self) -> i32 {
        match self {
            Release::Current => 1,
            Release::Next => 2,
        }
    }

    /// Whether this release reads and writes `traces.release`, which schema version 2 adds.
    /// Such a release cannot serve uploads on an older schema.
    pub fn records_release(self) -> bool {
        self.schema_version() >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            (
                Release::Current.version(),
                Release::Current.schema_version()
            ),
            ("1", 1)
        );
        assert_eq!(
            (Release::Next.version(), Release::Next.schema_version()),
            ("2", 2)
        );
        assert!(!Release::Current.records_release());
        assert!(Release::Next.records_release());
    }
}
