//! `omni policy …`: manage the policies stored in a running omnid through
//! its `/api/v1/policies` API (docs/api.md; docs/cli.md for the commands).
//! `client` owns the connection and the error messages, `render` the human
//! output, `rules` the rule-level diff.
//!
//! Exit codes (also in docs/cli.md): 0 success; 1 the server rejected the
//! policy (its diagnostics are printed); 2 usage or local input errors;
//! 4 the server refused the request (token, not found, quota, nothing to roll
//! back, bad name); 5 someone else changed the policy first (`If-Match` did
//! not hold: re-run); 6 omnid cannot be reached or cannot do it now
//! (connection, TLS, `503 store_unavailable`, overload, unexpected answer).

mod client;
mod render;
mod rules;

use crate::input::{display_name, read_input};
use crate::Format;
use clap::Subcommand;
use client::{Client, ClientError, ConnArgs, Method, Reply, Subject};
use std::io::Write;
use std::path::PathBuf;

/// The exit codes of `omni policy`.
pub mod exit {
    pub const OK: i32 = 0;
    pub const INVALID: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const REFUSED: i32 = 4;
    pub const CONFLICT: i32 = 5;
    pub const UNAVAILABLE: i32 = 6;
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 done; 1 the server rejected the policy; 2 usage or \
input error; 4 refused (token, not found, quota, nothing to roll back); 5 someone else \
changed the policy first (re-run); 6 omnid unreachable or unavailable."
)]
pub struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Store a policy file as a new revision (checked by the server) and
    /// activate it, unless --no-activate.
    Push(PushArgs),
    /// List the stored policies.
    List(FormatArg),
    /// Show a policy's active, served and latest revisions and its revisions,
    /// or with --revision print one revision's text.
    Show(ShowArgs),
    /// Make a stored revision the active one.
    Activate(ActivateArgs),
    /// Activate the revision that was active before the current one.
    Rollback(NameArgs),
    /// Show the text and the rules that changed between two revisions.
    Diff(DiffArgs),
    /// Show who changed a policy, when, and from which revision to which.
    History(HistoryArgs),
    /// Delete a policy (its revisions and history are kept; pushing the name
    /// again revives it).
    Delete(NameArgs),
}

#[derive(clap::Args, Debug)]
pub struct FormatArg {
    /// `json` prints the server's JSON answer as it is.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The policy's name, e.g. `fleet` or `fleet.eu-west` (the server says
    /// when a name is not allowed).
    name: String,
    /// The policy file; `-` reads standard input.
    file: PathBuf,
    /// Store the revision without making it active.
    #[arg(long)]
    no_activate: bool,
    /// Only if revision N is the active one, 0 for none (else exit 5,
    /// nothing stored).
    #[arg(long, value_name = "N")]
    if_match: Option<u64>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    name: String,
    /// Print the text of revision N instead.
    #[arg(long, value_name = "N", conflicts_with = "format")]
    revision: Option<u64>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(clap::Args, Debug)]
pub struct ActivateArgs {
    name: String,
    /// The revision to activate.
    revision: u64,
    /// The revision you expect to be active now, 0 for none (default: the
    /// one the server reports just before).
    #[arg(long, value_name = "N")]
    if_match: Option<u64>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    name: String,
    /// The revision you expect to be active now, 0 for none (default: the
    /// one the server reports just before).
    #[arg(long, value_name = "N")]
    if_match: Option<u64>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    name: String,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    name: String,
    /// The old revision: a number, `active` or `latest`.
    from: RevSpec,
    /// The new revision: a number, `active` or `latest`.
    to: RevSpec,
}

/// A revision as the user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevSpec {
    Number(u64),
    Active,
    Latest,
}

impl std::str::FromStr for RevSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(RevSpec::Active),
            "latest" => Ok(RevSpec::Latest),
            _ => s
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .map(RevSpec::Number)
                .ok_or_else(|| "expected a revision number (1, 2, …), `active` or `latest`".into()),
        }
    }
}

/// `omni policy`, with the process environment.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    run_with_env(args, &|k: &str| std::env::var(k).ok(), out, err)
}

/// `omni policy` with the environment given (the tests' seam).
pub fn run_with_env(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let result = client::resolve(&args.conn, env)
        .and_then(|target| Client::new(&target))
        .and_then(|c| dispatch(&c, &args.command, out, err));
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            e.exit_code()
        }
    }
}

fn dispatch(
    c: &Client,
    cmd: &PolicyCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, ClientError> {
    match cmd {
        PolicyCommand::Push(a) => push(c, a, out, err),
        PolicyCommand::List(f) => {
            let reply = expect_ok(
                c,
                c.send(Method::Get, &c.url(None, ""), None, None)?,
                &Subject::default(),
            )?;
            emit(c, out, f.format, &reply, |r: &render::PolicyList| {
                render::list(r)
            })
        }
        PolicyCommand::Show(a) => {
            let subject = Subject {
                name: Some(&a.name),
                revision: a.revision,
            };
            if let Some(n) = a.revision {
                let text = revision_text(c, &a.name, n)?;
                let _ = out.write_all(text.as_bytes());
                return Ok(exit::OK);
            }
            let reply = expect_ok(
                c,
                c.send(Method::Get, &c.url(Some(&a.name), ""), None, None)?,
                &subject,
            )?;
            emit(
                c,
                out,
                a.format.format,
                &reply,
                |d: &render::PolicyDetail| render::show(d),
            )
        }
        PolicyCommand::History(a) => {
            let subject = Subject {
                name: Some(&a.name),
                revision: None,
            };
            let url = c.url(Some(&a.name), "/history");
            let reply = expect_ok(c, c.send(Method::Get, &url, None, None)?, &subject)?;
            emit(c, out, a.format.format, &reply, |h: &render::History| {
                render::history(&a.name, h)
            })
        }
        PolicyCommand::Activate(a) => {
            let body = serde_json::json!({ "revision": a.revision }).to_string();
            change(
                c,
                &a.name,
                "/activate",
                Some(&body),
                a.if_match,
                a.format.format,
                out,
                |r| {
                    let r: render::Activated = parse(c, r)?;
                    Ok(format!(
                        "{}: active revision {} (was {})\n",
                        a.name,
                        render::rev(r.active_revision),
                        render::rev(r.previous_revision)
                    ))
                },
            )
        }
        PolicyCommand::Rollback(a) => change(
            c,
            &a.name,
            "/rollback",
            None,
            a.if_match,
            a.format.format,
            out,
            |r| {
                let r: render::Activated = parse(c, r)?;
                Ok(format!(
                    "{}: rolled back to revision {} (was {})\n",
                    a.name,
                    render::rev(r.active_revision),
                    render::rev(r.previous_revision)
                ))
            },
        ),
        PolicyCommand::Delete(a) => change(
            c,
            &a.name,
            "",
            None,
            a.if_match,
            a.format.format,
            out,
            |r| {
                let r: render::Activated = parse(c, r)?;
                Ok(format!(
                    "{}: deleted (active revision was {}); its revisions and history are kept\n",
                    a.name,
                    render::rev(r.previous_revision)
                ))
            },
        ),
        PolicyCommand::Diff(a) => diff(c, a, out),
    }
}

/// The reply when it is a success, else its error in the user's terms.
fn expect_ok(c: &Client, reply: Reply, subject: &Subject) -> Result<Reply, ClientError> {
    if reply.ok() {
        Ok(reply)
    } else {
        Err(c.error_for(&reply, subject))
    }
}

fn parse<T: serde::de::DeserializeOwned>(c: &Client, reply: &Reply) -> Result<T, ClientError> {
    serde_json::from_slice(&reply.body).map_err(|_| ClientError::Unexpected {
        server: c.server().to_string(),
        what: "an answer that is not the JSON of the policy API".into(),
    })
}

/// Prints a reply: as it came for `--format json`, else rendered.
fn emit<T: serde::de::DeserializeOwned>(
    c: &Client,
    out: &mut dyn Write,
    format: Format,
    reply: &Reply,
    human: impl FnOnce(&T) -> String,
) -> Result<i32, ClientError> {
    let text = match format {
        Format::Json => {
            let mut t = reply.text();
            if !t.ends_with('\n') {
                t.push('\n');
            }
            t
        }
        Format::Human => {
            let v: T = parse(c, reply)?;
            human(&v)
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(exit::OK)
}

fn policy_detail(c: &Client, name: &str) -> Result<render::PolicyDetail, ClientError> {
    let subject = Subject {
        name: Some(name),
        revision: None,
    };
    let reply = expect_ok(
        c,
        c.send(Method::Get, &c.url(Some(name), ""), None, None)?,
        &subject,
    )?;
    parse(c, &reply)
}

/// `If-Match` for the revision expected to be active, as omnid's `ETag`
/// writes it: `"0"` when none is (a policy only pushed with --no-activate,
/// or deleted).
fn if_match_value(active: Option<u64>) -> String {
    format!("\"{}\"", active.unwrap_or(0))
}

/// Activate, roll back or delete: conditional on the active revision the
/// user gave, or else the one the server reports just before.
#[allow(clippy::too_many_arguments)]
fn change(
    c: &Client,
    name: &str,
    rest: &str,
    json_body: Option<&str>,
    if_match: Option<u64>,
    format: Format,
    out: &mut dyn Write,
    human: impl FnOnce(&Reply) -> Result<String, ClientError>,
) -> Result<i32, ClientError> {
    let expected = match if_match {
        Some(n) => Some(n),
        None => policy_detail(c, name)?.active_revision,
    };
    let url = c.url(Some(name), rest);
    let precondition = if_match_value(expected);
    let method = if rest.is_empty() {
        Method::Delete
    } else {
        Method::Post
    };
    let body = json_body.map(|b| ("application/json", b.as_bytes()));
    let reply = c.send(method, &url, Some(&precondition), body)?;
    let subject = Subject {
        name: Some(name),
        revision: None,
    };
    if reply.status == 412 {
        return Err(conflict(c, name));
    }
    let reply = expect_ok(c, reply, &subject)?;
    match format {
        Format::Json => emit(c, out, format, &reply, |_: &serde_json::Value| {
            String::new()
        }),
        Format::Human => {
            let text = human(&reply)?;
            let _ = out.write_all(text.as_bytes());
            Ok(exit::OK)
        }
    }
}

/// The 412 error, naming the revision that is active now (asked again; if
/// that fails too, the error still says what happened).
fn conflict(c: &Client, name: &str) -> ClientError {
    let active = policy_detail(c, name).ok().and_then(|d| d.active_revision);
    ClientError::Conflict {
        name: name.to_string(),
        active,
    }
}

fn push(
    c: &Client,
    a: &PushArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, ClientError> {
    let file_name = display_name(&a.file);
    let bytes = read_input(&a.file).map_err(ClientError::Usage)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ClientError::Usage(format!("{file_name} is not UTF-8 text")))?;
    let url = c.url(
        Some(&a.name),
        if a.no_activate { "?activate=false" } else { "" },
    );
    let precondition = a.if_match.map(|n| if_match_value(Some(n)));
    let reply = c.send(
        Method::Put,
        &url,
        precondition.as_deref(),
        Some(("text/plain; charset=utf-8", text.as_bytes())),
    )?;
    let subject = Subject {
        name: Some(&a.name),
        revision: None,
    };
    if reply.status == 412 {
        return Err(conflict(c, &a.name));
    }
    let code = reply
        .api_error()
        .and_then(|e| omni::ErrorCode::parse(&e.code));
    if code == Some(omni::ErrorCode::PolicyInvalid) {
        if a.format.format == Format::Json {
            emit(c, out, Format::Json, &reply, |_: &serde_json::Value| {
                String::new()
            })?;
            return Ok(exit::INVALID);
        }
        let rejected: render::Rejected = parse(c, &reply)?;
        let diags = &rejected.diagnostics;
        let _ = write!(out, "{}", render::diagnostics(&file_name, &text, diags));
        let errors = diags.iter().filter(|d| d.is_error()).count();
        let others = diags.len() - errors;
        let _ = writeln!(
            out,
            "{file_name}: FAILED ({errors} errors, {others} warnings); {} was not stored",
            a.name
        );
        let _ = writeln!(
            err,
            "error: the server rejected the policy; nothing was stored"
        );
        return Ok(exit::INVALID);
    }
    let reply = expect_ok(c, reply, &subject)?;
    if a.format.format == Format::Json {
        return emit(c, out, Format::Json, &reply, |_: &serde_json::Value| {
            String::new()
        });
    }
    let pushed: render::Pushed = parse(c, &reply)?;
    let _ = write!(
        out,
        "{}",
        render::diagnostics(&file_name, &text, &pushed.warnings)
    );
    let _ = write!(out, "{}", render::pushed(&a.name, &pushed));
    Ok(exit::OK)
}

fn revision_text(c: &Client, name: &str, n: u64) -> Result<String, ClientError> {
    let subject = Subject {
        name: Some(name),
        revision: Some(n),
    };
    let url = c.url(Some(name), &format!("/revisions/{n}"));
    let reply = expect_ok(c, c.send(Method::Get, &url, None, None)?, &subject)?;
    String::from_utf8(reply.body).map_err(|_| ClientError::Unexpected {
        server: c.server().to_string(),
        what: format!("revision {n} of {name} is not UTF-8 text"),
    })
}

fn diff(c: &Client, a: &DiffArgs, out: &mut dyn Write) -> Result<i32, ClientError> {
    let needs_detail = !matches!((a.from, a.to), (RevSpec::Number(_), RevSpec::Number(_)));
    let detail = if needs_detail {
        Some(policy_detail(c, &a.name)?)
    } else {
        None
    };
    let resolve = |spec: RevSpec| -> Result<u64, ClientError> {
        let d = detail.as_ref();
        match spec {
            RevSpec::Number(n) => Ok(n),
            RevSpec::Active => {
                d.and_then(|d| d.active_revision)
                    .ok_or_else(|| ClientError::Refused {
                        code: String::new(),
                        message: format!("policy {} has no active revision", a.name),
                    })
            }
            RevSpec::Latest => d
                .and_then(|d| d.latest_revision)
                .ok_or_else(|| ClientError::PolicyNotFound(a.name.clone())),
        }
    };
    let (from, to) = (resolve(a.from)?, resolve(a.to)?);
    let old = revision_text(c, &a.name, from)?;
    let new = revision_text(c, &a.name, to)?;
    let _ = write!(out, "{}", diff_report(&a.name, from, &old, to, &new));
    Ok(exit::OK)
}

/// The text of `omni policy diff`: a unified diff, then the rules.
pub fn diff_report(name: &str, from: u64, old: &str, to: u64, new: &str) -> String {
    let text =
        crate::diff::unified_diff(old, new, &format!("{name}@{from}"), &format!("{name}@{to}"));
    if text.is_empty() {
        return format!("{name}: revisions {from} and {to} have the same text\n");
    }
    let mut s = text;
    s.push('\n');
    match (rules::rules_of(old), rules::rules_of(new)) {
        (Ok(a), Ok(b)) => s.push_str(&rules::render(&rules::diff_rules(&a, &b))),
        (Err(e), _) => s.push_str(&format!("rules: not compared: revision {from}: {e}\n")),
        (_, Err(e)) => s.push_str(&format!("rules: not compared: revision {to}: {e}\n")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse_args(args: &[&str]) -> Result<crate::Cli, clap::Error> {
        crate::Cli::try_parse_from(std::iter::once("omni").chain(args.iter().copied()))
    }

    fn policy_args(args: &[&str]) -> Args {
        match parse_args(args).expect("parses").command {
            crate::Command::Policy(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connection_flags_go_before_or_after_the_command() {
        let a = policy_args(&["policy", "--server", "h:1", "list"]);
        assert_eq!(a.conn.server.as_deref(), Some("h:1"));
        let a = policy_args(&[
            "policy",
            "push",
            "fleet",
            "f.omni",
            "--token",
            "t",
            "--no-activate",
            "--if-match",
            "3",
        ]);
        assert_eq!(a.conn.token.as_deref(), Some("t"));
        let PolicyCommand::Push(p) = a.command else {
            panic!()
        };
        assert_eq!(
            (p.name.as_str(), p.no_activate, p.if_match),
            ("fleet", true, Some(3))
        );
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["policy", "activate", "fleet"][..],
            &["policy", "activate", "fleet", "three"],
            &["policy", "diff", "fleet", "1", "0"],
            &["policy", "list", "--format", "xml"],
            &[
                "policy",
                "show",
                "fleet",
                "--revision",
                "2",
                "--format",
                "json",
            ],
            &["policy", "frobnicate"],
        ] {
            let e = parse_args(args).expect_err("refused");
            assert_eq!(e.exit_code(), exit::USAGE, "{args:?}");
        }
    }

    #[test]
    fn revision_specs() {
        assert_eq!("3".parse::<RevSpec>(), Ok(RevSpec::Number(3)));
        assert_eq!("active".parse::<RevSpec>(), Ok(RevSpec::Active));
        assert_eq!("latest".parse::<RevSpec>(), Ok(RevSpec::Latest));
        assert!("0".parse::<RevSpec>().is_err());
        assert!("-1".parse::<RevSpec>().is_err());
    }

    #[test]
    fn if_match_values() {
        assert_eq!(if_match_value(Some(4)), "\"4\"");
        assert_eq!(if_match_value(None), "\"0\"");
    }

    #[test]
    fn unreachable_server_and_bad_server_are_named() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let args = policy_args(&["policy", "list"]);
        let env_server = format!("127.0.0.1:{port}");
        let env = move |k: &str| (k == "OMNI_SERVER").then(|| env_server.clone());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with_env(&args, &env, &mut out, &mut err);
        let err = String::from_utf8(err).unwrap();
        assert_eq!(code, exit::UNAVAILABLE, "{err}");
        assert_eq!(
            err,
            format!("error: cannot reach omnid at http://127.0.0.1:{port}: connection refused (is omnid running there?)\n")
        );
        let args = policy_args(&["policy", "--server", "ftp://x", "list"]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            run_with_env(&args, &|_: &str| None, &mut out, &mut err),
            exit::USAGE
        );
    }

    #[test]
    fn diff_report_shows_text_and_rules() {
        let p = |rules: &str| {
            format!("INTENT: t\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: d\nRULE:\n{rules}\nCONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n")
        };
        let old = p("- IF Battery < 20% THEN ReturnToHome");
        let new = p("- IF Battery < 20% THEN Land\n- IF Wind > 15 THEN Hold");
        let r = diff_report("fleet", 1, &old, 2, &new);
        assert!(r.starts_with("--- fleet@1\n+++ fleet@2\n@@"), "{r}");
        assert!(r.contains("-- IF Battery < 20% THEN ReturnToHome\n+- IF Battery < 20% THEN Land\n+- IF Wind > 15 THEN Hold\n"), "{r}");
        assert!(
            r.contains("\nrules: 1 added, 0 removed, 1 changed\n"),
            "{r}"
        );
        assert_eq!(
            diff_report("fleet", 1, &old, 3, &old),
            "fleet: revisions 1 and 3 have the same text\n"
        );
        let r = diff_report("fleet", 1, "INTENT: t\nRULE:\n- IF THEN\n", 2, &new);
        assert!(r.contains("rules: not compared: revision 1: it has"), "{r}");
    }
}
