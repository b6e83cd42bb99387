//! Where archived days go: a directory or an S3-compatible bucket, through `object_store`.

use std::io::Read;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::NaiveDate;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

/// Upload part size.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Where archived days go.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    /// Shown in logs and manifests (the URL, without credentials: those come from the environment).
    pub url: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

impl Archive {
    /// Opens `ARCHIVE_URL`: `s3://bucket/prefix` (credentials, region and an S3-compatible endpoint from the
    /// usual `AWS_*` variables), or a directory (`file:///path` or an absolute path), created if missing.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") {
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .with_context(|| format!("ARCHIVE_URL {url}"))?;
            let prefix = url.trim_start_matches("s3://").split_once('/').map(|(_, p)| p.trim_matches('/'));
            match prefix {
                Some(prefix) if !prefix.is_empty() => {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, ObjectPath::from(prefix)))
                }
                _ => Arc::new(s3),
            }
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if !dir.starts_with('/') {
                bail!("ARCHIVE_URL must be s3://bucket/prefix, file:///path or an absolute path, not {url:?}");
            }
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create the archive directory {dir}"))?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
        };
        Ok(Self { store, url: url.to_owned() })
    }

    /// Where a day's file goes.
    pub fn object(day: NaiveDate) -> ObjectPath {
        ObjectPath::from(format!("transactions/day={day}/transactions-{day}.parquet"))
    }

    /// Where a day's manifest goes.
    pub fn manifest(day: NaiveDate) -> ObjectPath {
        ObjectPath::from(format!("transactions/day={day}/manifest.json"))
    }
}

impl Archive {
    /// Uploads a local file as `object`, in parts.
    pub async fn upload(&self, object: &ObjectPath, local: &std::path::Path) -> anyhow::Result<()> {
        let upload = self.store.put_multipart(object).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = std::fs::File::open(local)?;
        let mut buffer = vec![0u8; PART_BYTES];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await?;
            writer.write(&buffer[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// An object's bytes, as stored now.
    pub async fn fetch(&self, object: &ObjectPath) -> anyhow::Result<Bytes> {
        Ok(self.store.get(object).await?.bytes().await?)
    }

    /// Writes a small object in one piece (a manifest).
    pub async fn put(&self, object: &ObjectPath, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.store.put(object, PutPayload::from(bytes)).await?;
        Ok(())
    }
}
