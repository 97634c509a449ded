//! A policy that misbehaves on request, for the runtime's containment tests. `{"mode": M}` picks:
//! `ok` (no commands), `loop` (never returns), `grow` (allocates without end), `trap` (panics),
//! `trap-when-busy` (panics only while tasks are pending or running: the dry run's sample snapshots
//! catch it), `trap-when-busy-later` (the same from its second decision on: its first returns a
//! marker state, and the dry run decides the samples with empty state, so it passes and fails live),
//! `huge` (ten million commands), `snoop` (reports what it can see of env, args, files and clocks),
//! `echo` (returns the snapshot it received, as JSON, in its state), `sleep` (sleeps for an hour),
//! `sleep-when-busy-later` (sleeps for an hour while tasks are pending or running, from its second
//! decision on), `sleep-in-validate`
//! (sleeps for an hour while its params are validated).

use ebbtide_sdk::{Command, Decision, ParamReader, ParamSpec, Policy, PolicyInfo, Snapshot};

pub struct Hostile;

const PARAMS: &[ParamSpec] = &[ParamSpec::new(
    "mode",
    "one of ok, loop, grow, trap, trap-when-busy, trap-when-busy-later, huge, snoop, echo, sleep, sleep-when-busy-later, sleep-in-validate",
    "\"ok\"",
    "how to misbehave",
)];
const MODES: &[&str] = &[
    "ok",
    "loop",
    "grow",
    "trap",
    "trap-when-busy",
    "trap-when-busy-later",
    "huge",
    "snoop",
    "echo",
    "sleep",
    "sleep-when-busy-later",
    "sleep-in-validate",
];
/// The state a `-later` mode returns, so that it knows it has decided before.
const LATER_MARK: &[u8] = b"armed";
const AN_HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

impl Policy for Hostile {
    type Params = String;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "hostile".into(),
            version: "0.0.1".into(),
            summary: "misbehaves on request".into(),
            params: vec![],
        }
    }

    fn parse_params(json: &str) -> Result<String, Vec<String>> {
        let mut p = ParamReader::new(PARAMS, json)?;
        let mode = p.choice("mode", MODES);
        if mode == "sleep-in-validate" {
            std::thread::sleep(AN_HOUR);
        }
        p.finish(mode)
    }

    fn decide(mode: &String, snapshot: &Snapshot, state: &[u8]) -> Decision {
        let mut d = Decision::default();
        let busy = snapshot.task_groups.iter().any(|t| t.pending + t.running > 0);
        // The `-later` modes misbehave only once they have decided before, which they mark in state.
        let (mode, armed) = match mode.strip_suffix("-later") {
            Some(base) => {
                d.state = LATER_MARK.to_vec();
                (base, state == LATER_MARK)
            }
            None => (mode.as_str(), true),
        };
        match mode {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile guest panics on purpose"),
            "trap-when-busy" if busy && armed => panic!("hostile guest panics on purpose while there is work"),
            "sleep" => std::thread::sleep(AN_HOUR),
            "sleep-when-busy" if busy && armed => std::thread::sleep(AN_HOUR),
            "huge" => d.commands = (0..10_000_000u64).map(Command::Shutdown).collect(),
            "snoop" => {
                let file = std::fs::read_to_string("/etc/passwd")
                    .map(|s| s.len().to_string())
                    .unwrap_or_else(|e| e.to_string());
                let clock_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let seen = serde_json::json!({
                    "env": std::env::vars().count(),
                    "args": std::env::args().count(),
                    "file": file,
                    "clock_ms": clock_ms as u64,
                    "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
                });
                d.diagnose("seen", seen.to_string());
            }
            "echo" => d.state = serde_json::to_vec(snapshot).unwrap_or_default(),
            _ => {}
        }
        d
    }
}

ebbtide_sdk::export_policy!(Hostile);
