//! The S3-compatible object store (SeaweedFS here; MinIO, AWS S3, StorageGRID elsewhere).

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::config::S3Config;

/// Objects up to this size go up in one PUT; larger ones in multipart chunks of this size.
const PART: usize = 8 << 20;

#[derive(Clone)]
pub struct Storage {
    store: Arc<AmazonS3>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store unavailable: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading the spooled upload: {0}")]
    Io(#[from] std::io::Error),
}

impl Storage {
    pub fn connect(cfg: &S3Config) -> Result<Self, StorageError> {
        let store = AmazonS3Builder::new()
            .with_endpoint(&cfg.endpoint)
            .with_region("us-east-1")
            .with_bucket_name(&cfg.bucket)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(&cfg.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                // Client options replace the builder's: allow_http must be set here.
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(60)),
            )
            // An outage must surface as an error quickly, not hide behind long retries.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(5),
                ..Default::default()
            })
            .build()?;
        Ok(Storage {
            store: Arc::new(store),
        })
    }

    /// Uploads a spooled file under `key`; returns once the store has acknowledged it.
    pub async fn put_file(&self, key: &str, file: &FsPath, size: u64) -> Result<(), StorageError> {
        let path = Path::from(key);
        let mut f = tokio::fs::File::open(file).await?;
        if size as usize <= PART {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf).await?;
            self.store.put(&path, PutPayload::from(buf)).await?;
            return Ok(());
        }
        let mut upload =
            WriteMultipart::new_with_chunk_size(self.store.put_multipart(&path).await?, PART);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            upload.wait_for_capacity(4).await?;
            upload.write(&buf[..n]);
        }
        upload.finish().await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<object_store::GetResult, StorageError> {
        Ok(self.store.get(&Path::from(key)).await?)
    }

    pub async fn get_bytes(&self, key: &str) -> Result<bytes::Bytes, StorageError> {
        Ok(self.get(key).await?.bytes().await?)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reachable means the store answered, even "not found".
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.exists("readyz-probe").await.map(|_| ())
    }
}
