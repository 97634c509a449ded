//! Reading a policy's params (a JSON object) with errors that name the key and what it accepts.
//!
//! Each param is declared once as a [`ParamSpec`]: its name, kind, default (as JSON) and doc. The same
//! table feeds `describe()` and the reader, so documentation and behaviour cannot drift apart.
//!
//! ```
//! use ebbtide_sdk::{ParamReader, ParamSpec};
//! const PARAMS: &[ParamSpec] = &[ParamSpec::new("ratio", "number > 0", "10", "scale up above this")];
//! let mut p = ParamReader::new(PARAMS, r#"{"ratio": "ten"}"#).unwrap();
//! let _ = p.number("ratio", |v| v > 0.0);
//! let errors = p.finish(()).unwrap_err();
//! assert_eq!(errors, vec![r#"ratio: expected number > 0, got "ten""#]);
//! ```

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::model::ParamInfo;

/// One declared param. `kind` is what it accepts, in words ("integer >= 0"); `default` is JSON.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

impl ParamSpec {
    pub const fn new(name: &'static str, kind: &'static str, default: &'static str, doc: &'static str) -> Self {
        ParamSpec { name, kind, default, doc }
    }

    pub fn info(&self) -> ParamInfo {
        ParamInfo {
            name: self.name.to_owned(),
            kind: self.kind.to_owned(),
            default: self.default.to_owned(),
            doc: self.doc.to_owned(),
        }
    }
}

/// `upper_task_ratio`, with a policy's own default (read with [`ParamReader::task_ratios`]).
pub const fn upper_task_ratio(default: &'static str) -> ParamSpec {
    ParamSpec::new("upper_task_ratio", "a number > 0", default, "scale up when tasks per worker exceed this")
}

/// `lower_task_ratio`, with a policy's own default (read with [`ParamReader::task_ratios`]).
pub const fn lower_task_ratio(default: &'static str) -> ParamSpec {
    ParamSpec::new(
        "lower_task_ratio",
        "a number > 0 and <= upper_task_ratio",
        default,
        "scale down when tasks per worker fall below this",
    )
}

/// The start budget shared by every call of a decision (docs/builtins.md#the-common-model).
pub const MAX_STARTS_PER_TICK: ParamSpec =
    ParamSpec::new("max_starts_per_tick", "an integer >= 0", "0", "groups started per decision at most; 0 = unlimited");

/// The idle rule for shutting down running groups.
pub const MIN_IDLE_MS: ParamSpec =
    ParamSpec::new("min_idle_ms", "an integer >= 0", "0", "running groups must be idle this long to be shut down");

pub const MAX_SHUTDOWNS_PER_TICK: ParamSpec =
    ParamSpec::new("max_shutdowns_per_tick", "an integer >= 0", "1", "groups shut down per decision at most");

/// The `ParamInfo` list of a spec table, for `describe()`.
pub fn infos(specs: &[ParamSpec]) -> Vec<ParamInfo> {
    specs.iter().map(ParamSpec::info).collect()
}

/// Reads declared params from a JSON object, collecting every error instead of stopping at the first.
pub struct ParamReader {
    specs: &'static [ParamSpec],
    given: Map<String, Value>,
    errors: Vec<String>,
}

impl ParamReader {
    /// Parses `json` (an object; an empty string means `{}`) and rejects keys not in `specs`.
    pub fn new(specs: &'static [ParamSpec], json: &str) -> Result<Self, Vec<String>> {
        let given = match json.trim() {
            "" => Map::new(),
            text => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                Ok(other) => return Err(vec![format!("params: expected a JSON object, got {}", kind_of(&other))]),
                Err(e) => return Err(vec![format!("params: not valid JSON ({e})")]),
            },
        };
        let accepted: Vec<&str> = specs.iter().map(|s| s.name).collect();
        let errors = given
            .keys()
            .filter(|k| !accepted.contains(&k.as_str()))
            .map(|k| format!("{k}: unknown param; accepted: {}", accepted.join(", ")))
            .collect();
        Ok(ParamReader { specs, given, errors })
    }

    fn spec(&self, name: &str) -> &'static ParamSpec {
        // Policies only read names they declared; a miss is a bug in the policy, caught by its tests.
        self.specs.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("param {name} is not declared"))
    }

    /// The given value, or the declared default.
    pub fn raw(&self, name: &str) -> Value {
        match self.given.get(name) {
            Some(v) => v.clone(),
            None => serde_json::from_str(self.spec(name).default).unwrap_or(Value::Null),
        }
    }

    /// Whether the caller gave this param (rather than leaving the default).
    pub fn is_given(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }

    fn reject(&mut self, name: &str, got: &Value) {
        let kind = self.spec(name).kind;
        let origin = self.origin(name);
        self.errors.push(format!("{name}: expected {kind}, got {got}{origin}"));
    }

    /// Said after a value that was not given: a default that fails (against another param, say)
    /// must not read as if the caller had written it.
    pub fn origin(&self, name: &str) -> &'static str {
        if self.is_given(name) { "" } else { " (the policy's default)" }
    }

    /// Records an error about a param, for checks that span several params.
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// A number that `accept` approves.
    pub fn number(&mut self, name: &str, accept: impl Fn(f64) -> bool) -> f64 {
        self.opt_number(name, accept).unwrap_or(0.0)
    }

    /// A number or null.
    pub fn opt_number(&mut self, name: &str, accept: impl Fn(f64) -> bool) -> Option<f64> {
        let v = self.raw(name);
        match v.as_f64() {
            Some(x) if x.is_finite() && accept(x) => Some(x),
            None if v.is_null() => None,
            _ => {
                self.reject(name, &v);
                None
            }
        }
    }

    /// A non-negative integer that `accept` approves.
    pub fn uint(&mut self, name: &str, accept: impl Fn(u64) -> bool) -> u64 {
        self.opt_uint(name, accept).unwrap_or(0)
    }

    /// A non-negative integer or null.
    pub fn opt_uint(&mut self, name: &str, accept: impl Fn(u64) -> bool) -> Option<u64> {
        let v = self.raw(name);
        match v.as_u64() {
            Some(x) if accept(x) => Some(x),
            None if v.is_null() => None,
            _ => {
                self.reject(name, &v);
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str) -> bool {
        let v = self.raw(name);
        v.as_bool().unwrap_or_else(|| {
            self.reject(name, &v);
            false
        })
    }

    /// A required, non-empty string (the default is usually `null`, so leaving it out is an error).
    pub fn required_string(&mut self, name: &str) -> String {
        let v = self.raw(name);
        match v.as_str() {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => {
                let kind = self.spec(name).kind;
                self.errors.push(format!("{name}: required: expected {kind}, got {v}"));
                String::new()
            }
        }
    }

    /// One of `options`.
    pub fn choice(&mut self, name: &str, options: &[&str]) -> String {
        let v = self.raw(name);
        match v.as_str() {
            Some(s) if options.contains(&s) => s.to_owned(),
            _ => {
                self.reject(name, &v);
                options.first().map(|s| s.to_string()).unwrap_or_default()
            }
        }
    }

    /// A structured value (a list or an object); serde's message says what was wrong inside it.
    pub fn structured<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        let v = self.raw(name);
        match serde_json::from_value(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let kind = self.spec(name).kind;
                self.errors.push(format!("{name}: expected {kind} ({e})"));
                None
            }
        }
    }

    /// `upper_task_ratio` and `lower_task_ratio`, shared by the ratio policies: `0 < lower <= upper`.
    pub fn task_ratios(&mut self) -> (f64, f64) {
        let upper = self.number("upper_task_ratio", |v| v > 0.0);
        let lower = self.number("lower_task_ratio", |v| v > 0.0);
        if lower > upper && upper > 0.0 {
            let (upper_origin, lower_origin) = (self.origin("upper_task_ratio"), self.origin("lower_task_ratio"));
            self.error(format!(
                "lower_task_ratio: expected a number > 0 and <= upper_task_ratio ({upper}{upper_origin}), got \
                 {lower}{lower_origin}"
            ));
        }
        (upper, lower)
    }

    /// The parsed params, or every error found.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.errors.is_empty() { Ok(value) } else { Err(self.errors) }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
