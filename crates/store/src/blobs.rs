//! Content-addressed blob files: `<root>/<tenant>/<sha[0..2]>/<sha>`.
//!
//! A blob is written to a temporary file, flushed to disk, then renamed into
//! place, and the directory is flushed too, so an acknowledged upload
//! survives a crash and a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

/// The blob directory.
#[derive(Debug, Clone)]
pub(crate) struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    pub(crate) fn new(root: PathBuf) -> Self {
        BlobDir { root }
    }

    fn path(&self, tenant: &str, sha: &str) -> PathBuf {
        self.root.join(tenant).join(&sha[..2]).join(sha)
    }

    /// Hashes and stores `bytes`; returns the hex sha256.
    pub(crate) async fn put(&self, tenant: &str, bytes: &[u8]) -> Result<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.path(tenant, &sha);
        if tokio::fs::try_exists(&path).await? {
            return Ok(sha);
        }
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        Ok(sha)
    }

    pub(crate) async fn get(&self, tenant: &str, sha: &str) -> Result<Vec<u8>> {
        if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::not_found("blob", sha));
        }
        match tokio::fs::read(self.path(tenant, sha)).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::not_found("blob", sha))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
