//! The simulated fleet: adapters as in the configuration file, plus how long a start takes and what
//! a worker costs.

use ebbtide_sdk::CapMap;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::fleet_config::{AdapterSection, parse_capabilities};

/// How long an adapter takes from a start command to the group's workers connected.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Latency {
    Fixed(u64),
    /// Uniform between the bounds, drawn from the run's seed.
    Uniform(u64, u64),
}

impl Latency {
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> u64 {
        match *self {
            Latency::Fixed(ms) => ms,
            Latency::Uniform(lo, hi) => rng.random_range(lo..=hi),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterModel {
    pub id: String,
    pub max_worker_groups: u32,
    pub workers_per_group: u32,
    /// `None`: any capability set.
    pub capabilities: Option<CapMap>,
    pub priority: i32,
    pub start_latency: Latency,
    /// Cost of one worker for one second.
    pub cost_per_worker_second: f64,
}

pub const ADAPTER_SPEC_HELP: &str =
    "ID [max_groups=N] [workers=N] [capabilities=gpu=1;linux] [priority=N] [latency=MS|LO..HI] [cost=X]";

impl AdapterModel {
    fn new(id: &str) -> Self {
        AdapterModel {
            id: id.to_owned(),
            max_worker_groups: 8,
            workers_per_group: 1,
            capabilities: None,
            priority: 0,
            start_latency: Latency::Uniform(1_000, 3_000),
            cost_per_worker_second: 1.0,
        }
    }

    /// `--adapter 'gpu max_groups=4 workers=1 capabilities=gpu=1 latency=2000..5000 cost=4'`.
    pub fn parse(spec: &str) -> Result<AdapterModel, String> {
        let mut words = spec.split_whitespace();
        let id = words
            .next()
            .filter(|w| !w.contains('='))
            .ok_or_else(|| format!("--adapter {spec:?}: expected {ADAPTER_SPEC_HELP}"))?;
        let mut a = AdapterModel::new(id);
        for word in words {
            let (key, value) = word.split_once('=').ok_or_else(|| {
                format!("--adapter {spec:?}: {word:?} is not key=value; expected {ADAPTER_SPEC_HELP}")
            })?;
            let number = |v: &str| {
                v.parse::<u64>().map_err(|_| format!("--adapter {spec:?}: {key} must be a whole number, got {v:?}"))
            };
            match key {
                "max_groups" => a.max_worker_groups = number(value)? as u32,
                "workers" => a.workers_per_group = number(value)?.max(1) as u32,
                "capabilities" => a.capabilities = Some(parse_capabilities(&value.replace(';', ","))?),
                "priority" => {
                    a.priority =
                        value.parse().map_err(|_| format!("--adapter {spec:?}: priority must be an integer"))?
                }
                "latency" => {
                    a.start_latency = match value.split_once("..") {
                        Some((lo, hi)) => Latency::Uniform(number(lo)?, number(hi)?.max(number(lo)?)),
                        None => Latency::Fixed(number(value)?),
                    }
                }
                "cost" => {
                    a.cost_per_worker_second = value
                        .parse::<f64>()
                        .ok()
                        .filter(|c| *c >= 0.0)
                        .ok_or_else(|| format!("--adapter {spec:?}: cost must be a number >= 0, got {value:?}"))?
                }
                other => {
                    return Err(format!(
                        "--adapter {spec:?}: unknown key {other:?}; accepted: max_groups, workers, capabilities, priority, latency, cost"
                    ));
                }
            }
        }
        Ok(a)
    }

    /// An `[[adapter]]` of a real configuration, with the default latency and cost.
    pub fn from_config(section: &AdapterSection, index: usize) -> Result<AdapterModel, String> {
        let id = section.id.clone().unwrap_or_else(|| format!("{}-{}", section.kind, index + 1));
        let mut a = AdapterModel::new(&id);
        a.max_worker_groups = section.max_worker_groups;
        a.workers_per_group = section.workers_per_group;
        a.capabilities = section.capabilities.as_deref().map(parse_capabilities).transpose()?;
        a.priority = section.priority;
        Ok(a)
    }

    /// The fleet a built-in workload is shaped for.
    pub fn defaults_for(workload: &str) -> Vec<AdapterModel> {
        let parse = |s: &str| AdapterModel::parse(s).expect("built-in adapter specs parse");
        match workload {
            "mixed-capabilities" => vec![
                parse("cpu max_groups=16 workers=2 capabilities= latency=1000..3000 cost=1"),
                parse("gpu max_groups=4 workers=1 capabilities=gpu=1 latency=5000..15000 cost=8"),
            ],
            "prefill-decode" => vec![parse("pool max_groups=24 workers=1 latency=2000..6000 cost=2")],
            _ => vec![parse("pool max_groups=16 workers=2 capabilities= latency=1000..3000 cost=1")],
        }
    }
}
