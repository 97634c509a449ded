//! `ebbtide up CONFIG`: the scheduler plus the configured adapters, in one process.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{AdapterSection, FileConfig, parse_capabilities};
use super::scheduler::{Launched, Reload, SchedulerArgs, launch, stop_requested};
use crate::adapter::native::{self, NativeOptions};
use crate::protocol::Address;

/// The adapters started by `up`, stopped together.
pub struct Adapters {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Adapters {
    pub fn start(sections: &[AdapterSection], address: &Address, token: &str) -> anyhow::Result<Adapters> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (i, a) in sections.iter().enumerate() {
            let options = NativeOptions {
                address: address.clone(),
                id: a.id.clone().unwrap_or_else(|| format!("native-{}", i + 1)),
                max_worker_groups: a.max_worker_groups,
                workers_per_group: a.workers_per_group,
                capabilities: a
                    .capabilities
                    .as_deref()
                    .map(parse_capabilities)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                priority: a.priority,
                token: token.to_owned(),
                grace: Duration::from_millis(a.grace_ms),
                worker_command: a.command.clone().unwrap_or_else(native::default_worker_command),
                allow_exec: a.allow_exec,
            };
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let id = options.id.clone();
                if let Err(e) = native::run(options, stopped).await {
                    tracing::error!(adapter = %id, "adapter stopped: {e:#}");
                }
            }));
        }
        Ok(Adapters { stop, tasks })
    }

    /// Stops every adapter, which stops every group it started, and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Reads the file and launches the scheduler and its adapters.
pub async fn bring_up(
    file: &FileConfig,
    settings: super::scheduler::Settings,
    reload: Option<Reload>,
) -> anyhow::Result<(Launched, Adapters)> {
    let token = settings.token.clone().unwrap_or_default();
    let launched = launch(settings, reload).await?;
    let adapters = Adapters::start(&file.adapter, &launched.address, &token)?;
    Ok((launched, adapters))
}

pub fn run(config: &Path, args: SchedulerArgs) -> anyhow::Result<()> {
    let file = FileConfig::read(config)?;
    let settings = args.resolve(&file, config.parent())?;
    super::runtime()?.block_on(async {
        let (_launched, adapters) = bring_up(&file, settings, Some((args.clone(), Some(config.to_path_buf())))).await?;
        stop_requested().await;
        eprintln!("stopping: shutting down every group ...");
        adapters.stop().await;
        Ok(())
    })
}
