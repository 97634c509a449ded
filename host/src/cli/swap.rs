//! `ebbtide policy swap`: asks a running scheduler to swap its policy (`POST /policy`) and reports
//! what became of it.

use std::path::Path;

use anyhow::Context;
use clap::Args;

use super::Outcome;
use crate::policy::builtin;

#[derive(Args)]
pub struct SwapArgs {
    /// A built-in name, or a path to a .wasm component (sent as an absolute path, which the
    /// scheduler then reads and watches; see --upload).
    policy: String,
    /// The scheduler's admin address (HOST:PORT).
    #[arg(long, env = "EBBTIDE_ADMIN_ADDRESS")]
    admin: String,
    /// Params as a JSON object; left out, the scheduler keeps the params it has.
    #[arg(long)]
    params: Option<String>,
    /// Send the component's bytes instead of its path (for a scheduler on another machine).
    #[arg(long)]
    upload: bool,
    /// The scheduler's token, if it has one.
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub fn run(args: SwapArgs) -> anyhow::Result<Outcome> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("http://{}/policy", args.admin);
    let mut request = agent.post(&url);
    if let Some(token) = &args.token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let builtin = builtin::find(&args.policy).is_some();
    let path = Path::new(&args.policy);
    let sent = if args.upload && !builtin {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(params) = &args.params {
            request = request.query("params", params);
        }
        request.content_type("application/wasm").send(&bytes[..])
    } else {
        let scaling = if builtin {
            args.policy.clone()
        } else {
            let absolute = std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
            absolute.display().to_string()
        };
        let mut body = serde_json::json!({ "scaling": scaling });
        if let Some(params) = &args.params {
            let params: serde_json::Value =
                serde_json::from_str(params).with_context(|| format!("--params {params:?} is not JSON"))?;
            body["params"] = params;
        }
        request.content_type("application/json").send(body.to_string().as_bytes())
    };
    let mut response = sent.with_context(|| format!("cannot reach the admin endpoint {url}"))?;
    let code = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let outcome: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    match (code, outcome) {
        (200, Some(o)) => {
            println!(
                "accepted: {} {} ({}) installed in {:.1} ms at {}",
                o["name"].as_str().unwrap_or("?"),
                o["digest"].as_str().unwrap_or("?"),
                o["source"].as_str().unwrap_or("?"),
                o["duration_ms"].as_f64().unwrap_or(0.0),
                o["at_ms"]
            );
            Ok(Outcome::Success)
        }
        (422, Some(o)) => {
            let r = &o["rejection"];
            println!("rejected at {}: {}", r["stage"].as_str().unwrap_or("?"), r["error"].as_str().unwrap_or("?"));
            println!("the active policy keeps serving");
            Ok(Outcome::Failed)
        }
        _ => anyhow::bail!("{url} answered {code}: {}", text.trim()),
    }
}
