//! No input within the size limits overflows a stack: long chains of every
//! binary operator and every postfix form, and deep prefix and bracket
//! nesting, from a few links up to the policy-size limit, through `check`,
//! `eval` and `fmt`. Each either works or gets E0106; a stack overflow would
//! abort this whole test binary. It runs on a thread with the stack of the
//! CLI's and the worker's main threads (8 MiB, the usual `ulimit -s`), in a
//! debug build, whose frames are several times larger than a release
//! build's.

use omni::fmt::{format_policy, FmtOptions};
use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions, Timestamp};

const HEAD: &str = "INTENT: deep\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\nRULE:\n- IF ";
const TAIL: &str = " THEN Fire\nCONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: safety\n\
                    TRACE:\n- Evidence: example\n";
const CONTEXT: &str = r#"{"A": 1, "B": true, "O": {"b": {"b": 1}}, "L": [[1]]}"#;

/// A condition of `n` links of one form.
struct Form {
    name: &'static str,
    build: fn(usize) -> String,
}

fn chain(first: &str, link: &str, n: usize, last: &str) -> String {
    let mut s = String::with_capacity(first.len() + link.len() * n + last.len());
    s.push_str(first);
    for _ in 0..n {
        s.push_str(link);
    }
    s.push_str(last);
    s
}

fn forms() -> Vec<Form> {
    vec![
        Form {
            name: "+",
            build: |n| chain("A", " + A", n, " > 1"),
        },
        Form {
            name: "-",
            build: |n| chain("A", " - A", n, " > 1"),
        },
        Form {
            name: "*",
            build: |n| chain("A", " * A", n, " > 1"),
        },
        Form {
            name: "/",
            build: |n| chain("A", " / A", n, " > 1"),
        },
        Form {
            name: "AND",
            build: |n| chain("B", " AND B", n, ""),
        },
        Form {
            name: "OR",
            build: |n| chain("B", " OR B", n, ""),
        },
        Form {
            name: "==",
            build: |n| chain("A + 0", " + 0", n, " == 1"),
        },
        Form {
            name: "IN",
            build: |n| chain("A", " * 1", n, " IN [1, 2]"),
        },
        Form {
            name: ".",
            build: |n| chain("O", ".b", n, " == 1"),
        },
        Form {
            name: "[]",
            build: |n| chain("L", "[0]", n, " == 1"),
        },
        Form {
            name: "NOT",
            build: |n| chain("", "NOT ", n, "B"),
        },
        Form {
            name: "unary -",
            build: |n| chain("", "-", n, "A > 0"),
        },
        Form {
            name: "()",
            build: |n| format!("{}A{} > 0", "(".repeat(n), ")".repeat(n)),
        },
        Form {
            name: "list",
            build: |n| format!("A IN {}1{}", "[".repeat(n), "]".repeat(n)),
        },
        Form {
            name: "call",
            build: |n| format!("{}A{} > 0", "abs(".repeat(n), ")".repeat(n)),
        },
        Form {
            name: "mixed",
            // A chain whose first operand is itself a long chain, nested:
            // deeper than any one chain's count.
            build: |n| {
                let inner = chain("A", " + A", 100, "");
                let mut e = inner.clone();
                for _ in 0..n / 100 {
                    e = format!("({e}) * {inner}");
                }
                format!("{e} > 1")
            },
        },
    ]
}

/// The most links of `form` that keep the policy within the size limit.
fn max_links(form: &Form) -> usize {
    let limit = omni::DEFAULT_MAX_POLICY_BYTES;
    let (mut lo, mut hi) = (1usize, limit);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if HEAD.len() + (form.build)(mid).len() + TAIL.len() <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Runs `f` on a thread with a main thread's stack.
fn on_main_sized_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn every_chain_and_nesting_up_to_the_size_limit_is_checked_evaluated_and_formatted() {
    on_main_sized_stack(every_form);
}

fn every_form() {
    let ctx = Context::from_json(CONTEXT.as_bytes(), &ContextLimits::default()).unwrap();
    let now = Timestamp(0);
    let depth = omni::NestingLimits::default().expr_depth;
    for form in forms() {
        let max = max_links(&form);
        for n in [1, 8, depth / 2, depth - 4, depth + 1, 1_000, 20_000, max] {
            let n = n.min(max);
            let src = format!("{HEAD}{}{TAIL}", (form.build)(n));
            assert!(src.len() <= omni::DEFAULT_MAX_POLICY_BYTES, "{}", form.name);
            let compiled = compile(&src, &CheckOptions::default());
            let codes: Vec<&str> = compiled
                .diagnostics
                .iter()
                .map(|d| d.code.as_str())
                .collect();
            match compiled.policy {
                Some(policy) => {
                    // Small enough to compile: it evaluates to a decision.
                    assert!(n <= depth, "{} × {n} compiled: {codes:?}", form.name);
                    evaluate(&policy, &ctx, now, &EvalOptions::default())
                        .unwrap_or_else(|e| panic!("{} × {n}: {e}", form.name));
                }
                None => {
                    assert!(n > depth / 2, "{} × {n} refused: {codes:?}", form.name);
                    assert!(
                        codes.contains(&"E0106"),
                        "{} × {n}: expected E0106, got {codes:?}",
                        form.name
                    );
                }
            }
            // The formatter parses the text itself: it answers, one way or the other.
            let _ = format_policy(&src, &FmtOptions::default());
        }
    }
}

#[test]
fn a_long_chain_is_reported_at_its_start() {
    let src = format!("{HEAD}{}{TAIL}", chain("A", " + A", 14_000, " > 1"));
    let compiled = compile(&src, &CheckOptions::default());
    let d = compiled
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "E0106")
        .expect("E0106");
    // The chain starts right after `- IF `.
    assert_eq!(d.span.start as usize, HEAD.len(), "{}", d.message);
}
