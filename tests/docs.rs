//! The documentation stands alone: every relative link in the repository's markdown, and every
//! repository file named in the docs, the sources, the templates of `policy new` and the `--help` of
//! every subcommand (walked from `ebbtide --help` on the real binary), resolves to a file or folder of
//! the repository; a `#anchor` into a markdown file must be one of its headings.
//!
//! A file name is checked when it starts with one of the repository's top-level folders (`docs/`,
//! `examples/`, `wit/`, ...) or is a bare `NAME.md`, which must exist somewhere in the repository.
//! An all-capitals path segment (`docs/policies/WORKLOAD/`, `policies/NAME/`) is a placeholder: only
//! the path before it is checked.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cluster::binary;

/// Folders that hold build output, installed tools or caches, not the repository's files.
const NOT_OURS: &[&str] = &["target", ".git", "node_modules", ".venv", ".tools", "__pycache__", ".pytest_cache"];

/// The top-level folders whose names mark a repository path in running text.
const ROOTS: &[&str] = &["docs/", "examples/", "wit/", "tests/", "host/", "sdk/", "policies/", "python/", ".ci/"];

/// Files whose text is scanned for file names: docs, sources, templates, scripts, schemas.
const SCANNED: &[&str] = &["md", "rs", "toml", "sh", "py", "js", "mjs", "c", "wit", "capnp", "txt"];

fn root() -> PathBuf {
    common::workspace_root()
}

/// Every file of the repository (build output and installed tools left out).
fn repository_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if NOT_OURS.contains(&name.as_ref()) {
                continue;
            }
            if path.is_dir() { walk(&path, out) } else { out.push(path) }
        }
    }
    let mut files = Vec::new();
    walk(&root(), &mut files);
    files.sort();
    files
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// Whether `path` is a file or folder of the repository (inside it, not under build output).
fn in_repository(path: &Path) -> bool {
    let Ok(canonical) = path.canonicalize() else { return false };
    let Ok(relative) = canonical.strip_prefix(root().canonicalize().unwrap()) else { return false };
    !relative.components().any(|c| NOT_OURS.contains(&c.as_os_str().to_string_lossy().as_ref()))
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (outside code blocks), with GitHub's `-1`, `-2`... for
/// repeated headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose_lines(markdown) {
        let Some(heading) = line.strip_prefix('#') else { continue };
        let base = slug(heading.trim_start_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The lines of a markdown file outside fenced code blocks.
fn prose_lines(markdown: &str) -> Vec<&str> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The destinations of `[text](destination)` links in a markdown file, outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose_lines(markdown) {
        // Inline code spans hold examples, not links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find([')', ' ']).unwrap_or(after.len());
            found.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

/// Checks one reference to `path#anchor`; returns what is wrong with it, if anything.
fn check_target(path: &Path, anchor: Option<&str>) -> Option<String> {
    if !in_repository(path) {
        return Some("no such file or folder in the repository".into());
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if extension(path) != "md" {
        return None;
    }
    let known = anchors(&std::fs::read_to_string(path).unwrap());
    (!known.contains(anchor)).then(|| format!("no heading with anchor #{anchor} there"))
}

/// Repository paths named in running text (`docs/builtins.md#vanilla`, `examples/native.toml`) and
/// bare `NAME.md` names.
fn named_paths(text: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '#');
    text.split(|c: char| !is_path_char(c))
        .map(|t| t.trim_end_matches(['.', ',', ':', '#']))
        .filter(|t| ROOTS.iter().any(|r| t.starts_with(r)) || (t.ends_with(".md") && !t.contains('/')))
        .map(str::to_owned)
        .collect()
}

/// Checks a named path (see [`named_paths`]); returns what is wrong with it, if anything.
fn check_named(name: &str, basenames: &BTreeSet<String>) -> Option<String> {
    let (path, anchor) = match name.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    if !path.contains('/') {
        return (!basenames.contains(path)).then(|| "no file of that name in the repository".into());
    }
    // Up to the first placeholder segment (NAME, WORKLOAD, FILE...).
    let placeholder = |s: &&str| s.len() > 1 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    let segments: Vec<&str> = path.split('/').collect();
    let real: Vec<&str> = segments.iter().copied().take_while(|s| !placeholder(s)).collect();
    let anchor = if real.len() == segments.len() { anchor } else { None };
    check_target(&root().join(real.join("/")), anchor)
}

/// Each subcommand's `--help`, walked from `ebbtide --help`: `(command line, text)`.
fn help_texts() -> Vec<(String, String)> {
    let mut texts = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    while let Some(words) = queue.pop() {
        let out = Command::new(binary()).args(&words).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ebbtide {} --help failed: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let commands = text.split("\nCommands:\n").nth(1).map(|rest| rest.split("\n\n").next().unwrap_or(""));
        for line in commands.unwrap_or("").lines() {
            // A command's line starts with two spaces and its name; continuation lines are deeper.
            let name =
                line.strip_prefix("  ").filter(|l| !l.starts_with(' ')).and_then(|l| l.split_whitespace().next());
            if let Some(name) = name.filter(|n| *n != "help") {
                queue.push(words.iter().cloned().chain([name.to_owned()]).collect());
            }
        }
        texts.push((format!("ebbtide {} --help", words.join(" ")), text));
    }
    texts
}

fn report(problems: Vec<String>) {
    assert!(problems.is_empty(), "{} broken references:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn markdown_links_resolve_inside_the_repository() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in repository_files().into_iter().filter(|f| extension(f) == "md") {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            checked += 1;
            if let Some(why) = check_target(&target, anchor) {
                problems.push(format!("{}: link ({link}): {why}", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(checked > 20, "only {checked} links found: is the link parser broken?");
    report(problems);
}

#[test]
fn file_names_in_docs_sources_and_templates_exist() {
    let files = repository_files();
    let basenames: BTreeSet<String> =
        files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    let this_file = root().join("tests").join("docs.rs"); // its own examples of broken names
    for file in files.iter().filter(|f| SCANNED.contains(&extension(f)) && **f != this_file) {
        let Ok(mut text) = std::fs::read_to_string(file) else { continue };
        if extension(file) == "md" {
            // Link destinations are relative to the file, and checked as links.
            for link in links(&text) {
                text = text.replace(&format!("]({link})"), "]");
            }
        }
        for name in named_paths(&text) {
            checked += 1;
            if let Some(why) = check_named(&name, &basenames) {
                problems.push(format!("{}: {name}: {why}", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(checked > 100, "only {checked} file names found: is the scanner broken?");
    report(problems);
}

#[test]
fn file_names_in_every_help_text_exist() {
    let basenames: BTreeSet<String> =
        repository_files().iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let texts = help_texts();
    let commands: Vec<&str> = texts.iter().map(|(c, _)| c.as_str()).collect();
    for nested in ["ebbtide policy new --help", "ebbtide adapter native --help", "ebbtide policy swap --help"] {
        assert!(commands.contains(&nested), "the walk missed `{nested}`; it found: {commands:?}");
    }
    let mut problems = Vec::new();
    for (command, text) in &texts {
        for name in named_paths(text) {
            if let Some(why) = check_named(&name, &basenames) {
                problems.push(format!("`{command}`: {name}: {why}"));
            }
        }
    }
    report(problems);
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let basenames: BTreeSet<String> = ["README.md".to_owned()].into();
    assert!(check_named("POLICIES.md", &basenames).is_some());
    assert!(check_named("docs/builtins.md#no-such-heading", &basenames).is_some());
    assert!(check_named("docs/builtins.md#vanilla", &basenames).is_none());
    assert!(check_named("docs/policies/WORKLOAD/capacity.png", &basenames).is_none());
    assert!(check_named("examples/missing.toml", &basenames).is_some());
    assert_eq!(links("see [a](x.md#y) and `[b](z)`\n```\n[c](w)\n```\n"), vec!["x.md#y"]);
    assert_eq!(
        named_paths("(see docs/builtins.md#vanilla.) and DESIGN.md, wit/"),
        ["docs/builtins.md#vanilla", "DESIGN.md", "wit/"]
    );
    assert_eq!(slug("`pd_coordinated`: roles"), "pd_coordinated-roles");
}

/// `(name, default)` of each param a built-in declares, from `ebbtide policy inspect` (its `describe()`).
fn declared_params(policy: &str) -> Vec<(String, String)> {
    let out = Command::new(binary()).args(["policy", "inspect", policy]).output().unwrap();
    assert!(out.status.success(), "policy inspect {policy}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(params) = text.split("\nparams:\n").nth(1) else { return Vec::new() };
    params
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix("  ").filter(|l| !l.starts_with(' '))?;
            let default = line.rsplit_once("(default ")?.1.strip_suffix(')')?;
            Some((line.split_whitespace().next()?.to_owned(), default.to_owned()))
        })
        .collect()
}

/// `(name, default cell)` of each row of the param table in a `## policy` section of builtins.md.
fn documented_params(builtins: &str, policy: &str) -> Vec<(String, String)> {
    let section = builtins.split(&format!("\n## {policy}\n")).nth(1).unwrap_or_else(|| panic!("no ## {policy}"));
    let section = section.split("\n## ").next().unwrap();
    let table = section.split("\n| param |").nth(1).map(|t| t.split("\n\n").next().unwrap()).unwrap_or("");
    table
        .lines()
        .filter_map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let name = cells.first()?.trim_start_matches("| ").trim().strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells.get(2)?.trim().to_owned()))
        })
        .collect()
}

/// docs/builtins.md lists exactly the params each built-in declares, and the same default wherever
/// the default is a number or a boolean (the others are described in words there).
#[test]
fn builtins_reference_matches_what_each_builtin_declares() {
    let builtins = std::fs::read_to_string(root().join("docs").join("builtins.md")).unwrap();
    for policy in ["no", "vanilla", "capability", "fixed_elastic", "pd_coordinated", "buffer"] {
        let declared = declared_params(policy);
        let documented = documented_params(&builtins, policy);
        let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&documented), names(&declared), "docs/builtins.md#{policy}: the param table's rows");
        for ((name, default), (_, cell)) in declared.iter().zip(&documented) {
            let plain = default.parse::<f64>().is_ok() || default == "true" || default == "false";
            if plain {
                let cell = cell.trim_matches('`');
                assert!(
                    (cell == default || cell.starts_with(&format!("{default} "))),
                    "docs/builtins.md#{policy}: {name} defaults to {default}, not {cell}"
                );
            }
        }
    }
}
