//! The human output of `omni policy`: the API's JSON answers (parsed
//! leniently: a field this omni does not know is ignored, one it misses is
//! shown as `-`) as tables and sentences, and the server's diagnostics drawn
//! on the local file the way `omni check` draws its own.

use omni::diagnostics::{render_human, Code, Diagnostic, Severity};
use omni::span::Span;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyList {
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntry {
    pub name: String,
    #[serde(default)]
    pub active_revision: Option<u64>,
    #[serde(default)]
    pub latest_revision: Option<u64>,
    #[serde(default)]
    pub revisions: Option<u64>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDetail {
    pub name: String,
    #[serde(default)]
    pub active_revision: Option<u64>,
    #[serde(default)]
    pub served_revision: Option<u64>,
    #[serde(default)]
    pub latest_revision: Option<u64>,
    #[serde(default)]
    pub revisions: Vec<RevisionEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionEntry {
    pub revision: u64,
    #[serde(default)]
    pub policy_id: String,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    #[serde(default)]
    pub changes: Vec<ChangeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEntry {
    #[serde(default)]
    pub seq: Option<i64>,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub from_revision: Option<u64>,
    #[serde(default)]
    pub to_revision: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pushed {
    pub revision: u64,
    #[serde(default)]
    pub policy_id: String,
    #[serde(default)]
    pub active_revision: Option<u64>,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub warnings: Vec<ServerDiagnostic>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activated {
    #[serde(default)]
    pub active_revision: Option<u64>,
    #[serde(default)]
    pub previous_revision: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    #[serde(default)]
    pub diagnostics: Vec<ServerDiagnostic>,
}

/// A diagnostic as the API sends it (`docs/api.md`); the code is kept as
/// text so that a code newer than this omni is still shown.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerDiagnostic {
    pub code: String,
    pub severity: String,
    pub message: String,
    #[serde(default)]
    pub line: u32,
    #[serde(default)]
    pub column: u32,
    #[serde(default)]
    pub end_line: u32,
    #[serde(default)]
    pub end_column: u32,
    #[serde(default)]
    pub hint: Option<String>,
}

impl ServerDiagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == "error"
    }
}

/// A revision number, or `-` for none.
pub fn rev(r: Option<u64>) -> String {
    r.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// `sha256:` and the first 12 hex digits: enough to tell revisions apart.
pub fn short_id(id: &str) -> String {
    match id.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.get(..12).unwrap_or(hex)),
        None => id.to_string(),
    }
}

/// Columns padded to their widest cell; `right[i]` right-aligns column i.
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub fn list(l: &PolicyList) -> String {
    if l.policies.is_empty() {
        return "no policies stored\n".into();
    }
    let rows: Vec<Vec<String>> = l
        .policies
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                rev(p.active_revision),
                rev(p.latest_revision),
                rev(p.revisions),
                p.updated_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["NAME", "ACTIVE", "LATEST", "REVISIONS", "UPDATED"],
        &rows,
        &[false, true, true, true, false],
    )
}

pub fn show(d: &PolicyDetail) -> String {
    let mut s = format!("policy {}\n", d.name);
    s.push_str(&format!("active revision: {}\n", rev(d.active_revision)));
    let lag = match (d.served_revision, d.active_revision) {
        (a, b) if a == b => "",
        _ => " (this replica has not caught up yet)",
    };
    s.push_str(&format!(
        "served revision: {}{lag}\n",
        rev(d.served_revision)
    ));
    s.push_str(&format!("latest revision: {}\n", rev(d.latest_revision)));
    if d.revisions.is_empty() {
        return s;
    }
    s.push('\n');
    let rows: Vec<Vec<String>> = d
        .revisions
        .iter()
        .map(|r| {
            let mark = if Some(r.revision) == d.active_revision {
                "*"
            } else {
                ""
            };
            vec![
                format!("{mark}{}", r.revision),
                short_id(&r.policy_id),
                rev(r.bytes),
                r.created_at.clone().unwrap_or_else(|| "-".into()),
                r.created_by.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    s.push_str(&table(
        &["REV", "POLICY ID", "BYTES", "CREATED", "BY"],
        &rows,
        &[true, false, true, false, false],
    ));
    s.push_str("(* = active)\n");
    s
}

pub fn history(name: &str, h: &History) -> String {
    if h.changes.is_empty() {
        return format!("no changes recorded for {name}\n");
    }
    let rows: Vec<Vec<String>> = h
        .changes
        .iter()
        .map(|c| {
            vec![
                c.seq.map_or_else(|| "-".into(), |n| n.to_string()),
                c.at.clone().unwrap_or_else(|| "-".into()),
                c.action.clone().unwrap_or_else(|| "-".into()),
                rev(c.from_revision),
                rev(c.to_revision),
                c.actor.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["SEQ", "AT", "ACTION", "FROM", "TO", "BY"],
        &rows,
        &[true, false, false, true, true, false],
    )
}

pub fn pushed(name: &str, p: &Pushed) -> String {
    let what = if p.created {
        format!(
            "{name}: created revision {} ({})",
            p.revision,
            short_id(&p.policy_id)
        )
    } else {
        format!(
            "{name}: unchanged, this text is revision {} ({})",
            p.revision,
            short_id(&p.policy_id)
        )
    };
    format!("{what}; active revision: {}\n", rev(p.active_revision))
}

/// The byte offset of a 1-based line and character column (as the API
/// counts them: a leading byte-order mark is not a column), clamped to the
/// text.
fn offset_of(text: &str, line: u32, column: u32) -> usize {
    let mut start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    for _ in 1..line.max(1) {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let rest = &text[start..];
    let in_line = rest.find('\n').unwrap_or(rest.len());
    let col = rest[..in_line]
        .char_indices()
        .nth(column.max(1) as usize - 1)
        .map_or(in_line, |(i, _)| i);
    start + col
}

/// The server's diagnostics drawn on the text that was sent, as
/// `omni check` draws them; a code this omni does not know is printed as
/// one line.
pub fn diagnostics(file_name: &str, text: &str, diags: &[ServerDiagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let severity = match d.severity.as_str() {
            "error" => Some(Severity::Error),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        };
        match (Code::from_str_code(&d.code), severity) {
            (Some(code), Some(severity)) => {
                let start = offset_of(text, d.line, d.column);
                let end = offset_of(text, d.end_line, d.end_column).max(start);
                let diag = Diagnostic {
                    code,
                    severity,
                    message: d.message.clone(),
                    span: Span::new(start, end, d.line, d.column),
                    hint: d.hint.clone(),
                };
                out.push_str(&render_human(file_name, text, &[diag], false));
            }
            _ => {
                out.push_str(&format!(
                    "{}[{}]: {} (line {}, column {})\n",
                    d.severity, d.code, d.message, d.line, d.column
                ));
                if let Some(h) = &d.hint {
                    out.push_str(&format!("  hint: {h}\n"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["NAME", "N"],
            &[
                vec!["a".into(), "10".into()],
                vec!["long".into(), "2".into()],
            ],
            &[false, true],
        );
        assert_eq!(t, "NAME   N\na     10\nlong   2\n");
    }

    #[test]
    fn list_output() {
        let l: PolicyList = serde_json::from_str(
            r#"{"policies":[{"name":"fleet","activeRevision":3,"latestRevision":4,"revisions":4,"updatedAt":"2026-01-02T03:04:05Z"},
                            {"name":"draft","activeRevision":null,"latestRevision":1,"revisions":1,"updatedAt":"2026-01-01T00:00:00Z","newField":1}]}"#,
        )
        .unwrap();
        assert_eq!(
            list(&l),
            "NAME   ACTIVE  LATEST  REVISIONS  UPDATED\n\
             fleet       3       4          4  2026-01-02T03:04:05Z\n\
             draft       -       1          1  2026-01-01T00:00:00Z\n"
        );
        assert_eq!(
            list(&PolicyList { policies: vec![] }),
            "no policies stored\n"
        );
    }

    #[test]
    fn show_output_marks_the_active_revision_and_a_lagging_replica() {
        let d: PolicyDetail = serde_json::from_str(
            r#"{"name":"fleet","activeRevision":2,"servedRevision":1,"latestRevision":2,
                "revisions":[{"revision":1,"policyId":"sha256:0123456789abcdef0123","bytes":812,"createdAt":"2026-01-01T00:00:00Z","createdBy":"acme/ci"},
                             {"revision":2,"policyId":"sha256:fedcba9876543210fedc","bytes":90,"createdAt":"2026-01-02T00:00:00Z","createdBy":"acme/ops"}]}"#,
        )
        .unwrap();
        let s = show(&d);
        assert!(s.starts_with("policy fleet\nactive revision: 2\nserved revision: 1 (this replica has not caught up yet)\nlatest revision: 2\n\n"), "{s}");
        assert!(
            s.contains("  1  sha256:0123456789ab    812  2026-01-01T00:00:00Z  acme/ci\n"),
            "{s}"
        );
        assert!(
            s.contains(" *2  sha256:fedcba987654     90  2026-01-02T00:00:00Z  acme/ops\n"),
            "{s}"
        );
    }

    #[test]
    fn history_output() {
        let h: History = serde_json::from_str(
            r#"{"changes":[{"seq":7,"at":"2026-01-01T00:00:00Z","tenant":"acme","actor":"ci","action":"store","fromRevision":null,"toRevision":1},
                           {"seq":9,"at":"2026-01-01T00:01:00Z","tenant":"acme","actor":"ops","action":"rollback","fromRevision":2,"toRevision":1}]}"#,
        )
        .unwrap();
        assert_eq!(
            history("fleet", &h),
            "SEQ  AT                    ACTION    FROM  TO  BY\n  \
             7  2026-01-01T00:00:00Z  store        -   1  ci\n  \
             9  2026-01-01T00:01:00Z  rollback     2   1  ops\n"
        );
        assert_eq!(
            history("fleet", &History { changes: vec![] }),
            "no changes recorded for fleet\n"
        );
    }

    #[test]
    fn push_sentences() {
        let p: Pushed = serde_json::from_str(
            r#"{"name":"fleet","revision":3,"policyId":"sha256:abcdefabcdef1234","activeRevision":3,"created":true,"warnings":[]}"#,
        )
        .unwrap();
        assert_eq!(
            pushed("fleet", &p),
            "fleet: created revision 3 (sha256:abcdefabcdef); active revision: 3\n"
        );
        let p: Pushed = serde_json::from_str(
            r#"{"name":"fleet","revision":2,"policyId":"sha256:abc","activeRevision":null,"created":false}"#,
        )
        .unwrap();
        assert_eq!(
            pushed("fleet", &p),
            "fleet: unchanged, this text is revision 2 (sha256:abc); active revision: -\n"
        );
    }

    #[test]
    fn offsets_follow_lines_and_characters() {
        let t = "ab\nçd e\n";
        assert_eq!(offset_of(t, 1, 1), 0);
        assert_eq!(offset_of(t, 2, 1), 3);
        assert_eq!(offset_of(t, 2, 2), 5); // after the two-byte ç
        assert_eq!(offset_of(t, 2, 99), 8); // clamped to the line's end
        assert_eq!(offset_of(t, 9, 1), t.len());
        assert_eq!(offset_of("\u{feff}x", 1, 1), 3);
    }

    #[test]
    fn server_diagnostics_are_drawn_like_omni_check() {
        let text = "INTENT: t\nRULE:\n- IF Battery < THEN X\n";
        let compiled = omni::compile(text, &omni::CheckOptions::default());
        // What the server would send for this text, and what `omni check` prints.
        let sent: Vec<ServerDiagnostic> = compiled
            .diagnostics
            .iter()
            .map(|d| {
                serde_json::from_value(
                    serde_json::to_value(d.to_json(text, &compiled.line_index)).unwrap(),
                )
                .unwrap()
            })
            .collect();
        assert!(sent.iter().any(ServerDiagnostic::is_error));
        let local = render_human("p.omni", text, &compiled.diagnostics, false);
        assert_eq!(diagnostics("p.omni", text, &sent), local);

        let unknown = ServerDiagnostic {
            code: "E9999".into(),
            severity: "error".into(),
            message: "something new".into(),
            line: 3,
            column: 4,
            end_line: 3,
            end_column: 5,
            hint: Some("try this".into()),
        };
        assert_eq!(
            diagnostics("p.omni", text, &[unknown]),
            "error[E9999]: something new (line 3, column 4)\n  hint: try this\n"
        );
    }
}
