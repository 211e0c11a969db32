//! The worker's analysis: recompute the object's digest and count its lines, then record the
//! result idempotently: a job delivered twice leaves one result (and two recorded attempts).

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};

/// What the worker computes for one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub lines: i64,
    pub bytes: i64,
    /// The stored object's SHA-256 equals the one recorded at upload.
    pub sha256_ok: bool,
}

pub fn analyse(content: &[u8], expected_sha256: &str) -> Analysis {
    Analysis {
        lines: content.iter().filter(|&&b| b == b'\n').count() as i64,
        bytes: content.len() as i64,
        sha256_ok: hex::encode(Sha256::digest(content)) == expected_sha256,
    }
}

/// Records an attempt and the result (the first one wins). Returns whether this call wrote the
/// result.
pub async fn record(
    client: &mut deadpool_postgres::Object,
    trace_id: i64,
    analysis: &Analysis,
    worker: &str,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO analysis_attempts (trace_id, worker) VALUES ($1, $2)",
        &[&trace_id, &worker],
    )
    .await?;
    let written = tx
        .execute(
            "INSERT INTO analyses (trace_id, lines, bytes, sha256_ok, worker) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (trace_id) DO NOTHING",
            &[&trace_id, &analysis.lines, &analysis.bytes, &analysis.sha256_ok, &worker],
        )
        .await?;
    tx.commit().await?;
    Ok(written == 1)
}

/// The recorded SHA-256 of a trace, if the row exists.
pub async fn expected_sha256(
    client: &impl GenericClient,
    trace_id: i64,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt("SELECT sha256 FROM traces WHERE id = $1", &[&trace_id])
        .await?
        .map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_counts_lines_and_checks_the_digest() {
        let data = b"a\nb\nc";
        let sha = hex::encode(Sha256::digest(data));
        assert_eq!(
            analyse(data, &sha),
            Analysis {
                lines: 2,
                bytes: 5,
                sha256_ok: true
            }
        );
        assert!(!analyse(b"tampered", &sha).sha256_ok);
    }
}
