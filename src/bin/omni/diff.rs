//! A unified diff of two texts, line by line, for `omni fmt --check`.

/// A unified diff (three lines of context) from `old` to `new`, with the
/// file names in its header; empty when the texts are equal.
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = diff_ops(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Group the edit script into hunks with up to three lines of context.
    const CTX: usize = 3;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    if changed.is_empty() {
        // Only the line endings or the final newline differ.
        out.push_str("@@ line endings or the final newline differ @@\n");
        return out;
    }
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CTX);
        let mut end = changed[i] + 1;
        while i < changed.len() && changed[i] <= end + 2 * CTX {
            end = changed[i] + 1;
            i += 1;
        }
        let end = (end + CTX).min(ops.len());
        let (mut a0, mut b0) = (0usize, 0usize);
        for op in &ops[..start] {
            match op {
                Op::Same(..) => {
                    a0 += 1;
                    b0 += 1
                }
                Op::Del(_) => a0 += 1,
                Op::Add(_) => b0 += 1,
            }
        }
        let (mut na, mut nb) = (0, 0);
        let mut body = String::new();
        for op in &ops[start..end] {
            match op {
                Op::Same(x) => {
                    na += 1;
                    nb += 1;
                    body.push_str(&format!(" {}\n", a[*x]));
                }
                Op::Del(x) => {
                    na += 1;
                    body.push_str(&format!("-{}\n", a[*x]));
                }
                Op::Add(y) => {
                    nb += 1;
                    body.push_str(&format!("+{}\n", b[*y]));
                }
            }
        }
        out.push_str(&format!(
            "@@ -{},{na} +{},{nb} @@\n{body}",
            a0 + usize::from(na > 0),
            b0 + usize::from(nb > 0)
        ));
    }
    out
}

enum Op {
    Same(usize),
    Del(usize),
    Add(usize),
}

/// A shortest edit script by longest common subsequence (policies are small;
/// past a size bound the whole text is replaced).
fn diff_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    // Common prefix and suffix first.
    let mut pre = 0;
    while pre < a.len() && pre < b.len() && a[pre] == b[pre] {
        pre += 1;
    }
    let mut suf = 0;
    while suf < a.len() - pre && suf < b.len() - pre && a[a.len() - 1 - suf] == b[b.len() - 1 - suf]
    {
        suf += 1;
    }
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops: Vec<Op> = (0..pre).map(Op::Same).collect();
    if ma.len().saturating_mul(mb.len()) > 16_000_000 {
        ops.extend((0..ma.len()).map(|i| Op::Del(pre + i)));
        ops.extend((0..mb.len()).map(|j| Op::Add(pre + j)));
    } else {
        let w = mb.len() + 1;
        let mut t = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                t[i * w + j] = if ma[i] == mb[j] {
                    t[(i + 1) * w + j + 1] + 1
                } else {
                    t[(i + 1) * w + j].max(t[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                ops.push(Op::Same(pre + i));
                i += 1;
                j += 1;
            } else if i < ma.len() && (j == mb.len() || t[(i + 1) * w + j] >= t[i * w + j + 1]) {
                ops.push(Op::Del(pre + i));
                i += 1;
            } else {
                ops.push(Op::Add(pre + j));
                j += 1;
            }
        }
    }
    let sa = a.len() - suf;
    ops.extend((0..suf).map(|k| Op::Same(sa + k)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines() {
        let d = unified_diff("a\nb\nc\n", "a\nB\nc\n", "x", "y");
        assert!(d.contains("-b\n+B\n"), "{d}");
        assert!(d.starts_with("--- x\n+++ y\n@@ -1,3 +1,3 @@\n"), "{d}");
        assert_eq!(unified_diff("a\n", "a\n", "x", "y"), "");
    }
}
