//! The blob adapter: the `object_store` crate on local files (`file://DIR`) or S3
//! (`s3://BUCKET?endpoint=…&region=…&prefix=…`). One type serves both, so the two
//! differ only where `object_store` does — and where it does not fsync (files),
//! this adapter does.

use std::{ops::Range, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use object_store::{
    aws::AmazonS3Builder, local::LocalFileSystem, path::Path, GetOptions, GetRange, ObjectStore,
    PutPayload, WriteMultipart,
};

use super::{BlobStore, PutBlob, PutError};
use crate::{StoreError, StoreResult};

/// Parts of a multipart upload: S3's smallest part size, so an object is held in
/// memory at most a few parts at a time.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Where objects live, as `KEEL_OBJECTS` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobsKind {
    File(PathBuf),
    S3(S3Settings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty: AWS's own endpoint for the region.
    pub endpoint: String,
    pub region: String,
    /// Every blob name is put under this prefix, so deployments (and tests) can
    /// share one bucket.
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl BlobsKind {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("file://") {
            if path.is_empty() {
                return Err(format!("objects {raw:?}: file:// needs a directory"));
            }
            return Ok(Self::File(path.into()));
        }
        if raw.starts_with("s3://") {
            let url = url::Url::parse(raw).map_err(|e| format!("objects {raw:?}: {e}"))?;
            let bucket = url.host_str().unwrap_or("").to_owned();
            if bucket.is_empty() {
                return Err(format!(
                    "objects {raw:?}: s3:// names a bucket, s3://BUCKET?…"
                ));
            }
            let mut settings = S3Settings {
                bucket,
                endpoint: String::new(),
                region: "us-east-1".into(),
                prefix: String::new(),
                access_key_id: None,
                secret_access_key: None,
            };
            for (name, value) in url.query_pairs() {
                let value = value.into_owned();
                match name.as_ref() {
                    "endpoint" => settings.endpoint = value,
                    "region" => settings.region = value,
                    "prefix" => settings.prefix = value.trim_matches('/').to_owned(),
                    "access_key_id" => settings.access_key_id = Some(value),
                    "secret_access_key" => settings.secret_access_key = Some(value),
                    other => {
                        return Err(format!(
                            "objects {raw:?}: unknown parameter {other:?} (endpoint, region, \
                             prefix, access_key_id, secret_access_key)"
                        ))
                    }
                }
            }
            return Ok(Self::S3(settings));
        }
        Err(format!(
            "objects {raw:?}: expected file://DIR or s3://BUCKET?endpoint=…&region=…"
        ))
    }
}

pub struct ObjectStoreBlobs {
    inner: Arc<dyn ObjectStore>,
    /// Set for files: the directory blobs live in, to fsync what was written.
    root: Option<PathBuf>,
    prefix: String,
    region: String,
    name: &'static str,
}

impl ObjectStoreBlobs {
    /// Opens the objects backend `url` names (credentials for S3 also come from the
    /// usual `AWS_*` environment variables).
    pub fn open(url: &str) -> StoreResult<Self> {
        let kind = BlobsKind::parse(url).map_err(|why| StoreError::InvalidInput {
            field: "objects",
            why,
        })?;
        match kind {
            BlobsKind::File(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    StoreError::Unavailable(format!("objects directory {}: {e}", dir.display()))
                })?;
                let dir = dir.canonicalize().map_err(|e| {
                    StoreError::Unavailable(format!("objects directory {}: {e}", dir.display()))
                })?;
                let inner = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| StoreError::Unavailable(format!("objects directory: {e}")))?
                    .with_automatic_cleanup(true);
                Ok(Self {
                    inner: Arc::new(inner),
                    root: Some(dir),
                    prefix: String::new(),
                    region: "local".into(),
                    name: "file",
                })
            }
            BlobsKind::S3(s3) => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region);
                if !s3.endpoint.is_empty() {
                    builder = builder
                        .with_endpoint(&s3.endpoint)
                        .with_allow_http(s3.endpoint.starts_with("http://"));
                }
                if let Some(id) = &s3.access_key_id {
                    builder = builder.with_access_key_id(id);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let inner = builder.build().map_err(|e| StoreError::InvalidInput {
                    field: "objects",
                    why: e.to_string(),
                })?;
                Ok(Self {
                    inner: Arc::new(inner),
                    root: None,
                    prefix: s3.prefix,
                    region: s3.region,
                    name: "s3",
                })
            }
        }
    }

    fn path(&self, name: &str) -> Path {
        let parts = self.prefix.split('/').chain(name.split('/'));
        Path::from_iter(parts.filter(|p| !p.is_empty()))
    }

    /// On files, makes what was written durable: `object_store` renames a finished
    /// upload into place but does not fsync it or its directories.
    async fn sync(&self, path: &Path) -> StoreResult<()> {
        let Some(root) = self.root.clone() else {
            return Ok(());
        };
        let relative = path.to_string();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let file = root.join(&relative);
            std::fs::File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(d) = dir {
                std::fs::File::open(d)?.sync_all()?;
                if d == root {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Internal(format!("fsync task: {e}")))?
        .map_err(|e| StoreError::Unavailable(format!("objects: fsync: {e}")))
    }
}

fn unavailable(e: object_store::Error) -> StoreError {
    StoreError::Unavailable(format!("objects: {e}"))
}

/// Reads `body` into `first` until it holds one part or the body ends: most
/// objects are small and go up in one request.
async fn fill_first_part(
    body: &mut BoxStream<'static, Result<Bytes, String>>,
    hasher: &mut Md5,
    size: &mut u64,
    max_bytes: u64,
) -> Result<(Vec<Bytes>, bool), PutError> {
    let mut chunks = Vec::new();
    let mut held = 0usize;
    while held < PART_BYTES {
        match body.next().await {
            None => return Ok((chunks, true)),
            Some(Err(e)) => return Err(PutError::Body(e)),
            Some(Ok(chunk)) => {
                *size += chunk.len() as u64;
                if *size > max_bytes {
                    return Err(PutError::TooLarge(max_bytes));
                }
                hasher.update(&chunk);
                held += chunk.len();
                chunks.push(chunk);
            }
        }
    }
    Ok((chunks, false))
}

#[async_trait]
impl BlobStore for ObjectStoreBlobs {
    async fn put(
        &self,
        name: &str,
        mut body: BoxStream<'static, Result<Bytes, String>>,
        max_bytes: u64,
    ) -> Result<PutBlob, PutError> {
        let path = self.path(name);
        let (mut hasher, mut size) = (Md5::new(), 0u64);
        let (first, ended) = fill_first_part(&mut body, &mut hasher, &mut size, max_bytes).await?;
        if ended {
            let payload: PutPayload = first.into_iter().collect();
            self.inner.put(&path, payload).await.map_err(unavailable)?;
        } else {
            let upload = self.inner.put_multipart(&path).await.map_err(unavailable)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            for chunk in first {
                writer.put(chunk);
            }
            let streamed: Result<(), PutError> = async {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(PutError::Body)?;
                    size += chunk.len() as u64;
                    if size > max_bytes {
                        return Err(PutError::TooLarge(max_bytes));
                    }
                    hasher.update(&chunk);
                    writer
                        .wait_for_capacity(PARTS_IN_FLIGHT)
                        .await
                        .map_err(unavailable)?;
                    writer.put(chunk);
                }
                Ok(())
            }
            .await;
            if let Err(e) = streamed {
                if let Err(abort) = writer.abort().await {
                    tracing::debug!(error = %abort, "aborting an upload that failed");
                }
                return Err(e);
            }
            writer.finish().await.map_err(unavailable)?;
        }
        self.sync(&path).await?;
        Ok(PutBlob {
            size,
            md5_hex: hex(&hasher.finalize()),
        })
    }

    async fn get(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> StoreResult<BoxStream<'static, StoreResult<Bytes>>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let found = self
            .inner
            .get_opts(&self.path(name), options)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    StoreError::Internal(format!("blob {name} is indexed but missing: {e}"))
                }
                other => unavailable(other),
            })?;
        Ok(found.into_stream().map_err(unavailable).boxed())
    }

    async fn delete(&self, name: &str) -> StoreResult<()> {
        match self.inner.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        match self.inner.head(&self.path("keel-ping")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn backend_name(&self) -> &'static str {
        self.name
    }

    fn region(&self) -> &str {
        &self.region
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_backend() {
        assert_eq!(
            BlobsKind::parse("file://keel-data/objects"),
            Ok(BlobsKind::File("keel-data/objects".into()))
        );
        let BlobsKind::S3(s3) = BlobsKind::parse(
            "s3://media?endpoint=http://127.0.0.1:4566&region=eu-west-1&prefix=/keel/",
        )
        .unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "media");
        assert_eq!(s3.endpoint, "http://127.0.0.1:4566");
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.prefix, "keel");
        for bad in ["file://", "s3://", "s3://b?colour=red", "ftp://x"] {
            assert!(BlobsKind::parse(bad).is_err(), "{bad}");
        }
    }
}
