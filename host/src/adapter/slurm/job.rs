//! One worker group as one Slurm job: its tag (the job name), its `sbatch` arguments and its batch
//! script.
//!
//! The job name `ebbtide-<adapter id>-<group id>` is how the adapter finds its jobs again in `squeue`,
//! including jobs an earlier run left behind. The job has `workers_per_group` tasks; the script runs
//! one worker per task with `srun`, so Slurm places, signals and accounts for each worker.

use std::collections::BTreeMap;

use ebbtide_sdk::CapMap;

use super::SlurmSettings;

/// The job-name prefix of one adapter's jobs.
#[derive(Clone, Debug)]
pub struct JobTag {
    prefix: String,
}

impl JobTag {
    pub fn new(adapter_id: &str) -> Result<JobTag, String> {
        if adapter_id.is_empty()
            || adapter_id.len() > 64
            || !adapter_id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(format!(
                "adapter id {adapter_id:?}: a Slurm adapter's id goes into job names, so it must be 1 to 64 \
                 letters, digits or _-. characters"
            ));
        }
        Ok(JobTag { prefix: format!("ebbtide-{adapter_id}-") })
    }

    pub fn name(&self, group_id: u64) -> String {
        format!("{}{group_id}", self.prefix)
    }

    /// The group of a job with this name, if the job is one of ours.
    pub fn group_of(&self, job_name: &str) -> Option<u64> {
        job_name.strip_prefix(&self.prefix)?.parse().ok()
    }
}

/// Checks what the operator configured, so a mistake stops start-up instead of failing every start.
pub fn validate(settings: &SlurmSettings) -> Result<(), String> {
    for (key, value) in
        [("partition", &settings.partition), ("account", &settings.account), ("time_limit", &settings.time_limit)]
    {
        if let Some(v) = value
            && (v.is_empty() || v.chars().any(char::is_whitespace))
        {
            return Err(format!(
                "slurm {key} {v:?}: expected one word, e.g. partition = \"debug\", time_limit = \"01:00:00\""
            ));
        }
    }
    for arg in &settings.sbatch_args {
        if !arg.starts_with('-') {
            return Err(format!(
                "slurm sbatch_args: {arg:?} is not an option; each item is one sbatch option, e.g. \"--qos=normal\""
            ));
        }
    }
    for (capability, template) in &settings.requests {
        if template.split_whitespace().next().is_none() || !template.split_whitespace().all(|a| a.starts_with('-')) {
            return Err(format!(
                "slurm requests: {capability} = {template:?}: expected sbatch options, {{value}} standing for the \
                 capability's value, e.g. gpu = \"--gres=gpu:{{value}}\" or gpu = \"--constraint=gpu\""
            ));
        }
    }
    Ok(())
}

/// `sbatch`'s options for one group: name, size and defaults first, then what the capabilities ask
/// for, then the operator's `sbatch_args`, which win where they repeat an option (sbatch keeps the
/// last). The script comes on stdin.
pub fn sbatch_args(
    settings: &SlurmSettings,
    tag: &JobTag,
    group_id: u64,
    workers_per_group: u32,
    requested: &CapMap,
) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_owned(),
        format!("--job-name={}", tag.name(group_id)),
        format!("--ntasks={workers_per_group}"),
        "--output=/dev/null".to_owned(),
    ];
    if let Some(p) = &settings.partition {
        args.push(format!("--partition={p}"));
    }
    if let Some(a) = &settings.account {
        args.push(format!("--account={a}"));
    }
    if let Some(t) = &settings.time_limit {
        args.push(format!("--time={t}"));
    }
    args.extend(requests(&settings.requests, requested));
    args.extend(settings.sbatch_args.iter().cloned());
    args
}

/// The requests of the capabilities a start asks for. `{value}` is the capability's quantity (1 for
/// a name without one). Several `--constraint`s are joined with `&` (all must hold), since sbatch
/// would keep only the last. Capabilities without a mapping ask Slurm for nothing.
fn requests(mapping: &BTreeMap<String, String>, requested: &CapMap) -> Vec<String> {
    let mut args = Vec::new();
    let mut constraints = Vec::new();
    for (name, value) in requested {
        let Some(template) = mapping.get(name) else { continue };
        let value = if *value == -1 { 1 } else { *value };
        for arg in template.split_whitespace() {
            let arg = arg.replace("{value}", &value.to_string());
            match arg.strip_prefix("--constraint=") {
                Some(c) => constraints.push(c.to_owned()),
                None => args.push(arg),
            }
        }
    }
    if !constraints.is_empty() {
        args.push(format!("--constraint={}", constraints.join("&")));
    }
    args
}

/// The batch script: one worker per task, through `srun`.
pub fn script(command: &[String], worker_args: &[String]) -> String {
    let words: Vec<String> = command.iter().chain(worker_args).map(|w| quote(w)).collect();
    format!("#!/bin/sh\n# an ebbtide worker group: one worker per task\nexec srun {}\n", words.join(" "))
}

/// A word for `sh`, single-quoted.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(pairs: &[(&str, i64)]) -> CapMap {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn tags_find_only_this_adapters_groups() {
        let tag = JobTag::new("gpu-a").unwrap();
        assert_eq!(tag.name(17), "ebbtide-gpu-a-17");
        assert_eq!(tag.group_of("ebbtide-gpu-a-17"), Some(17));
        assert_eq!(tag.group_of("ebbtide-gpu-ab-17"), None);
        assert_eq!(JobTag::new("gpu").unwrap().group_of("ebbtide-gpu-a-17"), None);
        assert!(JobTag::new("has space").unwrap_err().contains("letters, digits"));
    }

    #[test]
    fn capabilities_become_requests_and_operator_args_come_last() {
        let settings = SlurmSettings {
            partition: Some("debug".into()),
            time_limit: Some("10".into()),
            sbatch_args: vec!["--output=/tmp/%j.out".into()],
            requests: [
                ("gpu".to_owned(), "--gres=gpu:{value} --constraint=gpu".to_owned()),
                ("avx".to_owned(), "--constraint=avx512".to_owned()),
            ]
            .into(),
            ..SlurmSettings::default()
        };
        let args =
            sbatch_args(&settings, &JobTag::new("s").unwrap(), 3, 2, &caps(&[("gpu", 2), ("avx", -1), ("linux", -1)]));
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=ebbtide-s-3",
                "--ntasks=2",
                "--output=/dev/null",
                "--partition=debug",
                "--time=10",
                "--gres=gpu:2",
                "--constraint=avx512&gpu",
                "--output=/tmp/%j.out"
            ]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let bad =
            SlurmSettings { requests: [("gpu".to_owned(), "gres=gpu:1".to_owned())].into(), ..Default::default() };
        assert!(validate(&bad).unwrap_err().contains("gpu = \"gres=gpu:1\""));
        let bad = SlurmSettings { sbatch_args: vec!["qos=normal".into()], ..Default::default() };
        assert!(validate(&bad).unwrap_err().contains("\"qos=normal\""));
        let bad = SlurmSettings { partition: Some("a b".into()), ..Default::default() };
        assert!(validate(&bad).unwrap_err().contains("partition"));
    }

    #[test]
    fn the_script_quotes_every_word() {
        let s = script(&["python3".into(), "-m".into(), "ebbtide.worker".into()], &["it's".into()]);
        assert!(s.ends_with("exec srun 'python3' '-m' 'ebbtide.worker' 'it'\\''s'\n"), "{s}");
    }
}
