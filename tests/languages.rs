//! One policy in four languages: each example under examples/policies/ is built with its own
//! ecosystem's tools by its build.sh and must pass the shared vectors and `policy check`; a project
//! from `policy new` in each language must do the same as generated, after being copied to a fresh
//! directory outside the repository (it names no path outside itself). A change to the contract that
//! breaks a language fails here.
//!
//! A language whose toolchain's base (python3 with venv, node with npm) is missing from the machine
//! fails under `CI=true`, naming it (.ci/run installs them), and is skipped visibly elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cluster::binary;

const LANGUAGES: [(&str, &str); 4] = [("rust", "rust"), ("python", "python"), ("javascript", "js"), ("c", "c")];

fn examples() -> PathBuf {
    common::workspace_root().join("examples").join("policies")
}

/// The tool this language lacks here, if any.
fn missing_toolchain(lang: &str) -> Option<&'static str> {
    let works = |cmd: &str, args: &[&str]| Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
    match lang {
        "python" | "c" if !works("python3", &["-m", "venv", "--help"]) => Some("python3 with venv"),
        "javascript" if !works("npm", &["--version"]) || !works("node", &["--version"]) => Some("node with npm"),
        _ => None,
    }
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// The number of steps in a vector file: what `policy test` must report as passed.
fn steps(vectors: &Path) -> usize {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(vectors).unwrap()).unwrap();
    doc["cases"].as_array().unwrap().iter().map(|c| c["steps"].as_array().unwrap().len()).sum()
}

/// Builds `dir` with its build.sh and checks `component` against `vectors` and `policy check`.
fn build_and_check(dir: &Path, component: &Path, vectors: &Path, env: &[(&str, PathBuf)]) {
    let mut build = Command::new(dir.join("build.sh"));
    for (k, v) in env {
        build.env(k, v);
    }
    run(&mut build, &format!("{}/build.sh", dir.display()));
    let passed = format!("{} passed, 0 failed", steps(vectors));
    let out =
        run(Command::new(binary()).args(["policy", "test", "--policy"]).arg(component).arg(vectors), "policy test");
    assert!(out.contains(&passed), "{}: {out}", component.display());
    let out = run(Command::new(binary()).args(["policy", "check"]).arg(component), "policy check");
    assert!(out.trim_end().ends_with("accepted"), "{out}");
}

fn example_and_scaffold(lang: &str) {
    let (folder, flag) = LANGUAGES.iter().find(|(f, _)| *f == lang).copied().unwrap();
    if let Some(tool) = missing_toolchain(folder) {
        return common::tool_missing(tool, &format!("the {folder} example"));
    }
    let example = examples().join(folder);
    build_and_check(&example, &example.join("queue_depth.wasm"), &examples().join("queue_depth.json"), &[]);

    // A new project, built as generated once copied outside the repository and the original deleted.
    // It reuses what the example installed (tools on PATH, the Rust target directory) so the test does
    // not fetch and compile them twice.
    let parent = common::temp_dir(&format!("policy-new-{folder}"));
    let name = format!("starter_{flag}");
    run(Command::new(binary()).current_dir(&parent).args(["policy", "new", &name, "--lang", flag]), "policy new");
    let project = moved_project(&parent.join(&name), &format!("ebbtide-moved-{folder}"));
    let path =
        format!("{}:{}", example.join(".tools").join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let env = [("PATH", PathBuf::from(path)), ("CARGO_TARGET_DIR", example.join("target"))];
    build_and_check(&project, &project.join(format!("{name}.wasm")), &project.join(format!("{name}.json")), &env);
    let _ = std::fs::remove_dir_all(&project);
}

/// Copies a `policy new` project to a fresh directory under the system's temporary directory,
/// deletes the original, and checks that no file names the original's path or the repository's.
fn moved_project(original: &Path, name: &str) -> PathBuf {
    let moved = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&moved);
    run(Command::new("cp").arg("-r").arg(original).arg(&moved), "copying the project");
    std::fs::remove_dir_all(original).unwrap();
    let forbidden = [original.to_path_buf(), common::workspace_root()];
    for file in files_under(&moved) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        for path in &forbidden {
            assert!(!text.contains(&*path.to_string_lossy()), "{} names {}", file.display(), path.display());
        }
    }
    moved
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn rust() {
    example_and_scaffold("rust");
}

#[test]
fn python() {
    example_and_scaffold("python");
}

#[test]
fn javascript() {
    example_and_scaffold("javascript");
}

#[test]
fn c() {
    example_and_scaffold("c");
}
