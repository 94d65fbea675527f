//! The repository handle: an `object_store` from a URL (docs/repository.md, "URLs") and the
//! few requests the rest of the crate makes.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Repo {
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
}

/// What a conditional write found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    Written,
    /// The object was there already; nothing was written.
    Existed,
}

impl Repo {
    /// `s3://BUCKET[/PREFIX]` (endpoint, region and credentials from the standard AWS
    /// variables, e.g. AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_ALLOW_HTTP) or
    /// `file:///PATH` (created when missing).
    pub fn open(url: &str) -> Result<Repo> {
        let bad = |why: String| Error::Url {
            url: url.to_string(),
            why,
        };
        let u = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match u.scheme() {
            "s3" => {
                let bucket = u
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("no bucket".into()))?;
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let prefix = u.path().trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                }
            }
            "file" => {
                let path = u
                    .to_file_path()
                    .map_err(|()| bad("not an absolute local path".into()))?;
                std::fs::create_dir_all(&path)
                    .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
                Arc::new(
                    LocalFileSystem::new_with_prefix(&path)
                        .map_err(|e| bad(e.to_string()))?
                        .with_automatic_cleanup(true),
                )
            }
            s => return Err(bad(format!("scheme {s:?}: s3:// or file:// expected"))),
        };
        Ok(Repo {
            url: url.to_string(),
            store,
        })
    }

    pub async fn get(&self, key: &Path) -> Result<Bytes> {
        match self.store.get(key).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => {
                Err(Error::NotFound(format!("no object {key} in {}", self.url)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `None` when there is no such object.
    pub async fn get_opt(&self, key: &Path) -> Result<Option<Bytes>> {
        match self.get(key).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn exists(&self, key: &Path) -> Result<bool> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `data` whole (an object is visible complete or not at all).
    pub async fn put(&self, key: &Path, data: Bytes) -> Result<()> {
        self.store.put(key, PutPayload::from(data)).await?;
        Ok(())
    }

    /// Writes `data` only when no object `key` exists (a conditional put; docs/repository.md,
    /// "Consistency").
    pub async fn put_new(&self, key: &Path, data: Bytes) -> Result<Put> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let data_again = data.clone();
        match self.store.put_opts(key, PutPayload::from(data), opts).await {
            Ok(_) => Ok(Put::Written),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::Existed),
            // A store without conditional puts: check, then write (one writer per volume
            // holds the lease, so nobody else writes this volume's names meanwhile).
            Err(object_store::Error::NotImplemented) => {
                if self.exists(key).await? {
                    return Ok(Put::Existed);
                }
                self.put(key, data_again).await?;
                Ok(Put::Written)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        Ok(self.store.list(Some(prefix)).try_collect().await?)
    }

    /// The names directly under `prefix` that hold objects (volumes under `vols`).
    pub async fn folders(&self, prefix: &Path) -> Result<Vec<String>> {
        let r = self.store.list_with_delimiter(Some(prefix)).await?;
        Ok(r.common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }
}
