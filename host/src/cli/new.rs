//! `ebbtide policy new NAME --lang rust|python|js|c`: a policy project that builds, passes its
//! starter vectors and is accepted by `ebbtide policy check` as generated.
//!
//! The templates are the `queue_depth` examples of `examples/policies/`, embedded in the binary and
//! renamed, so the starter is a real, tested policy and there is one copy of each.

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
/// `../../../wit` / `../../../sdk` for the contract and the SDK.
type Template = &'static [(&'static str, &'static str)];

macro_rules! example {
    ($lang:literal, $($file:literal),+) => {
        &[$(($file, include_str!(concat!("../../../examples/policies/", $lang, "/", $file)))),+]
    };
}

const RUST: Template = example!("rust", "Cargo.toml", "src/lib.rs", "build.sh", ".gitignore", "README.md");
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
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sdk");
    let sdk = std::path::absolute(&sdk).unwrap_or(sdk);
    for (file, text) in template {
        let text = text
            .replace("../../../sdk", &sdk.display().to_string())
            .replace("../../../wit", "wit")
            .replace("../queue_depth.json", "queue_depth.json")
            .replace("queue_depth", name)
            .replace("queue-depth", &name.replace('_', "-"));
        write(&dir.join(file.replace("queue_depth", name)), &text)?;
    }
    write(&dir.join("wit").join("policy.wit"), WIT)?;
    write(&dir.join(format!("{name}.json")), &VECTORS.replace("queue_depth", name))?;
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
    if matches!(args.lang, Lang::Rust) && !sdk.exists() {
        println!(
            "note: Cargo.toml points at the SDK in {}, which is not there; point it at your ebbtide checkout's sdk/",
            sdk.display()
        );
    }
    Ok(Outcome::Success)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
