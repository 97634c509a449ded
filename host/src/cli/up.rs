//! `ebbtide up CONFIG`: the scheduler plus the configured adapters, in one process.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{AdapterSection, FileConfig, parse_capabilities};
use super::scheduler::{Launched, Reload, SchedulerArgs, launch, stop_requested};
use crate::adapter::AdapterOptions;
use crate::adapter::native;
use crate::adapter::slurm::{self, SlurmOptions};
use crate::protocol::Address;
use crate::scheduler::Tokens;

type AdapterRun = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The adapters started by `up`, stopped together.
pub struct Adapters {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Adapters {
    /// Starts every adapter. Slurm adapters first check Slurm (tools, controller, jobs left behind),
    /// so a missing `sbatch` or an unreachable controller stops `up` with that message. `tokens`: the
    /// scheduler's, so in-process adapters and their workers present the right ones.
    pub async fn start(sections: &[AdapterSection], address: &Address, tokens: &Tokens) -> anyhow::Result<Adapters> {
        let token = tokens.adapter.clone().unwrap_or_default();
        let worker_token = tokens.worker.clone().unwrap_or_default();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (i, a) in sections.iter().enumerate() {
            let id = a.id.clone().unwrap_or_else(|| format!("{}-{}", a.kind, i + 1));
            let capabilities =
                a.capabilities.as_deref().map(parse_capabilities).transpose().map_err(anyhow::Error::msg)?;
            let stopped = stopped.clone();
            let adapter = AdapterOptions {
                address: address.clone(),
                id: id.clone(),
                max_worker_groups: a.max_worker_groups,
                workers_per_group: a.workers_per_group,
                capabilities,
                priority: a.priority,
                token: token.clone(),
                worker_token: worker_token.clone(),
                grace: Duration::from_millis(a.grace_ms),
                worker_command: a.command.clone().unwrap_or_else(crate::adapter::default_worker_command),
                allow_exec: a.allow_exec,
            };
            let run = match a.kind.as_str() {
                "slurm" => {
                    let options = SlurmOptions { adapter, slurm: a.slurm.clone().unwrap_or_default() };
                    let client = slurm::prepare(&options).await.with_context(|| format!("adapter {id}"))?;
                    Box::pin(slurm::serve(options, client, stopped)) as AdapterRun
                }
                _ => Box::pin(native::run(adapter, stopped)),
            };
            println!("  {}", describe_adapter(&id, a));
            tasks.push(tokio::spawn(async move {
                if let Err(e) = run.await {
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

/// The start-up line of one adapter: what it is and its limits.
fn describe_adapter(id: &str, a: &AdapterSection) -> String {
    let groups = match a.max_worker_groups {
        0 => "any number of groups".to_owned(),
        n => format!("up to {n} groups"),
    };
    let capabilities = a.capabilities.as_deref().unwrap_or("any");
    format!(
        "adapter {id}: {}, {groups} of {} workers, capabilities {capabilities}, priority {}",
        a.kind, a.workers_per_group, a.priority
    )
}

/// Reads the file and launches the scheduler and its adapters.
pub async fn bring_up(
    file: &FileConfig,
    ready: super::scheduler::Ready,
    reload: Option<Reload>,
) -> anyhow::Result<(Launched, Adapters)> {
    let tokens = ready.tokens().clone();
    let launched = launch(ready, reload).await?;
    let adapters = Adapters::start(&file.adapter, &launched.address, &tokens).await?;
    Ok((launched, adapters))
}

pub fn run(config: &Path, args: SchedulerArgs) -> anyhow::Result<()> {
    let file = FileConfig::read(config)?;
    let ready = args.resolve(&file, config.parent())?.load()?;
    super::runtime()?.block_on(async {
        let (_launched, adapters) = bring_up(&file, ready, Some((args.clone(), Some(config.to_path_buf())))).await?;
        stop_requested().await;
        eprintln!("stopping: shutting down every group ...");
        adapters.stop().await;
        Ok(())
    })
}
