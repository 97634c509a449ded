//! Watching the policy's `.wasm` file. The folder is watched rather than the file, so both an
//! atomic rename onto the path and an in-place rewrite are seen. A rename onto the path, or the
//! writer closing the file, says the new build is whole: the swap is asked for at once. Other
//! changes (a write still going on, a platform that reports neither) are debounced: the swap is
//! asked for once the file has been quiet for [`QUIET`].

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};

use super::swap::{SwapJob, SwapRequest, SwapTrigger, Ticket};
use crate::policy::PolicySource;
use crate::policy::candidate::Origin;

/// How long a file must be quiet before it is loaded: long enough for one write of a component to
/// finish, short next to the 250 ms a swap may take.
const QUIET: Duration = Duration::from_millis(20);

/// A running watch; dropping it stops it.
pub struct FileWatch {
    path: PathBuf,
    _watcher: notify::RecommendedWatcher,
}

impl FileWatch {
    pub fn start(path: PathBuf, jobs: std_mpsc::SyncSender<SwapJob>) -> anyhow::Result<FileWatch> {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let name = path.file_name().map(|n| n.to_owned());
        let (changed, changes) = std_mpsc::channel::<Change>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let is_ours = |p: &PathBuf| p.file_name().map(|n| n.to_owned()) == name;
            if let Some(change) = Change::of(&event, is_ours) {
                let _ = changed.send(change);
            }
        })?;
        watcher.watch(&folder, RecursiveMode::NonRecursive)?;
        let watched = path.clone();
        std::thread::Builder::new().name("ebbtide-watch".into()).spawn(move || debounce(&watched, &changes, &jobs))?;
        tracing::info!("watching {} for new versions of the policy", path.display());
        Ok(FileWatch { path, _watcher: watcher })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What happened to the watched file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// A new build is whole: renamed onto the path, or closed by the process that wrote it.
    Complete,
    /// Something changed, and more may follow.
    Partial,
}

impl Change {
    /// The change `event` makes to the watched file (`is_ours` tells its path), if any.
    fn of(event: &notify::Event, is_ours: impl Fn(&PathBuf) -> bool) -> Option<Change> {
        match event.kind {
            // A rename names its destination last (`Both` carries the source first).
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                event.paths.last().filter(|p| is_ours(p)).map(|_| Change::Complete)
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                event.paths.iter().any(&is_ours).then_some(Change::Complete)
            }
            EventKind::Access(_) => None,
            _ => event.paths.iter().any(&is_ours).then_some(Change::Partial),
        }
    }
}

/// Waits for a change, then for the build to be whole (or quiet), then asks for a swap. Ends when
/// the watcher is dropped.
fn debounce(path: &Path, changes: &std_mpsc::Receiver<Change>, jobs: &std_mpsc::SyncSender<SwapJob>) {
    while let Ok(mut change) = changes.recv() {
        let first = Instant::now();
        while change == Change::Partial {
            change = match changes.recv_timeout(QUIET) {
                Ok(next) => next,
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            };
        }
        // Events of the same write that were already queued add nothing.
        while changes.try_recv().is_ok() {}
        let Some(seen) = stamp(path) else { continue }; // Removed: wait for it to come back.
        let origin = Some(Origin::Source(PolicySource::File(path.to_path_buf())));
        let request = SwapRequest { trigger: SwapTrigger::File, origin, params: None, limits: None };
        let ticket = Ticket { trigger: SwapTrigger::File, started: first, reply: None };
        if jobs.send(SwapJob { request, ticket, seen: Some(seen) }).is_err() {
            return;
        }
    }
}

/// The file's length and modification time, or `None` when it is not there.
pub fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RenameMode};

    use super::*;

    fn change(kind: EventKind, paths: &[&str]) -> Option<Change> {
        let mut event = notify::Event::new(kind);
        for p in paths {
            event = event.add_path(PathBuf::from(p));
        }
        Change::of(&event, |p| p.file_name().is_some_and(|n| n == "policy.wasm"))
    }

    #[test]
    fn a_rename_onto_the_file_or_its_writer_closing_it_is_a_whole_build() {
        let renamed_to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(change(renamed_to, &["/d/policy.wasm"]), Some(Change::Complete));
        assert_eq!(change(renamed, &["/d/policy.tmp", "/d/policy.wasm"]), Some(Change::Complete));
        assert_eq!(change(closed, &["/d/policy.wasm"]), Some(Change::Complete));
    }

    #[test]
    fn writes_still_going_on_wait_and_other_files_and_reads_are_ignored() {
        let written = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let created = EventKind::Create(CreateKind::File);
        assert_eq!(change(written, &["/d/policy.wasm"]), Some(Change::Partial));
        assert_eq!(change(created, &["/d/policy.wasm"]), Some(Change::Partial));
        assert_eq!(change(written, &["/d/other.wasm"]), None);
        // Moved away: the source is ours, the destination is not.
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(change(renamed, &["/d/policy.wasm", "/d/old.wasm"]), None);
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert_eq!(change(read, &["/d/policy.wasm"]), None);
    }
}
