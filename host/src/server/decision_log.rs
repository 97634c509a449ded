//! `--decision-log FILE`: one JSON line per decision, written by its own thread so the event loop
//! never waits on the disk.
//!
//! The file is rotated by size (`decision_log_max_mb`, keeping `decision_log_keep` older files as
//! `FILE.1` (newest) to `FILE.N`). A write that fails (a full disk) is counted and logged, never
//! stops scheduling, and never leaves a partial line: the file is cut back to its last whole line.
//! If the disk cannot keep up, records are dropped and counted rather than queued without end.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::Context;
use serde::Serialize;

use crate::scheduler::DecisionRecord;

/// Records waiting for the writer thread; past it they are dropped (and counted).
const QUEUE: usize = 4096;

/// What the decision log did, counted by its thread.
#[derive(Debug, Default)]
pub struct LogStats {
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    rotations: AtomicU64,
}

/// [`LogStats`] read at one moment, for `/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LogFigures {
    /// Lines written.
    pub written: u64,
    /// Lines lost to failed writes (a full disk).
    pub failed: u64,
    /// Lines dropped because the disk could not keep up.
    pub dropped: u64,
    pub rotations: u64,
}

impl LogStats {
    pub fn figures(&self) -> LogFigures {
        LogFigures {
            written: self.written.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rotations: self.rotations.load(Ordering::Relaxed),
        }
    }
}

pub struct DecisionLog {
    queue: mpsc::SyncSender<Box<DecisionRecord>>,
    pub stats: Arc<LogStats>,
}

/// Where lines go, and when to rotate.
struct Sink {
    path: PathBuf,
    file: File,
    len: u64,
    max_bytes: u64,
    keep: u32,
}

impl DecisionLog {
    /// Opens (appending) or creates the file; fails at start-up, naming the path, when it cannot.
    pub fn open(path: &Path, max_mb: u64, keep: u32) -> anyhow::Result<DecisionLog> {
        let file = open_append(path).with_context(|| format!("cannot open the decision log {}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut sink = Sink { path: path.to_path_buf(), file, len, max_bytes: max_mb.saturating_mul(1 << 20), keep };
        let (queue, rx) = mpsc::sync_channel::<Box<DecisionRecord>>(QUEUE);
        let stats = Arc::new(LogStats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new().name("ebbtide-decision-log".into()).spawn(move || {
            let mut batch = Vec::new();
            let mut lines = 0;
            while let Ok(record) = rx.recv() {
                // Everything queued goes out in one write.
                for record in std::iter::once(record).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    if serde_json::to_writer(&mut batch, &*record).is_ok() {
                        batch.push(b'\n');
                        lines += 1;
                    }
                }
                match sink.append(&batch, &thread_stats) {
                    Ok(()) => thread_stats.written.fetch_add(lines, Ordering::Relaxed),
                    Err(e) => {
                        tracing::error!(
                            "writing the decision log {} failed: {e}; {lines} lines lost",
                            sink.path.display()
                        );
                        thread_stats.failed.fetch_add(lines, Ordering::Relaxed)
                    }
                };
                batch.clear();
                lines = 0;
            }
        })?;
        Ok(DecisionLog { queue, stats })
    }

    pub fn write(&self, record: Box<DecisionRecord>) {
        if self.queue.try_send(record).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Sink {
    /// Appends whole lines, or nothing: a failed write is cut back to the last whole line.
    fn append(&mut self, lines: &[u8], stats: &LogStats) -> std::io::Result<()> {
        if self.max_bytes > 0 && self.len > 0 && self.len + lines.len() as u64 > self.max_bytes {
            match self.rotate() {
                Ok(()) => {
                    stats.rotations.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!("rotating the decision log {} failed: {e}", self.path.display()),
            }
        }
        match self.file.write_all(lines) {
            Ok(()) => {
                self.len += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// `FILE` becomes `FILE.1`, `FILE.1` becomes `FILE.2`, ... and the oldest beyond `keep` goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(path: &Path, max_bytes: u64, keep: u32) -> Sink {
        Sink { path: path.to_path_buf(), file: open_append(path).unwrap(), len: 0, max_bytes, keep }
    }

    #[test]
    fn rotates_by_size_keeping_the_newest_files() {
        let dir = std::env::temp_dir().join(format!("ebbtide-log-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("decisions.jsonl");
        let stats = LogStats::default();
        let mut sink = sink(&path, 100, 2);
        for i in 0..10 {
            // 40 bytes a line: two fit in 100 bytes, the third rotates.
            sink.append(format!("{{\"seq\": {i:>3}, \"pad\": \"{}\"}}\n", "x".repeat(17)).as_bytes(), &stats).unwrap();
        }
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
        assert_eq!(lines(&path), 2, "the live file holds the newest lines");
        assert_eq!(lines(&dir.join("decisions.jsonl.1")), 2);
        assert_eq!(lines(&dir.join("decisions.jsonl.2")), 2);
        assert!(!dir.join("decisions.jsonl.3").exists(), "only `keep` rotated files are kept");
        assert_eq!(stats.figures().rotations, 4);
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"seq\":   9"));
    }

    #[test]
    fn a_failed_write_is_an_error_not_a_panic_and_leaves_no_partial_line() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let mut sink = sink(Path::new("/dev/full"), 0, 0);
        let err = sink.append(b"{\"seq\": 1}\n", &LogStats::default()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(sink.len, 0, "the length stays at the last whole line");
    }
}
