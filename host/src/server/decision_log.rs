//! `--decision-log FILE`: one JSON line per decision, written by its own thread so the event loop
//! never waits on the disk.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use anyhow::Context;

use crate::scheduler::DecisionRecord;

pub struct DecisionLog(mpsc::Sender<Box<DecisionRecord>>);

impl DecisionLog {
    /// Opens (appending) or creates the file; fails at start-up, naming the path, when it cannot.
    pub fn open(path: &Path) -> anyhow::Result<DecisionLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the decision log {}", path.display()))?;
        let (tx, rx) = mpsc::channel::<Box<DecisionRecord>>();
        let path = path.to_path_buf();
        std::thread::Builder::new().name("ebbtide-decision-log".into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(record) = rx.recv() {
                let mut write = |r: &DecisionRecord| -> std::io::Result<()> {
                    serde_json::to_writer(&mut out, r)?;
                    out.write_all(b"\n")
                };
                let mut result = write(&record);
                // Write what else is queued before flushing once.
                while let (Ok(()), Ok(more)) = (&result, rx.try_recv()) {
                    result = write(&more);
                }
                if let Err(e) = result.and_then(|_| out.flush()) {
                    tracing::error!("writing the decision log {} failed: {e}", path.display());
                }
            }
        })?;
        Ok(DecisionLog(tx))
    }

    pub fn write(&self, record: Box<DecisionRecord>) {
        let _ = self.0.send(record);
    }
}
