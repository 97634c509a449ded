//! `ebbtide policy new NAME --lang rust|python|js|c`: a policy project that builds, passes its
//! starter vectors and is accepted by `ebbtide policy check` as generated.
//!
//! The templates are the `queue_depth` examples of `examples/policies/`, embedded in the binary and
//! renamed, so the starter is a real, tested policy and there is one copy of each.
//!
//! A project holds no path outside itself, so it builds after being moved or copied: it gets its own
//! copy of the contract (`wit/`) and, in Rust, of this binary's SDK (`ebbtide-sdk/`, whose bindings
//! read `../wit`, i.e. the project's copy).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::Outcome;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

#[derive(Args)]
pub struct NewArgs {
    /// The policy's name: lower-case letters, digits and underscores, starting with a letter.
    name: String,
    /// The language of the project.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where to create it [default: ./NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// `(path in the project, contents)`, with `queue_depth` / `queue-depth` standing for the name and
/// `../../../wit` / `../../../sdk` for the contract and the SDK (`wit` and `ebbtide-sdk` in the project).
type Template = &'static [(&'static str, &'static str)];

macro_rules! example {
    ($lang:literal, $($file:literal),+) => {
        &[$(($file, include_str!(concat!("../../../examples/policies/", $lang, "/", $file)))),+]
    };
}

const RUST: Template =
    example!("rust", "Cargo.toml", "Cargo.lock", "src/lib.rs", "build.sh", ".gitignore", "README.md");
const PYTHON: Template = example!("python", "app.py", "requirements.txt", "build.sh", ".gitignore", "README.md");
const JS: Template = example!(
    "javascript",
    "app.js",
    "build.mjs",
    "package.json",
    "package-lock.json",
    "qjs-version",
    "build.sh",
    ".gitignore",
    "README.md"
);
const C: Template =
    example!("c", "queue_depth.c", "build.sh", ".gitignore", "README.md", "adapter/Cargo.toml", "adapter/src/main.rs");
const WIT: &str = include_str!("../../../wit/policy.wit");
const VECTORS: &str = include_str!("../../../examples/policies/queue_depth.json");

/// Where a Rust project keeps its copy of the SDK.
const SDK_DIR: &str = "ebbtide-sdk";
const SDK_MANIFEST: &str = include_str!("../../../sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
include!(concat!(env!("OUT_DIR"), "/sdk_sources.rs"));

pub fn run(args: NewArgs) -> anyhow::Result<Outcome> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64;
    if !valid {
        bail!(
            "policy name {name:?}: expected lower-case letters, digits and underscores, starting with a letter (e.g. my_policy)"
        );
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{} already exists and is not empty; choose another --dir", dir.display());
    }
    let template = match args.lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
        Lang::C => C,
    };
    for (file, text) in template {
        let text = text
            .replace("../../../sdk", SDK_DIR)
            .replace("../../../wit", "wit")
            .replace("../queue_depth.json", "queue_depth.json")
            .replace("queue_depth", name)
            .replace("queue-depth", &name.replace('_', "-"));
        write(&dir.join(file.replace("queue_depth", name)), &text)?;
    }
    write(&dir.join("wit").join("policy.wit"), WIT)?;
    write(&dir.join(format!("{name}.json")), &VECTORS.replace("queue_depth", name))?;
    if matches!(args.lang, Lang::Rust) {
        write(&dir.join(SDK_DIR).join("Cargo.toml"), &standalone_sdk_manifest())?;
        for (file, text) in SDK_SOURCES {
            write(&dir.join(SDK_DIR).join(file), text)?;
        }
    }
    let build = dir.join("build.sh");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o755))?;
    }
    println!("created {} ({:?}), starting from the queue_depth example:", dir.display(), args.lang);
    println!("  {}                                  build {name}.wasm", build.display());
    println!("  ebbtide policy test --policy {}/{name}.wasm {}/{name}.json", dir.display(), dir.display());
    println!("  ebbtide policy check {}/{name}.wasm", dir.display());
    if matches!(args.lang, Lang::Rust) {
        println!(
            "{SDK_DIR}/ is this ebbtide's SDK ({}), for the project to build on its own",
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(Outcome::Success)
}

/// The SDK's Cargo.toml with each `workspace = true` replaced by the workspace's value, so that the
/// copy builds outside ebbtide's workspace. Dev-dependencies are left out: the copy is built, not tested.
fn standalone_sdk_manifest() -> String {
    let workspace: toml::Table = WORKSPACE_MANIFEST.parse().expect("the workspace's Cargo.toml is valid TOML");
    let mut sdk: toml::Table = SDK_MANIFEST.parse().expect("sdk/Cargo.toml is valid TOML");
    let inherited = &workspace["workspace"];
    if let Some(package) = sdk.get_mut("package").and_then(toml::Value::as_table_mut) {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = inherited["package"][key.as_str()].clone();
            }
        }
    }
    sdk.remove("dev-dependencies");
    resolve_dependencies(sdk.get_mut("dependencies"), &inherited["dependencies"]);
    if let Some(targets) = sdk.get_mut("target").and_then(toml::Value::as_table_mut) {
        for (_, target) in targets.iter_mut() {
            resolve_dependencies(target.get_mut("dependencies"), &inherited["dependencies"]);
        }
    }
    let header = format!(
        "# ebbtide-sdk {}, copied into this project by `ebbtide policy new` so that it builds on its own.\n\n",
        env!("CARGO_PKG_VERSION")
    );
    // [package] first, as people write it (a table serializes in key order).
    let package = toml::Table::from_iter(sdk.remove_entry("package"));
    header
        + &toml::to_string(&package).expect("a TOML table serializes")
        + "\n"
        + &toml::to_string(&sdk).expect("a TOML table serializes")
}

fn inherits(value: &toml::Value) -> bool {
    value.get("workspace").and_then(toml::Value::as_bool) == Some(true)
}

/// Replaces each `dep.workspace = true` by the workspace's entry, keeping the member's own features.
fn resolve_dependencies(deps: Option<&mut toml::Value>, workspace: &toml::Value) {
    let Some(deps) = deps.and_then(toml::Value::as_table_mut) else { return };
    for (name, dep) in deps.iter_mut() {
        if !inherits(dep) {
            continue;
        }
        let mut resolved = match &workspace[name.as_str()] {
            toml::Value::String(version) => toml::Table::from_iter([("version".to_owned(), version.clone().into())]),
            other => other.as_table().expect("a workspace dependency is a version or a table").clone(),
        };
        if let Some(features) = dep.get("features").and_then(toml::Value::as_array) {
            let all = resolved.entry("features").or_insert_with(|| toml::Value::Array(Vec::new()));
            all.as_array_mut().expect("features is a list").extend(features.iter().cloned());
        }
        if let Some(optional) = dep.get("optional") {
            resolved.insert("optional".to_owned(), optional.clone());
        }
        *dep = toml::Value::Table(resolved);
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
