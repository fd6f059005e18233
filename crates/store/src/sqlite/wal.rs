//! The write-ahead log's file: written out whole, zero-filled, before the
//! store's connections open it, so that commits overwrite it instead of
//! growing it.
//!
//! Why: SQLite's WAL grows by appending frames until a checkpoint lets the
//! next writer start again from its beginning, and SQLite deletes the file
//! when the last connection closes. A commit that appends changes the
//! file's size, so its `fdatasync` must also commit the file system's
//! journal; a commit that overwrites blocks already on disk does not. On
//! this workplace's ext4 an 8 KB append with `fdatasync` took 260–450 µs
//! at the median and an overwrite 145–160 µs (performance.md, finding 70).
//! Every start used to pay the append price for its first
//! [`AUTOCHECKPOINT_PAGES`] pages of commits, the whole of a short run.
//!
//! Safe because SQLite reads a WAL whose header is not valid as an empty
//! log (`walIndexRecover`): it is what a WAL kept by
//! `SQLITE_FCNTL_PERSIST_WAL` looks like after a reset. The file appears
//! whole (a link of a finished temporary file) and only where no WAL is: a
//! WAL that is there belongs to a connection that still has the database
//! open, or to a crash the next open recovers, and is left alone. The
//! zeros are flushed, and the directory after the link, so a commit into
//! the file never waits on its blocks or its name.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// WAL pages after which a commit checkpoints (`PRAGMA wal_autocheckpoint`).
/// A checkpoint copies each page the WAL holds once, however many versions
/// of it the WAL has; under steady writes the same index tails change in
/// every batch, so a longer WAL (16 MiB rather than 4) copies fewer pages
/// per task. Checkpoints run on the writer thread, which bounds SQLite's
/// throughput (finding 62).
pub(crate) const AUTOCHECKPOINT_PAGES: u64 = 4000;

/// Bytes of the WAL's header and of each frame's header.
const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;

/// The WAL file of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Bytes written ahead: the pages one checkpoint interval holds, and an
/// eighth more for the batch that crosses it (the checkpoint runs after
/// that batch's commit) and for a restart a reader delays.
pub(crate) fn preallocated_len(page_size: u64) -> u64 {
    WAL_HEADER + (AUTOCHECKPOINT_PAGES + AUTOCHECKPOINT_PAGES / 8) * (page_size + FRAME_HEADER)
}

/// Writes the zero-filled WAL of the database at `db` (pages of
/// `page_size` bytes) if it has none. Call it with no connection open to
/// the database. Returns whether it wrote one.
pub(crate) async fn preallocate(db: &Path, page_size: u64) -> Result<bool> {
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || write_zeroed(&db, preallocated_len(page_size)))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .map_err(StoreError::Io)
}

fn write_zeroed(db: &Path, len: u64) -> std::io::Result<bool> {
    let wal = wal_path(db);
    if wal.try_exists()? {
        return Ok(false);
    }
    let dir = db
        .parent()
        .ok_or_else(|| std::io::Error::other("database path has no parent"))?;
    // Named after the WAL, so that one a crash left behind (it is only
    // ever linked whole) says what it is.
    let mut tmp = tempfile::Builder::new()
        .prefix(".aruntime-wal-ahead.")
        .tempfile_in(dir)?;
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        // At most CHUNK, which fits usize.
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        tmp.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(&wal) {
        Ok(_) => {}
        // A connection opened the database and made its WAL meanwhile.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e.error),
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use aruntime_api::NewTask;
    use aruntime_core::Timestamp;

    #[tokio::test]
    async fn a_fresh_store_commits_into_its_wal_without_growing_it() {
        let now = Timestamp(1_700_000_000_000);
        let (dir, store) = super::super::testing::bootstrapped(now).await.unwrap();
        let wal = wal_path(&dir.path().join("aruntime.db"));
        let len = preallocated_len(4096);
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), len);
        let mut ids = vec![];
        for i in 0..50 {
            let spec = NewTask::titled(format!("t{i}"));
            let task = store.task_create("default", spec, None, now).await.unwrap();
            ids.push(task.value.id);
        }
        // The commits went into the zeros: the file did not grow.
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), len);
        drop(store);
        let store = super::super::testing::reopen(&dir).await;
        for id in ids {
            store.task_get("default", id).await.unwrap();
        }
    }

    #[test]
    fn a_wal_that_exists_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(wal_path(&db), b"frames").unwrap();
        assert!(!write_zeroed(&db, 4096).unwrap());
        assert_eq!(std::fs::read(wal_path(&db)).unwrap(), b"frames");
    }

    #[test]
    fn a_missing_wal_is_written_whole_and_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let len = (1 << 20) + 4096 + 7;
        assert!(write_zeroed(&db, len).unwrap());
        let wal = std::fs::read(wal_path(&db)).unwrap();
        assert_eq!(wal.len() as u64, len);
        assert!(wal.iter().all(|&b| b == 0));
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
