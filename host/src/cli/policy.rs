//! `ebbtide policy ...`: the authoring tools (docs/authoring.md).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ebbtide_sdk::vectors;

use super::Outcome;
use crate::policy::{CallLimits, PolicySource, bench, builtin, candidate, sample};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// List the built-in policies with version and summary.
    #[command(after_help = "Example:\n  ebbtide policy list")]
    List,

    /// Show what a policy is: describe(), world and version, imports, size and sha256.
    #[command(
        after_help = "Examples:\n  ebbtide policy inspect vanilla\n  ebbtide policy inspect ./my_policy.wasm --json"
    )]
    Inspect {
        /// A built-in name or a path to a .wasm component.
        policy: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Load a policy as a swap does: compile, check the world, validate the params, then decide on an
    /// empty snapshot and on the small and large sample snapshots (pending and running work, starting
    /// and draining groups), each within the limits. Exits 0 only if a swap would accept it; a swap
    /// decides the scheduler's last snapshot instead of the empty one.
    #[command(
        after_help = "Examples:\n  ebbtide policy check vanilla --params '{\"upper_task_ratio\": 10}'\n  ebbtide policy check ./my_policy.wasm --deadline-ms 50"
    )]
    Check {
        /// A built-in name or a path to a .wasm component.
        policy: String,
        /// Params as a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
        #[command(flatten)]
        limits: LimitArgs,
    },

    /// Run test-vector files (tests/vectors/FORMAT.md) through the WebAssembly runtime.
    #[command(
        after_help = "Examples:\n  ebbtide policy test tests/vectors/*.json\n  ebbtide policy test --policy ./v.wasm tests/vectors/vanilla.json\n\nEach failing step prints one line; the last line is `N passed, M failed`."
    )]
    Test {
        /// Vector files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Test this policy instead of the built-in each file names.
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },

    /// Measure decision latency with a fresh and a reused instance (and, for built-ins, native Rust).
    #[command(
        after_help = "Examples:\n  ebbtide policy bench vanilla --size large\n  ebbtide policy bench ./my_policy.wasm --json"
    )]
    Bench {
        /// A built-in name or a path to a .wasm component.
        policy: String,
        /// The sample snapshot: small, or large (100 task groups, 1,000 worker groups).
        #[arg(long, value_enum, default_value = "small")]
        size: sample::Size,
        /// Measured decisions per variant (after a warm-up of a tenth as many).
        #[arg(long, default_value_t = 1000)]
        iterations: usize,
        /// Params as a JSON object (default: params that make the built-ins do real work).
        #[arg(long)]
        params: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Swap a running scheduler's policy: it goes through every stage of the pipeline (compile, world,
    /// describe, validate, a dry-run decision) and replaces the active one only if all pass. Exits 1 on
    /// rejection, naming the stage.
    #[command(
        after_help = "Examples:\n  ebbtide policy swap --admin 127.0.0.1:8517 capability\n  ebbtide policy swap --admin 127.0.0.1:8517 ./my_policy.wasm --params '{\"target\": 4}'\n  ebbtide policy swap --admin 10.0.0.5:8517 ./my_policy.wasm --upload --token s3cret"
    )]
    Swap(super::swap::SwapArgs),

    /// Start a policy project in Rust, Python, JavaScript or C: it builds with its build.sh, passes its
    /// starter vectors and is accepted by `policy check` as generated.
    #[command(
        after_help = "Examples:\n  ebbtide policy new my_policy --lang python\n  ebbtide policy new gpu_pool --lang rust --dir ~/src/gpu_pool\n\nThe starter is the queue_depth example (docs/authoring.md), renamed; edit it from there."
    )]
    New(super::new::NewArgs),

    /// Write a built-in's component to a file: a starting point for hot-swap tests.
    #[command(after_help = "Example:\n  ebbtide policy export vanilla -o vanilla.wasm")]
    Export {
        /// A built-in name.
        name: String,
        /// Where to write the .wasm file.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Per-call limits, as the scheduler's `[scaling.limits]`.
#[derive(Args)]
pub struct LimitArgs {
    /// Wall-clock deadline per call, in milliseconds.
    #[arg(long, default_value_t = CallLimits::default().deadline_ms)]
    deadline_ms: u64,
    /// Memory cap per instance, in MiB.
    #[arg(long, default_value_t = CallLimits::default().memory_mib)]
    memory_mib: u64,
    /// Fuel (instruction) budget per call; none by default.
    #[arg(long)]
    fuel: Option<u64>,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<CallLimits> {
        let limits = CallLimits { deadline_ms: self.deadline_ms, memory_mib: self.memory_mib, fuel: self.fuel };
        limits.validate().map_err(anyhow::Error::msg)?;
        Ok(limits)
    }
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<Outcome> {
    match cmd {
        PolicyCommand::List => list(),
        PolicyCommand::Inspect { policy, json } => inspect(&policy, json),
        PolicyCommand::Check { policy, params, limits } => check(&policy, &params, limits.limits()?),
        PolicyCommand::Test { files, policy, limits } => test(&files, policy.as_deref(), limits.limits()?),
        PolicyCommand::Bench { policy, size, iterations, params, json } => {
            run_bench(&policy, size, iterations, params.as_deref(), json)
        }
        PolicyCommand::Export { name, output } => export(&name, &output),
        PolicyCommand::Swap(args) => super::swap::run(args),
        PolicyCommand::New(args) => super::new::run(args),
    }
}

fn list() -> anyhow::Result<Outcome> {
    for b in builtin::all() {
        let info = (b.info)();
        println!("{:<16} {:<8} {}", info.name, info.version, info.summary);
    }
    Ok(Outcome::Success)
}

fn inspect(spec: &str, json: bool) -> anyhow::Result<Outcome> {
    let source = PolicySource::parse(spec, None)?;
    let policy = source.load(CallLimits::default())?;
    if json {
        let value = serde_json::json!({
            "source": source.to_string(),
            "info": policy.info,
            "world": crate::policy::bindings::WORLD,
            "imports": policy.imports,
            "exports": policy.exports,
            "size": policy.size,
            "sha256": policy.digest,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(Outcome::Success);
    }
    let info = &policy.info;
    println!("name:     {}", info.name);
    println!("version:  {}", info.version);
    println!("summary:  {}", info.summary);
    println!("source:   {source}");
    println!("world:    {}", crate::policy::bindings::WORLD);
    println!("size:     {} bytes", policy.size);
    println!("sha256:   {}", policy.digest);
    println!("imports:");
    for import in &policy.imports {
        println!("  {import}");
    }
    println!("exports:");
    for export in &policy.exports {
        println!("  {export}");
    }
    if info.params.is_empty() {
        println!("params:   none");
    } else {
        println!("params:");
        for p in &info.params {
            println!("  {:<28} {} (default {})\n  {:<28} {}", p.name, p.kind, p.default, "", p.doc);
        }
    }
    Ok(Outcome::Success)
}

fn check(spec: &str, params: &str, limits: CallLimits) -> anyhow::Result<Outcome> {
    let source = PolicySource::parse(spec, None)?;
    let policy = match source.load(limits) {
        Ok(p) => p,
        Err(e) => {
            println!("rejected at load: {e}");
            return Ok(Outcome::Failed);
        }
    };
    println!("loaded    {} {} ({}, sha256 {})", policy.info.name, policy.info.version, source, &policy.digest[..16]);
    match policy.validate(params) {
        Ok(Ok(())) => println!("validate  params accepted: {params}"),
        Ok(Err(errors)) => {
            println!("rejected at validate: the policy does not accept these params:");
            for e in errors {
                println!("  {e}");
            }
            return Ok(Outcome::Failed);
        }
        Err(e) => {
            println!("rejected at validate: {e}");
            return Ok(Outcome::Failed);
        }
    }
    let shown = |name: &str, d: &ebbtide_sdk::Decision| {
        println!(
            "decide    {name}: {} commands, {} diagnostics, {} state bytes",
            d.commands.len(),
            d.diagnostics.len(),
            d.state.len()
        )
    };
    if let Err(rejection) = candidate::dry_run(&policy, params, None, shown) {
        println!("{rejection}");
        return Ok(Outcome::Failed);
    }
    println!("accepted");
    Ok(Outcome::Success)
}

fn test(files: &[PathBuf], policy: Option<&str>, limits: CallLimits) -> anyhow::Result<Outcome> {
    let chosen = policy.map(|p| PolicySource::parse(p, None)).transpose()?;
    let chosen = chosen.map(|s| s.load(limits)).transpose()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in files {
        let file = vectors::load(path).map_err(anyhow::Error::msg)?;
        let policy = match &chosen {
            Some(p) => p.clone(),
            None => PolicySource::parse(&file.policy, None)
                .with_context(|| format!("{}: names policy {:?}", path.display(), file.policy))?
                .load(limits)?,
        };
        let outcomes = vectors::run(&file, |params, snapshot, state| {
            policy.decide(params, snapshot, state).map_err(|e| e.to_string())
        });
        for o in &outcomes {
            if o.passed() {
                passed += 1;
            } else {
                failed += 1;
                println!("{}", o.describe(&path.display().to_string()));
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 { Outcome::Success } else { Outcome::Failed })
}

fn run_bench(
    spec: &str,
    size: sample::Size,
    iterations: usize,
    params: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    if iterations == 0 {
        bail!("--iterations: expected at least 1, got 0");
    }
    let source = PolicySource::parse(spec, None)?;
    let started = std::time::Instant::now();
    let policy = source.load(CallLimits::default())?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let builtin = source.builtin();
    let params = params.unwrap_or_else(|| sample::params(&policy.info.name));
    let snapshot = sample::snapshot(size);
    let report = bench::run(policy, compile_ms, builtin.map(|b| b.native), params, &snapshot, iterations)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(Outcome::Success);
    }
    println!("{} ({}), {size:?} snapshot, {} decisions each:", report.policy, &report.digest[..16], iterations);
    println!(
        "  component {} KB, loaded (compile, checks, describe) in {:.0} ms, instantiates in {} us ({})",
        report.size_bytes / 1000,
        report.compile_ms,
        report.instantiate_us,
        if report.reuses_instance { "the scheduler keeps one instance" } else { "a fresh instance per decision" }
    );
    println!("  fresh instance   median {:>9.1} us   p99 {:>9.1} us", report.fresh_median_us, report.fresh_p99_us);
    println!("  reused instance  median {:>9.1} us   p99 {:>9.1} us", report.reused_median_us, report.reused_p99_us);
    if let (Some(native), Some(overhead)) = (report.native_median_us, report.overhead_us) {
        println!("  native Rust      median {native:>9.1} us");
        println!("  crossing overhead (reused - native): {overhead:.1} us");
    }
    Ok(Outcome::Success)
}

fn export(name: &str, output: &PathBuf) -> anyhow::Result<Outcome> {
    let Some(b) = builtin::find(name) else {
        bail!("unknown built-in {name:?}: expected one of {}", builtin::names());
    };
    std::fs::write(output, b.component).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "wrote {} ({} bytes, sha256 {})",
        output.display(),
        b.component.len(),
        crate::policy::component::digest(b.component)
    );
    Ok(Outcome::Success)
}
