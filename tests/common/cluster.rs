//! Running the real `ebbtide` binary in tests: processes that are killed when dropped, the
//! addresses they print, and the admin endpoints over plain HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary this build made; benchmarks may name another build in `EBBTIDE_BENCH_BINARY`, to
/// measure it before and after a change in one run.
pub fn binary() -> PathBuf {
    std::env::var_os("EBBTIDE_BENCH_BINARY").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ebbtide")), PathBuf::from)
}

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub stderr_log: PathBuf,
}

impl Proc {
    /// Starts `ebbtide ARGS`, with stderr going to a file in `dir`.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
        let stderr_log = dir.join(format!("{name}.stderr"));
        let child = Command::new(binary())
            .args(args)
            .env("EBBTIDE_LOG", "info")
            .env_remove("EBBTIDE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("stderr file"))
            .spawn()
            .expect("ebbtide starts");
        Proc { child, stderr_log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads stdout until the "listening on" line; returns (scheduler address, admin address).
    pub fn listening(&mut self) -> (String, Option<String>) {
        let stdout = self.child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("stdout line");
            if let Some(rest) = line.strip_prefix("ebbtide scheduler listening on ") {
                let address = rest.split_whitespace().next().unwrap().to_owned();
                let admin = rest.split("(admin http://").nth(1).map(|a| a.trim_end_matches(')').to_owned());
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                return (address, admin);
            }
        }
        let status = self.wait_exit(Duration::from_secs(5));
        panic!("the scheduler exited before listening ({status:?}); stderr:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// `GET path` on the admin address; returns (status code, body).
pub fn http_get(admin: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    http(admin, &format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Connection: close\r\n\r\n"), &[])
}

pub fn http_post(admin: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    http(admin, &head, body)
}

fn http(admin: &str, head: &str, body: &[u8]) -> (u16, String) {
    let (code, _, body) = http_exchange(admin, head, body);
    (code, body)
}

/// Sends a raw request (`head` ends with the blank line); returns (status code, response head, body).
pub fn http_exchange(admin: &str, head: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(admin).expect("admin connects");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (code, head.to_owned(), body.to_owned())
}

pub fn status(admin: &str) -> serde_json::Value {
    let (code, body) = http_get(admin, "/status", None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

/// Polls `check` until it holds, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs `ebbtide submit ... --wait --json` and returns its summary.
pub fn submit(address: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(binary())
        .arg("submit")
        .arg(address)
        .args(args)
        .args(["--wait", "--json"])
        .output()
        .expect("submit runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("submit printed no summary: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Every running process whose command line contains `needle` (other than this test).
pub fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && cmdline.contains("worker") {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// `ebbtide up` on a configuration written to `dir`; returns the process and its addresses.
pub fn up(dir: &Path, name: &str, config: &str) -> (Proc, String, String) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut proc = Proc::start(dir, name, &["up", path.to_str().unwrap()]);
    let (address, admin) = proc.listening();
    (proc, address, admin.expect("the configuration sets an admin address"))
}

/// The complete lines of a decision log (the scheduler may be writing the last one as it is read).
pub fn decisions(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).expect("each complete line is JSON"))
        .collect()
}

pub fn starts(decision: &Value) -> Vec<&Value> {
    decision["commands"].as_array().unwrap().iter().filter(|c| c.get("start").is_some()).collect()
}

/// Groups starting, running or draining, from `/status`.
pub fn live_groups(admin: &str) -> u64 {
    let s = status(admin);
    ["starting", "running", "draining"].iter().map(|k| s["groups"][k].as_u64().unwrap()).sum()
}

/// A configuration for `up` on loopback (any port, admin on): the `[scheduler]` table with this
/// policy, tick and decision log, then `tables` (params, limits, adapters) as they are.
pub fn config(policy_content: &str, tick_ms: u64, log: Option<&Path>, tables: &str) -> String {
    let log = log.map(|l| format!("decision_log = \"{}\"\n", l.display())).unwrap_or_default();
    format!(
        "[scheduler]\naddress = \"tcp://127.0.0.1:0\"\nadmin_address = \"127.0.0.1:0\"\npolicy_content = \"{policy_content}\"\ntick_ms = {tick_ms}\n{log}\n{tables}"
    )
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `ebbtide scheduler` on any loopback port, admin on, with the `no` policy (nothing scales, so what
/// a test or benchmark sees is the scheduler alone) and these extra arguments; returns it and its
/// protocol and admin addresses.
pub fn scheduler(dir: &Path, name: &str, extra: &[&str]) -> (Proc, String, String) {
    let mut args = vec!["scheduler", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0", "--policy-content", "scaling=no"];
    args.extend_from_slice(extra);
    let mut proc = Proc::start(dir, name, &args);
    let (address, admin) = proc.listening();
    (proc, address, admin.expect("the scheduler was given an admin address"))
}
