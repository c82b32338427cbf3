//! The rule-level half of `omni policy diff`: which rules were added,
//! removed or changed between two policy texts. Rules are compared by their
//! canonical text (each text is put through `omni fmt` first), so a change of
//! layout, comments or keyword case is no change.

use omni::fmt::{format_policy, FmtOptions};
use omni::CheckOptions;

/// One rule as the diff shows it: its id in its revision and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    pub id: String,
    /// `IF cond THEN actions [ELSE actions]`, `FOR x IN list`, `WHILE cond`.
    pub text: String,
    /// What stays when only the outcome changed: the condition or loop head.
    pub head: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleChange {
    Added(RuleText),
    Removed(RuleText),
    Changed { old: RuleText, new: RuleText },
}

/// The rules of a policy text, in source order (nested ones included).
/// `Err` when the text does not check here (it cannot then be compared).
pub fn rules_of(text: &str) -> Result<Vec<RuleText>, String> {
    let canonical = format_policy(text, &FmtOptions::default()).unwrap_or_else(|_| text.into());
    let compiled = omni::compile(&canonical, &CheckOptions::lenient());
    let Some(policy) = compiled.policy else {
        let n = compiled.errors().count();
        return Err(format!("it has {n} error(s) when checked here"));
    };
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(policy
        .rule_summaries()
        .into_iter()
        .map(|r| {
            let head = one_line(&r.condition);
            // Loops have a head and no action of their own.
            let text = if r.action.is_empty() {
                head.clone()
            } else {
                format!("IF {head} THEN {}", one_line(&r.action))
            };
            RuleText {
                id: r.id,
                text,
                head,
            }
        })
        .collect())
}

/// Pairs the rules of two revisions. A rule is unchanged when the same text
/// is in both; changed when its condition (or loop head) stayed and the rest
/// did not, or when it kept its id and its text changed; else added or
/// removed. Changes are listed in the new revision's order, removals last.
pub fn diff_rules(old: &[RuleText], new: &[RuleText]) -> Vec<RuleChange> {
    let mut old_used = vec![false; old.len()];
    let mut new_pair: Vec<Option<usize>> = vec![None; new.len()];
    // Three passes, each pairing what the ones before left over.
    type Same = dyn Fn(&RuleText, &RuleText) -> bool;
    let passes: [&Same; 3] = [
        &|a, b| a.text == b.text,
        &|a, b| a.head == b.head,
        &|a, b| a.id == b.id,
    ];
    for same in passes {
        for (j, n) in new.iter().enumerate() {
            if new_pair[j].is_some() {
                continue;
            }
            if let Some(i) = (0..old.len()).find(|&i| !old_used[i] && same(&old[i], n)) {
                old_used[i] = true;
                new_pair[j] = Some(i);
            }
        }
    }
    let mut out = Vec::new();
    for (j, n) in new.iter().enumerate() {
        match new_pair[j] {
            None => out.push(RuleChange::Added(n.clone())),
            Some(i) if old[i].text != n.text => out.push(RuleChange::Changed {
                old: old[i].clone(),
                new: n.clone(),
            }),
            Some(_) => {}
        }
    }
    for (i, o) in old.iter().enumerate() {
        if !old_used[i] {
            out.push(RuleChange::Removed(o.clone()));
        }
    }
    out
}

/// The rule section of `omni policy diff`'s report.
pub fn render(changes: &[RuleChange]) -> String {
    let count = |f: fn(&RuleChange) -> bool| changes.iter().filter(|c| f(c)).count();
    let added = count(|c| matches!(c, RuleChange::Added(_)));
    let removed = count(|c| matches!(c, RuleChange::Removed(_)));
    let changed = count(|c| matches!(c, RuleChange::Changed { .. }));
    if changes.is_empty() {
        return "rules: none added, removed or changed\n".into();
    }
    let mut s = format!("rules: {added} added, {removed} removed, {changed} changed\n");
    for c in changes {
        match c {
            RuleChange::Added(r) => s.push_str(&format!("  added    {}: {}\n", r.id, r.text)),
            RuleChange::Removed(r) => s.push_str(&format!("  removed  {}: {}\n", r.id, r.text)),
            RuleChange::Changed { old, new } => {
                s.push_str(&format!("  changed  {}: {}\n", old.id, old.text));
                s.push_str(&format!("       to  {}: {}\n", new.id, new.text));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &str) -> String {
        format!(
            "INTENT: t\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: d\nRULE:\n{rules}\nCONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n"
        )
    }

    fn diff(a: &str, b: &str) -> Vec<RuleChange> {
        diff_rules(
            &rules_of(&policy(a)).expect("a checks"),
            &rules_of(&policy(b)).expect("b checks"),
        )
    }

    #[test]
    fn layout_and_comments_are_no_change() {
        let a = "- IF Battery < 20% THEN ReturnToHome";
        let b = "- IF   Battery<20%   THEN ReturnToHome";
        assert_eq!(diff(a, b), vec![]);
    }

    #[test]
    fn added_removed_and_changed() {
        let a = "- IF Battery < 20% THEN ReturnToHome\n- IF Wind > 15 THEN Land\n- IF Temp > 40 THEN Cool";
        // A rule inserted first renumbers the others; they are still matched.
        let b = "- IF Speed > 10 THEN Slow\n- IF Battery < 20% THEN Land\n- IF Temp > 40 THEN Cool";
        let d = diff(a, b);
        assert_eq!(d.len(), 3, "{d:?}");
        let RuleChange::Added(r) = &d[0] else {
            panic!("{d:?}")
        };
        assert_eq!(
            (r.id.as_str(), r.text.as_str()),
            ("R1", "IF Speed > 10 THEN Slow")
        );
        let RuleChange::Changed { old, new } = &d[1] else {
            panic!("{d:?}")
        };
        assert_eq!(old.text, "IF Battery < 20% THEN ReturnToHome");
        assert_eq!(
            (new.id.as_str(), new.text.as_str()),
            ("R2", "IF Battery < 20% THEN Land")
        );
        let RuleChange::Removed(r) = &d[2] else {
            panic!("{d:?}")
        };
        assert_eq!(
            (r.id.as_str(), r.text.as_str()),
            ("R2", "IF Wind > 15 THEN Land")
        );
        let text = render(&d);
        assert!(
            text.starts_with("rules: 1 added, 1 removed, 1 changed\n"),
            "{text}"
        );
        assert!(
            text.contains("  changed  R1: IF Battery < 20% THEN ReturnToHome\n       to  R2: IF Battery < 20% THEN Land\n"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_condition_at_the_same_place_is_a_change() {
        let d = diff(
            "- IF Battery < 20% THEN ReturnToHome",
            "- IF Battery < 25% THEN ReturnToHome",
        );
        assert!(matches!(&d[..], [RuleChange::Changed { .. }]), "{d:?}");
        assert_eq!(render(&[]), "rules: none added, removed or changed\n");
    }

    #[test]
    fn a_text_with_errors_is_not_compared() {
        let e = rules_of("INTENT: x\nRULE:\n- IF THEN\n").unwrap_err();
        assert!(e.contains("error"), "{e}");
    }
}
