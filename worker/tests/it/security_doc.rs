//! Keeps the allow-list table of `docs/security.md` (§3) equal to the filter.

#[test]
fn security_doc_lists_exactly_the_allowed_syscalls() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md"))
        .expect("docs/security.md");
    let start = doc
        .find("## 3. The system call allow-list")
        .expect("section 3");
    let end = doc[start..]
        .find("\n## 4.")
        .map_or(doc.len(), |e| start + e);
    let mut documented: Vec<String> = doc[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    documented.sort();
    let mut allowed: Vec<String> = omni_worker::sandbox::allow_list(&[3], 1)
        .expect("allow-list")
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    allowed.sort();
    assert_eq!(
        documented, allowed,
        "docs/security.md §3 vs sandbox::allow_list"
    );
    // Entries with argument conditions say so in the table.
    for e in omni_worker::sandbox::allow_list(&[3], 1).unwrap() {
        let row = doc[start..end]
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", e.name)))
            .unwrap();
        let args = row.split('|').nth(2).unwrap().trim();
        assert_eq!(
            args == "any",
            e.args.is_empty(),
            "{}: the table says {args:?}, the filter {:?}",
            e.name,
            e.args
        );
    }
}
