//! `ebbtide policy ...` as a user runs it: the real binary, real files.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn ebbtide(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebbtide"))
        .args(args)
        .current_dir(common::workspace_root())
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all_output(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn vector_files() -> Vec<String> {
    let dir = common::workspace_root().join("tests/vectors");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/vectors exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

fn total_steps(files: &[String]) -> usize {
    files
        .iter()
        .map(|f| {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("json");
            v["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .map(|c| c["steps"].as_array().expect("steps").len())
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn list_shows_every_builtin_with_version_and_summary() {
    let out = ebbtide(&["policy", "list"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for name in ["no", "vanilla", "capability", "fixed_elastic", "pd_coordinated", "buffer"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[1], "0.1.0", "version of {name}: {line}");
        assert!(words.len() > 4, "a summary for {name}: {line}");
    }
}

#[test]
fn every_public_vector_passes_through_the_runtime() {
    let files = vector_files();
    let mut args = vec!["policy", "test"];
    args.extend(files.iter().map(String::as_str));
    let out = ebbtide(&args);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", all_output(&out));
    assert_eq!(text.lines().last(), Some(format!("{} passed, 0 failed", total_steps(&files)).as_str()), "{text}");
}

#[test]
fn a_wrong_expectation_fails_naming_file_case_and_step() {
    let dir = common::temp_dir("wrong-vector");
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::workspace_root().join("tests/vectors/vanilla.json")).expect("read"),
    )
    .expect("json");
    // V1 expects 10 starts; claim 9.
    v["cases"][0]["steps"][0]["expect"]["commands"][0]["count"] = 9.into();
    let file = dir.join("wrong.json");
    std::fs::write(&file, v.to_string()).expect("write");
    let out = ebbtide(&["policy", "test", file.to_str().expect("utf-8")]);
    let text = stdout(&out);
    assert!(!out.status.success(), "a wrong expectation must fail:\n{text}");
    let fail = text.lines().find(|l| l.starts_with("FAIL")).unwrap_or_else(|| panic!("no FAIL line:\n{text}"));
    assert!(fail.contains("wrong.json") && fail.contains("V1") && fail.contains("step 1"), "{fail}");
    assert!(fail.contains("expected [") && fail.contains("produced ["), "side by side: {fail}");
    assert!(text.trim_end().ends_with("passed, 1 failed"), "{text}");
}

#[test]
fn an_exported_builtin_is_inspected_checked_and_tested_like_a_builtin() {
    let dir = common::temp_dir("export");
    let wasm = dir.join("v.wasm");
    let wasm = wasm.to_str().expect("utf-8");
    assert!(ebbtide(&["policy", "export", "vanilla", "-o", wasm]).status.success());

    let out = ebbtide(&["policy", "inspect", wasm]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", all_output(&out));
    for field in [
        "name:     vanilla",
        "version:  0.1.0",
        "world:    ebbtide:policy/scaling-policy@0.1.0",
        "imports:",
        "size:",
        "sha256:",
    ] {
        assert!(text.contains(field), "inspect shows {field:?}:\n{text}");
    }

    let ok = ebbtide(&["policy", "check", wasm, "--params", r#"{"upper_task_ratio": 10}"#]);
    assert!(ok.status.success(), "{}", all_output(&ok));

    let bad = ebbtide(&["policy", "check", wasm, "--params", r#"{"upper_task_ratio": "ten"}"#]);
    let text = all_output(&bad);
    assert!(!bad.status.success(), "bad params must be rejected:\n{text}");
    assert!(
        text.contains("upper_task_ratio") && text.contains("a number > 0"),
        "names the key and what it accepts:\n{text}"
    );

    let vectors = common::workspace_root().join("tests/vectors/vanilla.json");
    let out = ebbtide(&["policy", "test", "--policy", wasm, vectors.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(stdout(&out).trim_end().ends_with(", 0 failed"));
}

#[test]
fn unknown_policies_and_bad_limits_are_named() {
    let out = ebbtide(&["policy", "inspect", "vanila"]);
    let text = all_output(&out);
    assert!(!out.status.success());
    assert!(text.contains("\"vanila\"") && text.contains("vanilla, capability"), "{text}");

    let out = ebbtide(&["policy", "check", "vanilla", "--deadline-ms", "0"]);
    assert!(!out.status.success());
    assert!(all_output(&out).contains("deadline_ms: expected 1 to 60000, got 0"), "{}", all_output(&out));
}

#[test]
fn bench_json_reports_every_documented_field() {
    let out = ebbtide(&["policy", "bench", "vanilla", "--size", "small", "--iterations", "50", "--json"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    for field in
        ["fresh_median_us", "fresh_p99_us", "reused_median_us", "reused_p99_us", "native_median_us", "overhead_us"]
    {
        assert!(report[field].as_f64().is_some(), "{field} missing: {report}");
    }
    let fresh = report["fresh_median_us"].as_f64().unwrap_or_default();
    let p99 = report["fresh_p99_us"].as_f64().unwrap_or_default();
    assert!(fresh > 0.0 && p99 >= fresh, "{report}");
}

#[test]
fn every_policy_subcommand_has_help_with_an_example() {
    for sub in ["list", "inspect", "check", "test", "bench", "export"] {
        let out = ebbtide(&["policy", sub, "--help"]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("ebbtide policy"), "{sub} --help shows an example");
    }
    assert!(Path::new(env!("CARGO_BIN_EXE_ebbtide")).exists());
}
