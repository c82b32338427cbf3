//! `omni test`: policy unit tests.
//!
//! A test file `NAME.omni.test.toml` sits beside the policy `NAME.omni` it
//! tests. Each `[[cases]]` entry gives a context and what the decision must
//! show:
//!
//! ```toml
//! # optional, for every case: the policy (default: this file's name without
//! # `.test.toml`), the profile (default strict) and `now`
//! # (default 2026-01-01T00:00:00Z)
//! profile = "strict"
//! now = "2026-01-01T00:00:00Z"
//!
//! [[cases]]
//! name = "low_battery"
//! context = { Battery = 15 }              # or context_file = "x.json" (beside this file)
//! fires = ["ReturnToHome", "Notify(depot)"]  # each must fire (any order, others may too)
//! not_fires = ["GroundFleet"]             # none of these may fire
//! outcomes = { R2 = "else_fired", "31" = "unknown" }  # by rule id or by line
//! warnings = ["missing"]                  # runtime warning codes that must appear
//! ```
//!
//! Also per case: `exact = true` (the actions fired are exactly `fires`),
//! `error = "budget_exceeded"` (the evaluation must fail with this code),
//! `fuel = N` (the evaluation's step budget), `now`, `profile`.
//!
//! A case with a key it does not know fails, naming the key and the valid
//! ones; the other cases of the file still run.
//!
//! After the run, the report lists for each policy the rules that no case
//! fired (`fired` is 0 in every decision).

use crate::ast::walk_rules;
use crate::decision::{Decision, FiredAction};
use crate::options::{CheckOptions, EvalLimits, EvalOptions, Profile, DEFAULT_MAX_POLICY_BYTES};
use crate::policy::CompiledPolicy;
use crate::value::{Context, ContextLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The suffix of a test file.
pub const SUFFIX: &str = ".omni.test.toml";

/// `now` when neither the case nor the file gives one.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ProfileName {
    Strict,
    Lenient,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    policy: Option<String>,
    profile: Option<ProfileName>,
    now: Option<toml::Value>,
    /// Read one by one, so that a case with an unknown key fails alone.
    #[serde(default)]
    cases: Vec<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    context: Option<toml::Table>,
    context_file: Option<String>,
    now: Option<toml::Value>,
    profile: Option<ProfileName>,
    fuel: Option<u64>,
    #[serde(default)]
    fires: Vec<String>,
    #[serde(default)]
    not_fires: Vec<String>,
    #[serde(default)]
    exact: bool,
    error: Option<String>,
    #[serde(default)]
    outcomes: toml::Table,
    #[serde(default)]
    warnings: Vec<String>,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// `policy_stem::case_name`.
    pub name: String,
    /// The test file.
    pub file: String,
    pub ok: bool,
    /// What did not hold, one message per expectation.
    pub failures: Vec<String>,
    /// The actions the decision fired, as `Name(arg, …)`.
    pub actions: Vec<String>,
    /// The evaluation's error code, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A rule that no case fired.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnfiredRule {
    pub id: String,
    pub line: u32,
    /// Its ELSE actions fired in some case.
    pub else_fired: bool,
}

/// Rule coverage of one policy over all the cases that evaluated it.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub policy: String,
    pub rules: usize,
    pub fired: usize,
    pub unfired: Vec<UnfiredRule>,
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    pub coverage: Vec<Coverage>,
    pub passed: usize,
    pub failed: usize,
}

/// The limits a run applies; the command line sets them.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// The largest policy a test file may name.
    pub max_policy_bytes: usize,
    pub context: ContextLimits,
    /// The evaluation's limits; a case's `fuel` replaces `eval.fuel`.
    pub eval: EvalLimits,
}

impl Default for RunLimits {
    /// The language's defaults.
    fn default() -> Self {
        RunLimits {
            max_policy_bytes: DEFAULT_MAX_POLICY_BYTES,
            context: ContextLimits::default(),
            eval: EvalLimits::default(),
        }
    }
}

/// Finds the test files under the given paths (files, policies or
/// directories, searched recursively). `Err` names a path that is not there
/// or not a test.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let default = [PathBuf::from(".")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{}: no such file or directory", p.display()),
            _ => format!("{}: {e}", p.display()),
        })?;
        if meta.is_dir() {
            walk(p, &mut out).map_err(|e| format!("{}: {e}", p.display()))?;
        } else if name_of(p).ends_with(SUFFIX) {
            out.push(p.clone());
        } else if name_of(p).ends_with(".omni") {
            let t = PathBuf::from(format!("{}.test.toml", p.display()));
            if !t.is_file() {
                return Err(format!("{} has no test file {}", p.display(), t.display()));
            }
            out.push(t);
        } else {
            return Err(format!(
                "{} is not a test file (`*{SUFFIX}`), a policy or a directory",
                p.display()
            ));
        }
    }
    out.dedup();
    Ok(out)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let name = name_of(&p);
        if p.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(&p, out)?;
            }
        } else if name.ends_with(SUFFIX) {
            out.push(p);
        }
    }
    Ok(())
}

/// What the cases of all files found about one policy.
#[derive(Default)]
struct PolicyRuns {
    /// Rules (id, line) in source order, from the first compile.
    rules: Vec<(String, u32)>,
    fired: BTreeMap<String, bool>,
    else_fired: BTreeMap<String, bool>,
    evaluated: bool,
}

/// Runs the test files; never fails (problems become failed cases).
pub fn run_files(files: &[PathBuf], limits: &RunLimits) -> Report {
    let mut cases = Vec::new();
    let mut runs: Vec<(String, PolicyRuns)> = Vec::new();
    for f in files {
        run_file(f, limits, &mut cases, &mut runs);
    }
    let coverage = runs
        .into_iter()
        .filter(|(_, r)| r.evaluated)
        .map(|(policy, r)| {
            let unfired: Vec<UnfiredRule> = r
                .rules
                .iter()
                .filter(|(id, _)| !r.fired.get(id).copied().unwrap_or(false))
                .map(|(id, line)| UnfiredRule {
                    id: id.clone(),
                    line: *line,
                    else_fired: r.else_fired.get(id).copied().unwrap_or(false),
                })
                .collect();
            Coverage {
                policy,
                rules: r.rules.len(),
                fired: r.rules.len() - unfired.len(),
                unfired,
            }
        })
        .collect();
    let failed = cases.iter().filter(|c: &&CaseResult| !c.ok).count();
    Report {
        passed: cases.len() - failed,
        failed,
        cases,
        coverage,
    }
}

fn profile_of(p: Option<ProfileName>) -> Profile {
    match p {
        Some(ProfileName::Lenient) => Profile::Lenient,
        _ => Profile::Strict,
    }
}

fn time_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn run_file(
    path: &Path,
    limits: &RunLimits,
    cases: &mut Vec<CaseResult>,
    runs: &mut Vec<(String, PolicyRuns)>,
) {
    let file = path.display().to_string();
    let name = name_of(path);
    let stem = name.strip_suffix(SUFFIX).unwrap_or(&name).to_string();
    let dir = path.parent().unwrap_or(Path::new(""));
    let file_failure = |msg: String| CaseResult {
        name: format!("{stem}::(test file)"),
        file: file.clone(),
        ok: false,
        failures: vec![msg],
        actions: Vec::new(),
        error: None,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            cases.push(file_failure(format!("cannot read {file}: {e}")));
            return;
        }
    };
    let tf: TestFile = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            cases.push(file_failure(format!(
                "{file} is not a valid test file: {e}"
            )));
            return;
        }
    };
    if tf.cases.is_empty() {
        cases.push(file_failure(format!(
            "{file} has no `[[cases]]`; add at least one"
        )));
        return;
    }
    let policy_path = match &tf.policy {
        Some(p) => dir.join(p),
        None => dir.join(format!("{stem}.omni")),
    };
    let policy_name = policy_path.display().to_string();
    let source = match std::fs::read_to_string(&policy_path) {
        Ok(s) => s,
        Err(e) => {
            cases.push(file_failure(format!(
                "cannot read the policy {policy_name}: {e}"
            )));
            return;
        }
    };
    if source.len() > limits.max_policy_bytes {
        cases.push(file_failure(format!(
            "the policy {policy_name} is {} bytes; the limit is {} (`policy_too_large`)",
            source.len(),
            limits.max_policy_bytes
        )));
        return;
    }
    let run_index = match runs.iter().position(|(p, _)| *p == policy_name) {
        Some(i) => i,
        None => {
            runs.push((policy_name.clone(), PolicyRuns::default()));
            runs.len() - 1
        }
    };
    let mut compiled: Vec<(Profile, Result<Arc<CompiledPolicy>, String>)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    // Each case is read on its own: one with an unknown key fails alone.
    let parsed: Vec<Result<Case, String>> = tf
        .cases
        .iter()
        .map(|v| v.clone().try_into::<Case>().map_err(|e| e.to_string()))
        .collect();
    for (i, (case, raw)) in parsed.iter().zip(&tf.cases).enumerate() {
        let case = match case {
            Ok(c) => c,
            Err(e) => {
                // Named as well as the table allows, so the report points at it.
                let name = raw
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .map_or_else(|| format!("#{}", i + 1), str::to_string);
                cases.push(CaseResult {
                    name: format!("{stem}::{name}"),
                    file: file.clone(),
                    ok: false,
                    failures: vec![format!(
                        "case {} of {file} is not a valid case: {}",
                        i + 1,
                        e.trim_end()
                    )],
                    actions: Vec::new(),
                    error: None,
                });
                continue;
            }
        };
        let mut failures = Vec::new();
        if seen.contains(&case.name.as_str()) {
            failures.push(format!(
                "another case of {file} is also named `{}`",
                case.name
            ));
        }
        seen.push(&case.name);
        let profile = profile_of(case.profile.or(tf.profile));
        let policy = match compiled.iter().find(|(p, _)| *p == profile) {
            Some((_, r)) => r.clone(),
            None => {
                let opts = CheckOptions {
                    profile,
                    ..CheckOptions::default()
                };
                let c = crate::compile(&source, &opts);
                let r = c.policy.clone().ok_or_else(|| {
                    let errors: Vec<_> = c.errors().cloned().collect();
                    format!(
                        "the policy {policy_name} has errors under the {} profile:\n{}",
                        if profile == Profile::Strict {
                            "strict"
                        } else {
                            "lenient"
                        },
                        crate::diagnostics::render_human(&policy_name, &source, &errors, false)
                            .trim_end()
                    )
                });
                compiled.push((profile, r.clone()));
                r
            }
        };
        let mut result = CaseResult {
            name: format!("{stem}::{}", case.name),
            file: file.clone(),
            ok: false,
            failures: Vec::new(),
            actions: Vec::new(),
            error: None,
        };
        match policy {
            Err(msg) => failures.push(msg),
            Ok(policy) => {
                let runs = &mut runs[run_index].1;
                if runs.rules.is_empty() {
                    walk_rules(&policy.rules, &mut |r, _| {
                        runs.rules.push((r.id.to_string(), r.span.line))
                    });
                }
                let run = Run {
                    file: &tf,
                    dir,
                    policy: &policy,
                    limits,
                };
                run_case(case, &run, runs, &mut result, &mut failures);
            }
        }
        result.ok = failures.is_empty();
        result.failures = failures;
        cases.push(result);
    }
}

/// The context of a case, as JSON bytes.
fn context_bytes(case: &Case, dir: &Path) -> Result<Vec<u8>, String> {
    match (&case.context, &case.context_file) {
        (Some(_), Some(_)) => Err("give `context` or `context_file`, not both".into()),
        (None, Some(f)) => {
            let p = dir.join(f);
            std::fs::read(&p).map_err(|e| format!("cannot read the context {}: {e}", p.display()))
        }
        (Some(t), None) => {
            let json = toml_to_json(&toml::Value::Table(t.clone()))?;
            serde_json::to_vec(&json).map_err(|e| e.to_string())
        }
        (None, None) => Ok(b"{}".to_vec()),
    }
}

fn toml_to_json(v: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => J::Number(
            serde_json::Number::from_f64(*f)
                .ok_or_else(|| format!("the context value {f} is not a finite number"))?,
        ),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(
            items
                .iter()
                .map(toml_to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        toml::Value::Table(t) => {
            let mut m = serde_json::Map::new();
            for (k, v) in t {
                m.insert(k.clone(), toml_to_json(v)?);
            }
            J::Object(m)
        }
    })
}

/// What the cases of one test file share.
struct Run<'a> {
    file: &'a TestFile,
    dir: &'a Path,
    policy: &'a CompiledPolicy,
    limits: &'a RunLimits,
}

fn run_case(
    case: &Case,
    run: &Run,
    runs: &mut PolicyRuns,
    result: &mut CaseResult,
    failures: &mut Vec<String>,
) {
    let Run {
        file: tf,
        dir,
        policy,
        limits,
    } = *run;
    let now_text = case
        .now
        .as_ref()
        .or(tf.now.as_ref())
        .map(time_text)
        .unwrap_or_else(|| DEFAULT_NOW.to_string());
    let Some(now) = crate::timefmt::parse_rfc3339(&now_text) else {
        failures.push(format!(
            "`now = {now_text}` is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)"
        ));
        return;
    };
    let bytes = match context_bytes(case, dir) {
        Ok(b) => b,
        Err(e) => {
            failures.push(e);
            return;
        }
    };
    let opts = EvalOptions {
        limits: EvalLimits {
            fuel: case.fuel.unwrap_or(limits.eval.fuel),
            ..limits.eval
        },
        ..EvalOptions::default()
    };
    let outcome = Context::from_json(&bytes, &limits.context)
        .map_err(|e| (e.code().to_string(), e.to_string()))
        .and_then(|ctx| {
            crate::evaluate(policy, &ctx, now, &opts)
                .map_err(|e| (e.code().to_string(), e.to_string()))
        });
    let decision = match (outcome, &case.error) {
        (Err((code, msg)), Some(want)) => {
            result.error = Some(code.clone());
            if code != *want {
                failures.push(format!(
                    "expected the error `{want}`, but the evaluation failed with `{code}`: {msg}"
                ));
            }
            return;
        }
        (Err((code, msg)), None) => {
            result.error = Some(code.clone());
            failures.push(format!("the evaluation failed with `{code}`: {msg}"));
            return;
        }
        (Ok(d), want) => {
            result.actions = d.action_strings();
            if let Some(want) = want {
                failures.push(format!(
                    "expected the error `{want}`, but the evaluation succeeded with the actions: {}",
                    list(&result.actions)
                ));
            }
            d
        }
    };
    runs.evaluated = true;
    for r in &decision.rules {
        if r.fired > 0 {
            runs.fired.insert(r.id.to_string(), true);
        }
        if r.outcome == crate::decision::Outcome::ElseFired {
            runs.else_fired.insert(r.id.to_string(), true);
        }
    }
    check_decision(case, &decision, &result.actions, failures);
}

fn list(actions: &[String]) -> String {
    if actions.is_empty() {
        "(none)".into()
    } else {
        actions.join(", ")
    }
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// `Name` matches the action by name; `Name(args)` by name and arguments
/// (as the decision shows them: `Notify(depot)`, `Recharge(DR-7, 18)`,
/// blanks ignored); `Name()` an action with no arguments.
fn matches_action(want: &str, a: &FiredAction) -> bool {
    let want = want.trim();
    match want.find('(') {
        None => *a.name == *want,
        Some(i) => {
            let name = want[..i].trim();
            if squash(&want[i..]) == "()" {
                return *a.name == *name && a.args.is_empty();
            }
            *a.name == *name && squash(want) == squash(&a.display())
        }
    }
}

fn check_decision(case: &Case, d: &Decision, actions: &[String], failures: &mut Vec<String>) {
    for want in &case.fires {
        if !d.actions.iter().any(|a| matches_action(want, a)) {
            failures.push(format!(
                "expected `{want}` to fire, but it did not; the actions were: {}",
                list(actions)
            ));
        }
    }
    for not in &case.not_fires {
        if let Some(a) = d.actions.iter().find(|a| matches_action(not, a)) {
            failures.push(format!(
                "expected `{not}` not to fire, but `{}` fired (rule {}, line {}); the actions were: {}",
                a.display(),
                a.rule,
                a.line,
                list(actions)
            ));
        }
    }
    if case.exact {
        let extra: Vec<String> = d
            .actions
            .iter()
            .filter(|a| !case.fires.iter().any(|w| matches_action(w, a)))
            .map(FiredAction::display)
            .collect();
        if !extra.is_empty() {
            failures.push(format!(
                "expected exactly [{}] to fire, but these fired too: {}",
                case.fires.join(", "),
                extra.join(", ")
            ));
        }
    }
    for (key, want) in &case.outcomes {
        let Some(want) = want.as_str() else {
            failures.push(format!(
                "outcomes.{key} must be a string: fired, not_fired, unknown or else_fired"
            ));
            continue;
        };
        if !matches!(want, "fired" | "not_fired" | "unknown" | "else_fired") {
            failures.push(format!(
                "outcomes.{key} = \"{want}\" is not an outcome: use fired, not_fired, unknown or else_fired"
            ));
            continue;
        }
        let rule = match key.parse::<u32>() {
            Ok(line) => d.rules.iter().find(|r| r.line == line),
            Err(_) => d.rules.iter().find(|r| *r.id == **key),
        };
        let Some(rule) = rule else {
            let what = if key.parse::<u32>().is_ok() {
                format!("no rule starts at line {key}")
            } else {
                format!("there is no rule `{key}`")
            };
            failures.push(format!("outcomes: {what}"));
            continue;
        };
        let got = serde_json::to_value(rule.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if got != want {
            failures.push(format!(
                "expected rule {} (line {}) to be `{want}`, but it was `{got}`; the actions were: {}",
                rule.id,
                rule.line,
                list(actions)
            ));
        }
    }
    for code in &case.warnings {
        if !d.warnings.iter().any(|w| w.code == code) {
            let got: Vec<String> = d
                .warnings
                .iter()
                .map(|w| format!("{} ({})", w.code, w.message))
                .collect();
            failures.push(format!(
                "expected a `{code}` warning, but the warnings were: {}",
                if got.is_empty() {
                    "(none)".into()
                } else {
                    got.join("; ")
                }
            ));
        }
    }
}

/// The human report, in the shape of `cargo test`'s, ending in one summary
/// line: `N passed, N failed`.
pub fn render_human(r: &Report) -> String {
    let mut s = String::new();
    let n = r.cases.len();
    s.push_str(&format!(
        "\nrunning {n} test{}\n",
        if n == 1 { "" } else { "s" }
    ));
    for c in &r.cases {
        s.push_str(&format!(
            "test {} ... {}\n",
            c.name,
            if c.ok { "ok" } else { "FAILED" }
        ));
    }
    if r.failed > 0 {
        s.push_str("\nfailures:\n");
        for c in r.cases.iter().filter(|c| !c.ok) {
            s.push_str(&format!("\n---- {} ({}) ----\n", c.name, c.file));
            for f in &c.failures {
                s.push_str(f);
                s.push('\n');
            }
        }
        s.push_str("\nfailures:\n");
        for c in r.cases.iter().filter(|c| !c.ok) {
            s.push_str(&format!("    {}\n", c.name));
        }
    }
    if !r.coverage.is_empty() {
        s.push_str("\nrule coverage:\n");
        for c in &r.coverage {
            if c.unfired.is_empty() {
                s.push_str(&format!("    {}: all {} rules fired\n", c.policy, c.rules));
                continue;
            }
            let never: Vec<String> = c
                .unfired
                .iter()
                .map(|u| {
                    format!(
                        "{} (line {}){}",
                        u.id,
                        u.line,
                        if u.else_fired { ", only its ELSE" } else { "" }
                    )
                })
                .collect();
            s.push_str(&format!(
                "    {}: {} of {} rules fired; never fired: {}\n",
                c.policy,
                c.fired,
                c.rules,
                never.join(", ")
            ));
        }
    }
    s.push_str(&format!("\n{} passed, {} failed\n", r.passed, r.failed));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Bindings;
    use crate::value::Value;

    fn action(name: &str, args: Vec<Value>) -> FiredAction {
        FiredAction {
            name: Arc::from(name),
            args,
            rule: Arc::from("R1"),
            line: 1,
            bindings: Bindings::default(),
            count: 1,
        }
    }

    #[test]
    fn actions_match_by_name_or_with_arguments() {
        let a = action(
            "Notify",
            vec![Value::str("lead aircraft"), Value::Num(18.0)],
        );
        assert!(matches_action("Notify", &a));
        assert!(matches_action("Notify(lead aircraft, 18)", &a));
        assert!(matches_action(" Notify( lead aircraft,18 ) ", &a));
        assert!(!matches_action("Notify(lead aircraft)", &a));
        assert!(!matches_action("Notify()", &a));
        assert!(matches_action("Stop()", &action("Stop", vec![])));
        assert!(!matches_action("Notif", &a));
    }

    #[test]
    fn toml_contexts_keep_key_order_and_types() {
        let t: toml::Table =
            toml::from_str("b = 1\na = [2.5, \"x\", true]\n[c]\nz = 1\ny = 2").expect("toml");
        let j = toml_to_json(&toml::Value::Table(t)).expect("json");
        assert_eq!(
            serde_json::to_string(&j).expect("json"),
            r#"{"b":1,"a":[2.5,"x",true],"c":{"z":1,"y":2}}"#
        );
    }
}
