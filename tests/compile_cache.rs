//! The on-disk compile cache end to end: the real binary, restarted, with its cache folder damaged
//! between runs. Every scheduler here gets its own cache folder under target/test-tmp.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{Proc, decisions, http_get, wait_for};
use ebbtide::policy::{builtin, component};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn vanilla() -> Vec<u8> {
    builtin::find("vanilla").expect("a built-in").component.to_vec()
}

/// A build of vanilla no earlier test run has compiled (the digest names the process).
fn build(name: &str) -> Vec<u8> {
    common::tagged(&vanilla(), &format!("compile-cache {name} {}", std::process::id()))
}

/// A scheduler deciding every 50 ms with the policy file `dir/policy.wasm`, the cache in `cache`.
struct Scheduler {
    proc: Proc,
    admin: String,
    log: PathBuf,
    /// A worker, so that the tick runs (an empty scheduler sets no timer and does not decide).
    _worker: Proc,
}

impl Scheduler {
    fn start(dir: &Path, name: &str, cache: &Path, limits: &[&str]) -> Scheduler {
        let log = dir.join(format!("{name}.jsonl"));
        let policy = format!("scaling={}", dir.join("policy.wasm").display());
        let mut args = vec![
            "scheduler",
            "tcp://127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--policy-content",
            policy.as_str(),
            "--tick-ms",
            "50",
            "--decision-log",
            log.to_str().unwrap(),
            "--compile-cache-dir",
            cache.to_str().unwrap(),
        ];
        for limit in limits {
            args.extend(["--limit", *limit]);
        }
        let mut proc = Proc::start(dir, name, &args);
        let (address, admin) = proc.listening();
        let _worker = Proc::start(dir, &format!("{name}-worker"), &["worker", &address]);
        Scheduler { proc, admin: admin.expect("admin address"), log, _worker }
    }

    /// Waits until a decision was made by the build `bytes`.
    fn decides_with(&self, bytes: &[u8]) {
        let digest = component::digest(bytes);
        wait_for(&format!("a decision by {}", &digest[..12]), Duration::from_secs(20), || {
            decisions(&self.log).iter().any(|d| d["policy_digest"] == digest.as_str())
        });
    }

    /// The value of one sample of `/metrics`, e.g. `ebbtide_tiered_swaps_total{stage="baseline"}`.
    fn sample(&self, sample: &str) -> u64 {
        let (code, body) = http_get(&self.admin, "/metrics", None);
        assert_eq!(code, 200, "{body}");
        let line = body.lines().find_map(|l| l.strip_prefix(sample)).unwrap_or_else(|| panic!("no {sample} in {body}"));
        line.trim().parse().expect("a count")
    }

    /// `ebbtide_compile_cache_total{outcome="OUTCOME"}`.
    fn cache_total(&self, outcome: &str) -> u64 {
        self.sample(&format!("ebbtide_compile_cache_total{{outcome=\"{outcome}\"}}"))
    }

    /// Whether the log says `bytes` was loaded from the cache rather than compiled.
    fn loaded_from_disk(&self, bytes: &[u8]) -> bool {
        let digest = component::digest(bytes);
        self.proc.stderr().contains(&format!("compile cache: {} loaded from", &digest[..12]))
    }
}

/// Writes the watched policy file whole (a rename), as a build tool would.
fn write_policy(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join("policy.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("policy.wasm")).unwrap();
}

/// The `.cwasm` and `.check` files of `bytes`' entry, when present.
fn entry(cache: &Path, bytes: &[u8]) -> Option<(PathBuf, PathBuf)> {
    let digest = component::digest(bytes);
    let files: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&digest))
        .collect();
    let find = |ext: &str| files.iter().find(|p| p.extension().is_some_and(|e| e == ext)).cloned();
    Some((find("cwasm")?, find("check")?))
}

/// The entry of `bytes` exists and its `.cwasm` has the length and sha256 its header records.
fn entry_is_sound(cache: &Path, bytes: &[u8]) -> bool {
    let Some((cwasm, check)) = entry(cache, bytes) else { return false };
    let header: Value = serde_json::from_slice(&std::fs::read(check).unwrap()).unwrap();
    let artifact = std::fs::read(cwasm).unwrap();
    header["bytes"] == artifact.len() as u64 && header["sha256"] == hex::encode(Sha256::digest(&artifact)).as_str()
}

/// Waits for the entry of `bytes` to be written: a swapped-in build first decides from its baseline
/// build, and its optimized build, the one cached, follows.
fn wait_for_entry(cache: &Path, bytes: &[u8]) {
    wait_for("the optimized build's cache entry", Duration::from_secs(30), || entry_is_sound(cache, bytes));
}

fn cache_bytes(cache: &Path) -> u64 {
    std::fs::read_dir(cache).unwrap().flatten().map(|f| f.metadata().unwrap().len()).sum()
}

/// A build swapped in once is, after a restart, loaded from disk instead of compiled: at start-up
/// and on a swap, for the policy and for the built-in fallback alike.
#[test]
fn a_build_seen_before_is_loaded_from_disk_after_a_restart() {
    let dir = common::temp_dir("compile-cache-restart");
    let cache = dir.join("cache");
    let (a, b) = (build("a"), build("b"));
    write_policy(&dir, &a);
    let first = Scheduler::start(&dir, "first", &cache, &[]);
    first.decides_with(&a);
    write_policy(&dir, &b);
    first.decides_with(&b);
    wait_for_entry(&cache, &b);
    assert!(!first.loaded_from_disk(&a) && !first.loaded_from_disk(&b), "new builds are compiled");
    assert!(first.cache_total("miss") >= 2, "both builds were compiled");
    assert!(entry_is_sound(&cache, &a), "the start-up build was written to {cache:?}");
    drop(first);

    write_policy(&dir, &a);
    let second = Scheduler::start(&dir, "second", &cache, &[]);
    second.decides_with(&a);
    write_policy(&dir, &b);
    second.decides_with(&b);
    assert!(second.loaded_from_disk(&a), "start-up loads from disk: {}", second.proc.stderr());
    assert!(second.loaded_from_disk(&b), "the swap loads from disk: {}", second.proc.stderr());
    assert_eq!(second.cache_total("miss"), 0, "nothing was compiled after the restart");
    assert!(second.cache_total("disk_hit") >= 2);
}

/// A damaged entry (bytes flipped, truncated, another component's, another engine's) is never
/// used: the policy is compiled again, decides, and the entry is rewritten whole.
#[test]
fn a_corrupt_truncated_or_foreign_entry_is_ignored_and_replaced() {
    let dir = common::temp_dir("compile-cache-corrupt");
    let cache = dir.join("cache");
    let (a, other) = (build("a"), build("other"));
    write_policy(&dir, &other);
    let seed = Scheduler::start(&dir, "seed", &cache, &[]);
    seed.decides_with(&other);
    write_policy(&dir, &a);
    seed.decides_with(&a);
    wait_for_entry(&cache, &a);
    drop(seed);
    let (cwasm, check) = entry(&cache, &a).expect("a's entry");
    let (other_cwasm, other_check) = entry(&cache, &other).expect("the other build's entry");

    type Damage<'a> = Box<dyn Fn() + 'a>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "flipped bytes",
            Box::new(|| {
                let mut bytes = std::fs::read(&cwasm).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0xff);
                std::fs::write(&cwasm, bytes).unwrap();
            }),
        ),
        (
            "truncated",
            Box::new(|| {
                let file = std::fs::File::options().write(true).open(&cwasm).unwrap();
                file.set_len(file.metadata().unwrap().len() / 3).unwrap();
            }),
        ),
        (
            "another component's entry",
            Box::new(|| {
                std::fs::copy(&other_cwasm, &cwasm).unwrap();
                std::fs::copy(&other_check, &check).unwrap();
            }),
        ),
        (
            "another engine's entry",
            Box::new(|| {
                let mut header: Value = serde_json::from_slice(&std::fs::read(&check).unwrap()).unwrap();
                header["engine"] = "0".repeat(32).into();
                std::fs::write(&check, header.to_string()).unwrap();
            }),
        ),
        ("not an entry at all", Box::new(|| std::fs::write(&cwasm, b"\x7fELF and then nothing useful").unwrap())),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        damage();
        let run = Scheduler::start(&dir, &format!("damaged-{i}"), &cache, &[]);
        run.decides_with(&a);
        let stderr = run.proc.stderr();
        assert!(!run.loaded_from_disk(&a), "{what}: the damaged entry was used: {stderr}");
        assert!(stderr.contains("compile cache: ignoring"), "{what}: the log says the entry was ignored: {stderr}");
        assert_eq!(run.cache_total("invalid"), 1, "{what}");
        assert!(entry_is_sound(&cache, &a), "{what}: the entry was rewritten whole");
    }
    let repaired = Scheduler::start(&dir, "repaired", &cache, &[]);
    repaired.decides_with(&a);
    assert!(repaired.loaded_from_disk(&a), "the rewritten entry serves: {}", repaired.proc.stderr());
    assert_eq!(repaired.cache_total("invalid"), 0);
}

/// Past `compile_cache_mb` the least recently used entries go, and the newest stays.
#[test]
fn the_cache_stays_within_its_bound_by_evicting_the_oldest_entries() {
    let dir = common::temp_dir("compile-cache-bound");
    let cache = dir.join("cache");
    let builds: Vec<Vec<u8>> = (0..6).map(|i| build(&format!("bounded {i}"))).collect();
    // One entry's size, to set a bound that holds about two and a half of them.
    write_policy(&dir, &builds[0]);
    let probe = Scheduler::start(&dir, "probe", &cache, &[]);
    probe.decides_with(&builds[0]);
    drop(probe);
    let (cwasm, check) = entry(&cache, &builds[0]).expect("the first build's entry");
    let one = std::fs::metadata(cwasm).unwrap().len() + std::fs::metadata(check).unwrap().len();
    let bound_mb = (one * 5 / 2).div_ceil(1 << 20);
    let limit = format!("compile_cache_mb={bound_mb}");

    let run = Scheduler::start(&dir, "bounded", &cache, &[&limit]);
    run.decides_with(&builds[0]);
    for bytes in &builds[1..] {
        // Distinct modification times, so the order of use is the order of the builds.
        std::thread::sleep(Duration::from_millis(20));
        write_policy(&dir, bytes);
        run.decides_with(bytes);
        wait_for_entry(&cache, bytes);
    }
    // The last entry is written before the eviction it triggers runs.
    let bound = format!("the cache within {bound_mb} MiB (it holds {} bytes)", cache_bytes(&cache));
    wait_for(&bound, Duration::from_secs(10), || cache_bytes(&cache) <= bound_mb << 20);
    assert!(run.cache_total("evicted") >= 1, "entries were evicted");
    assert!(entry(&cache, &builds[0]).is_none(), "the oldest build was evicted");
    assert!(entry_is_sound(&cache, &builds[5]), "the newest build is kept");
}

/// `compile_cache_mb=0` turns the disk cache off: nothing is written.
#[test]
fn a_zero_bound_turns_the_disk_cache_off() {
    let dir = common::temp_dir("compile-cache-off");
    let cache = dir.join("cache");
    let a = build("off");
    write_policy(&dir, &a);
    let run = Scheduler::start(&dir, "off", &cache, &["compile_cache_mb=0"]);
    run.decides_with(&a);
    assert!(run.proc.stderr().contains("compile cache: off"), "{}", run.proc.stderr());
    assert!(!cache.exists() || cache_bytes(&cache) == 0, "nothing was written to {cache:?}");
}

/// A new build decides first from its baseline (Winch) build, then its optimized (Cranelift) build
/// takes over between two decisions, under the same digest; a build seen before skips the baseline.
#[test]
fn a_new_build_decides_from_its_baseline_build_until_the_optimized_one_takes_over() {
    let dir = common::temp_dir("compile-cache-tiered");
    let cache = dir.join("cache");
    let (a, b) = (build("tiered a"), build("tiered b"));
    write_policy(&dir, &a);
    let run = Scheduler::start(&dir, "tiered", &cache, &[]);
    run.decides_with(&a);
    let tiered = |stage: &str| run.sample(&format!("ebbtide_tiered_swaps_total{{stage=\"{stage}\"}}"));
    assert_eq!(tiered("baseline"), 0, "start-up compiles with Cranelift");

    write_policy(&dir, &b);
    run.decides_with(&b);
    let b12 = &component::digest(&b)[..12];
    wait_for("the optimized build to take over", Duration::from_secs(30), || tiered("optimized") == 1);
    let stderr = run.proc.stderr();
    let baseline = stderr.find(&format!("swap: {b12} decides with its baseline (Winch) build"));
    let optimized = stderr.find(&format!("{b12} now decides with its optimized (Cranelift) build"));
    assert!(baseline.is_some() && optimized > baseline, "baseline first, then optimized: {stderr}");
    assert_eq!(tiered("baseline"), 1);
    // Decisions go on, by the same build, after the takeover.
    let decided = decisions(&run.log).len();
    wait_for("decisions after the takeover", Duration::from_secs(10), || decisions(&run.log).len() > decided + 2);
    let last = decisions(&run.log).pop().unwrap();
    assert_eq!(last["policy_digest"], component::digest(&b).as_str());

    // Back to a: compiled already, so no baseline build.
    write_policy(&dir, &a);
    wait_for("a to decide again", Duration::from_secs(20), || {
        decisions(&run.log).last().is_some_and(|d| d["policy_digest"] == component::digest(&a).as_str())
    });
    assert_eq!(tiered("baseline"), 1, "a build seen before is not compiled again");
}
