//! The live dashboard and `ebbtide top`, against a real scheduler with the native adapter and a burst:
//! the history endpoints, the page in a real headless browser (Debian's chromium), the token, and
//! `top` in a pseudo-terminal.

mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{Proc, binary, config, http_exchange, http_get, http_post, status, submit, up, wait_for};
use serde_json::Value;

/// A scheduler with a native adapter of up to 4 groups of 2 workers, deciding every 200 ms.
fn scheduler(dir: &Path, name: &str, token: Option<&str>) -> (Proc, String, String) {
    let tables = "[scaling.params]\nupper_task_ratio = 2\nlower_task_ratio = 1\nmin_idle_ms = 300\n\n[[adapter]]\ntype = \"native\"\nid = \"local\"\nmax_worker_groups = 4\nworkers_per_group = 2\ngrace_ms = 500\n";
    let mut text = config("scaling=vanilla", 200, None, tables);
    if let Some(token) = token {
        text = text.replacen("[scheduler]\n", &format!("[scheduler]\ntoken = \"{token}\"\n"), 1);
    }
    up(dir, name, &text)
}

fn history(admin: &str, query: &str) -> Value {
    let (code, body) = http_get(admin, &format!("/history{query}"), None);
    assert_eq!(code, 200, "/history{query}: {body}");
    serde_json::from_str(&body).expect("/history is JSON")
}

/// A burst of `sleep` tasks submitted from a thread; join it for the summary.
fn burst(address: &str, count: u32, ms: u32) -> std::thread::JoinHandle<Value> {
    let address = address.to_owned();
    std::thread::spawn(move || {
        submit(&address, &["--function", "sleep", "--payload", &ms.to_string(), "--count", &count.to_string()])
    })
}

#[test]
fn history_and_page_show_a_burst_a_swap_and_every_decision() {
    let dir = common::temp_dir("dashboard-burst");
    let (_up, address, admin) = scheduler(&dir, "up", None);
    let tasks = burst(&address, 24, 400);
    wait_for("the burst's first start", Duration::from_secs(20), || {
        status(&admin)["counters"]["starts"].as_u64() > Some(0)
    });

    // A swap while the burst runs.
    let (code, body) = http_post(&admin, "/policy", "application/json", br#"{"scaling": "capability"}"#);
    assert_eq!(code, 200, "the swap to capability: {body}");
    let swapped: Value = serde_json::from_str(&body).unwrap();
    let digest = swapped["digest"].as_str().expect("an accepted swap names its digest").to_owned();
    assert_eq!(tasks.join().unwrap()["done"], 24);
    wait_for("three samples", Duration::from_secs(10), || {
        history(&admin, "").as_object().unwrap()["samples"].as_array().unwrap().len() >= 3
    });

    let h = history(&admin, "");
    let samples = h["samples"].as_array().unwrap();
    let peak = samples.iter().map(|s| s["fleet"][0]["workers"]["running"].as_u64().unwrap_or(0)).max();
    assert!(peak > Some(0), "a sample saw running workers of adapter local: {samples:?}");
    let adapters: Vec<&Value> =
        samples.iter().flat_map(|s| s["fleet"].as_array().unwrap()).map(|f| &f["adapter"]).collect();
    assert!(!adapters.is_empty() && adapters.iter().all(|a| *a == "local"), "only adapter local: {adapters:?}");
    assert!(samples.iter().any(|s| s["pending"].as_u64() > Some(0) || s["running"].as_u64() > Some(0)));
    let decisions = h["decisions"].as_array().unwrap();
    let starting =
        decisions.iter().find(|d| d["starts"]["local"].as_u64() > Some(0)).expect("a decision started groups");
    assert!(decisions.iter().any(|d| d["policy_digest"] == digest.as_str()), "a decision by the swapped-in policy");
    let swaps = h["swaps"].as_array().unwrap();
    assert!(
        swaps.iter().any(|s| s["accepted"] == true && s["digest"] == digest.as_str()),
        "the swap is in the history: {swaps:?}"
    );

    // Resuming after the last decision gives only what is newer; one decision's full record.
    let last = h["last_decision_seq"].as_u64().unwrap();
    let newer = history(&admin, &format!("?decisions_after={last}&samples_after=1000000"));
    assert!(newer["decisions"].as_array().unwrap().iter().all(|d| d["seq"].as_u64() > Some(last)));
    assert!(newer["samples"].as_array().unwrap().is_empty());
    let seq = starting["seq"].as_u64().unwrap();
    let (code, body) = http_get(&admin, &format!("/decision/{seq}"), None);
    assert_eq!(code, 200, "{body}");
    let record: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["seq"], seq);
    assert!(record["snapshot"]["adapters"].as_array().is_some_and(|a| a.len() == 1), "{record}");
    assert!(record["commands"].as_array().unwrap().iter().any(|c| c["start"]["adapter"] == "local"));
    let (code, body) = http_get(&admin, "/decision/99999999", None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("history_decisions"), "{body}");
    let (code, body) = http_get(&admin, "/history?since=3", None);
    assert_eq!(code, 400, "an unknown query key is refused: {body}");

    // The page in a real browser.
    let Some(chromium) = chromium() else { return };
    let dom = dump_dom(&chromium, &dir, &format!("http://{admin}/"));
    let body = body_attributes(&dom);
    assert_eq!(body["data-error"], "", "the page reported an error: {body:?}");
    let origins: Vec<String> = serde_json::from_str(&body["data-origins"]).unwrap();
    assert_eq!(origins, [format!("http://{admin}")], "every request stayed on the scheduler's address");
    assert!(body["data-samples"].parse::<u32>().unwrap() >= 3, "{body:?}");
    assert!(body["data-decisions"].parse::<u32>().unwrap() >= 1, "the decisions table filled: {body:?}");
    let charts: Value = serde_json::from_str(&body["data-charts"]).unwrap();
    for chart in ["fleet", "tasks", "rate", "wait"] {
        let c = &charts[chart];
        assert!(
            c["points"].as_u64() >= Some(2) && c["pixels"].as_u64() > Some(0),
            "chart {chart} drew its points: {charts}"
        );
    }
    // The burst is in them: workers, tasks and completions above zero (queue wait may round to 0).
    assert!(charts["fleet"]["max"].as_f64() >= Some(2.0), "the fleet chart shows the burst's workers: {charts}");
    assert!(charts["tasks"]["max"].as_f64() >= Some(1.0), "{charts}");
    assert!(charts["rate"]["max"].as_f64() > Some(0.0), "{charts}");
    let page_swaps: Value = serde_json::from_str(&body["data-swaps"]).unwrap();
    assert!(page_swaps.as_array().unwrap().iter().any(|s| s["digest"] == digest.as_str()), "{page_swaps}");
    assert!(dom.contains("capability"), "the policy panel names the swapped-in policy");
    assert!(dom.contains(r#"data-seq=""#), "decision rows are in the table");

    // A decision's detail: its snapshot and commands (what a click on its row shows).
    let dom = dump_dom(&chromium, &dir, &format!("http://{admin}/#decision={seq}"));
    assert!(dom.contains(&format!("Decision {seq}")), "the detail of decision {seq} opened");
    assert!(dom.contains("start(local, {})"), "its commands are listed");
    assert!(dom.contains("worker groups") && dom.contains("task groups"), "its snapshot is summarized");
}

#[test]
fn failed_decisions_show_their_kind_and_the_fallback_its_reason() {
    let dir = common::temp_dir("dashboard-failures");
    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    // The hostile guest traps while there is work; after 2 failures in a row vanilla decides.
    let tables = "[scaling.params]\nmode = \"trap-when-busy-later\"\n\n[scaling.limits]\nmax_consecutive_failures = 2\nfallback = \"vanilla\"\n\n[[adapter]]\ntype = \"native\"\nid = \"local\"\nmax_worker_groups = 2\nworkers_per_group = 2\ngrace_ms = 500\n";
    let (_up, address, admin) = up(&dir, "up", &config(&format!("scaling={}", hostile.display()), 100, None, tables));
    assert_eq!(submit(&address, &["--function", "sleep", "--payload", "50", "--count", "10"])["done"], 10);
    let h = history(&admin, "");
    let failed: Vec<&Value> =
        h["decisions"].as_array().unwrap().iter().filter(|d| d.get("error_kind").is_some()).collect();
    assert_eq!(failed.len(), 2, "two failed decisions before the fallback: {failed:?}");
    assert!(failed.iter().all(|d| d["error_kind"] == "trap"), "{failed:?}");

    let Some(chromium) = chromium() else { return };
    let dom = dump_dom(&chromium, &dir, &format!("http://{admin}/"));
    assert!(dom.contains("failed: trap"), "failed rows are marked with their kind");
    assert!(dom.contains("Fallback deciding (vanilla)"), "the fallback is shown as an alert");
    assert!(dom.contains("consecutive failed decisions"), "with its reason");
}

#[test]
fn with_a_token_the_page_and_its_data_need_it() {
    const TOKEN: &str = "dash-token-5e3a9c";
    let dir = common::temp_dir("dashboard-token");
    let (proc, _address, admin) = scheduler(&dir, "up", Some(TOKEN));
    let get = |path: &str, extra: &str| {
        http_exchange(&admin, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"), b"")
    };

    let (code, _, body) = get("/", "");
    assert_eq!(code, 401);
    assert!(body.contains(r#"action="/login""#), "a browser without the token gets the login form: {body}");
    for path in ["/history", "/decision/1", "/status", "/dashboard.js"] {
        assert_eq!(get(path, "").0, 401, "{path} without the token");
    }
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(get("/history", &bearer).0, 200);

    let login = |token: &str| {
        let body = format!("token={token}");
        let head = format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        http_exchange(&admin, &head, body.as_bytes())
    };
    assert_eq!(login("wrong").0, 401);
    let (code, head, _) = login(TOKEN);
    assert_eq!(code, 303, "{head}");
    let set_cookie =
        head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains(TOKEN), "the cookie does not carry the token itself: {set_cookie}");
    let session = set_cookie.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_owned();
    let cookie = format!("Cookie: {session}\r\n");
    let (code, _, page) = get("/", &cookie);
    assert_eq!(code, 200);
    assert!(page.contains("/dashboard.js"));
    assert_eq!(get("/history", &cookie).0, 200);
    // The session opens reads only: a swap still needs the bearer token.
    let swap = format!(
        "POST /policy HTTP/1.1\r\nHost: x\r\n{cookie}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(http_exchange(&admin, &swap, b"{}").0, 401);

    // A browser signs in once from the address's fragment, which never reaches the server.
    if let Some(chromium) = chromium() {
        let dom = dump_dom(&chromium, &dir, &format!("http://{admin}/#token={TOKEN}"));
        let body = body_attributes(&dom);
        assert!(
            body.get("data-polls").is_some_and(|p| p.parse::<u32>().unwrap() >= 1),
            "the dashboard loaded after signing in: {}",
            &dom[..dom.len().min(600)]
        );
        assert_eq!(body["data-error"], "", "{body:?}");
    }
    assert!(!proc.stderr().contains(TOKEN), "the token never appears in the scheduler's log");
}

#[test]
fn top_renders_and_updates_in_a_terminal() {
    let dir = common::temp_dir("dashboard-top");
    let (_up, address, admin) = scheduler(&dir, "up", None);
    let (master, slave) = pty(120, 40);
    let slave_fd = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut top = Command::new(binary())
        .args(["top", &admin, "--interval-ms", "200"])
        .env("TERM", "xterm")
        .stdin(slave_fd(&slave))
        .stdout(slave_fd(&slave))
        .stderr(slave_fd(&slave))
        .spawn()
        .expect("ebbtide top starts");
    drop(slave);
    let screen = Arc::new(Mutex::new(Vec::new()));
    {
        let screen = screen.clone();
        let mut master = std::fs::File::from(master);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = master.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
    }
    // Frames start with cursor-home; the latest complete one is the one before the last.
    let frames = || -> Vec<String> {
        let text = String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
        text.split("\x1b[H").filter(|f| f.ends_with("\x1b[J")).map(str::to_owned).collect()
    };
    let shown = |needle: &str| frames().last().is_some_and(|f| f.contains(needle));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("top's first frame", Duration::from_secs(15), || {
            shown("ebbtide top") && shown("decision") && shown("local")
        });
        assert!(frames().last().unwrap().contains("done 0"), "{:?}", frames().last());
        assert_eq!(submit(&address, &["--function", "sleep", "--payload", "200", "--count", "6"])["done"], 6);
        wait_for("top to show the 6 tasks done", Duration::from_secs(15), || shown("done 6"));
        let last = frames().last().unwrap().clone();
        assert!(last.contains("local×"), "a decision row shows the starts: {last}");
        let width = |l: &str| l.trim_end_matches('\r').trim_end_matches("\x1b[K").chars().count();
        assert!(last.lines().all(|l| width(l) <= 120), "lines fit the 120 columns: {last}");
    }));
    let _ = top.kill();
    let _ = top.wait();
    if let Err(panic) = result {
        eprintln!("the terminal showed:\n{}", frames().last().cloned().unwrap_or_default());
        std::panic::resume_unwind(panic);
    }
}

/// A pseudo-terminal of `cols` x `rows`: (master, slave).
fn pty(cols: u16, rows: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two descriptors into the integers we pass; name and termios may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

fn chromium() -> Option<PathBuf> {
    common::browser::chromium("the dashboard's browser checks")
}

/// Loads `url` in headless chromium for a few seconds of virtual time (the page polls every
/// second) and returns the DOM it ended with.
fn dump_dom(chromium: &Path, dir: &Path, url: &str) -> String {
    let (dom, stderr) = common::browser::dump_dom(chromium, dir, url, 4000, (1400, 1800));
    assert!(dom.contains("<body"), "chromium printed no DOM: {stderr}");
    dom
}

/// The attributes of `<body ...>` in a dumped DOM.
fn body_attributes(dom: &str) -> std::collections::HashMap<String, String> {
    let start = dom.find("<body").expect("a body");
    let tag = &dom[start + 5..start + dom[start..].find('>').unwrap()];
    let mut attributes = std::collections::HashMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim().to_owned();
        let value_end = rest[eq + 2..].find('"').unwrap();
        let value = rest[eq + 2..eq + 2 + value_end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        attributes.insert(name, value);
        rest = &rest[eq + 2 + value_end + 1..];
    }
    attributes
}
