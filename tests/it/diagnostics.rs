//! Every diagnostic code has a policy that triggers it, and the diagnostic
//! names the line and column where the problem is (in the structured fields,
//! the JSON rendering and the human rendering).

use omni::diagnostics::render_human;
use omni::{compile, CheckOptions, Code, Features, Severity};

/// A complete, valid policy around the given RULE lines (which start on line 7).
fn policy(rules: &str) -> String {
    format!(
        "INTENT: test\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\nRULE:\n{rules}\nCONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: tests\n"
    )
}

struct Case {
    code: Code,
    source: String,
    line: u32,
    column: u32,
    opts: CheckOptions,
}

fn case(code: Code, source: String, line: u32, column: u32) -> Case {
    Case {
        code,
        source,
        line,
        column,
        opts: CheckOptions::default(),
    }
}

fn cases() -> Vec<Case> {
    let deep = format!("- IF {}x{} THEN A", "(".repeat(200), ")".repeat(200));
    let no_lambdas = CheckOptions {
        features: Features {
            lambdas: false,
            ..Features::default()
        },
        ..CheckOptions::default()
    };
    vec![
        case(Code::UnexpectedToken, policy("- IF x > THEN A"), 7, 10),
        case(Code::UnterminatedString, policy("- IF x == \"abc THEN A"), 7, 11),
        case(Code::InvalidNumber, policy("- IF x > 1e999 THEN A"), 7, 10),
        case(Code::UnknownUnit, policy("- IF x > 20xyz THEN A"), 7, 10),
        case(Code::SpaceBeforeUnit, policy("- IF d < 2 m THEN A"), 7, 10),
        case(Code::NestingTooDeep, policy(&deep), 7, 134),
        case(Code::UnclosedDelimiter, policy("- FOR d IN ds {\n    - IF d > 1 THEN A"), 7, 15),
        case(Code::InvalidEscape, policy("- IF x == \"a\\qb\" THEN A"), 7, 13),
        case(Code::InvalidCharacter, policy("- IF x == 'a' THEN A"), 7, 11),
        case(
            Code::UnknownSection,
            policy("- IF x > 1 THEN A").replace("CONSTRAINT:", "RULES:\nCONSTRAINT:"),
            8,
            1,
        ),
        case(
            Code::MissingSection,
            policy("- IF x > 1 THEN A").replace("TRACE:\n- Evidence: tests\n", ""),
            12,
            1,
        ),
        case(
            Code::SectionOrder,
            "INTENT: t\nCONTEXT:\n- Domain: T\nACTOR:\n- Primary: Ops\nRULE:\n- IF x > 1 THEN A\nCONSTRAINT:\n- Legal: l\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n".into(),
            4,
            1,
        ),
        case(
            Code::DuplicateSection,
            policy("- IF x > 1 THEN A").replace("TRACE:", "IMPACT:\n- Risk: r\nTRACE:"),
            12,
            1,
        ),
        case(
            Code::EmptySection,
            policy("- IF x > 1 THEN A").replace("RULE:", "ASSUMPTION:\nRULE:"),
            6,
            1,
        ),
        case(Code::ContentBeforeHeader, format!("  stray text\n{}", policy("- IF x > 1 THEN A")), 1, 3),
        case(Code::LegacyAssign, policy("- IF x = 1 THEN A"), 7, 8),
        case(Code::LegacyBracelessFor, policy("- FOR d IN ds\n- IF d > 1 THEN A"), 7, 3),
        case(Code::LegacyTwoLineIf, policy("- IF x > 1\n- THEN A"), 8, 3),
        case(
            Code::UnknownActorKind,
            policy("- IF x > 1 THEN A").replace("- Primary: Ops", "- Primary: Ops\n- Secondry: Audit"),
            4,
            3,
        ),
        case(
            Code::PrimaryActor,
            policy("- IF x > 1 THEN A").replace("- Primary: Ops", "- Secondary: Ops"),
            2,
            1,
        ),
        case(
            Code::ItemWithoutKind,
            policy("- IF x > 1 THEN A").replace("- Primary: Ops", "- Primary: Ops\n- the night shift"),
            4,
            3,
        ),
        case(
            Code::NotAnItem,
            policy("- IF x > 1 THEN A").replace("CONSTRAINT:\n", "CONSTRAINT:\n  no dash here\n"),
            9,
            3,
        ),
        case(Code::DimensionMismatch, policy("- IF 2m > 5s THEN A"), 7, 6),
        case(Code::TypeMismatch, policy("- IF \"a\" > 3 THEN A"), 7, 6),
        case(Code::TemperatureArithmetic, policy("- IF 20C + 5C > 40C THEN A"), 7, 6),
        case(Code::WrongArity, policy("- IF abs(1, 2) > 0 THEN A"), 7, 6),
        case(Code::UnknownFunction, policy("- IF avgg(xs) > 0 THEN A"), 7, 6),
        case(Code::DeniedIo, policy("- IF std::io::read_file(\"x\") == \"y\" THEN A"), 7, 6),
        Case {
            code: Code::FeatureDisabled,
            source: policy("- IF any(xs, |x| x > 1) THEN A"),
            line: 7,
            column: 14,
            opts: no_lambdas,
        },
        case(Code::InvalidRegex, policy("- IF matches(s, \"(\") THEN A"), 7, 17),
        case(Code::MisplacedLambda, policy("- IF |x| x THEN A"), 7, 6),
        case(Code::InvalidTimestamp, policy("- IF time(\"yesterday\") > now() THEN A"), 7, 11),
        case(Code::InvalidArgument, policy("- IF date_part(now(), \"fortnight\") > 1 THEN A"), 7, 23),
        case(
            Code::InvalidDeclaration,
            policy("- IF B > 1% THEN A").replace("RULE:\n", "SCHEMA:\n- B: ratoi\nRULE:\n"),
            7,
            6,
        ),
        case(
            Code::UndeclaredField,
            policy("- IF D.b == \"x\" THEN A").replace("RULE:\n", "SCHEMA:\n- D: { a: text }\nRULE:\n"),
            9,
            6,
        ),
        case(Code::MatchWithoutWildcard, policy("- IF match S { \"a\" => true } THEN A"), 7, 6),
        case(Code::EmptyLoopBody, policy("- WHILE x > 1 {\n}"), 7, 3),
        case(Code::BareNumberUnit, policy("- IF 15 < 20% THEN A"), 7, 6),
    ]
}

#[test]
fn every_code_has_a_triggering_case() {
    let cases = cases();
    for code in Code::ALL {
        assert!(
            cases.iter().any(|c| c.code == *code),
            "no test case triggers {}",
            code.as_str()
        );
    }
}

#[test]
fn each_case_reports_its_code_at_the_right_line_and_column() {
    for c in cases() {
        let compiled = compile(&c.source, &c.opts);
        let found = compiled.diagnostics.iter().find(|d| d.code == c.code);
        let Some(d) = found else {
            panic!(
                "{} not reported; got {:?}\n{}",
                c.code.as_str(),
                compiled
                    .diagnostics
                    .iter()
                    .map(|d| (
                        d.code.as_str(),
                        d.span.line,
                        d.span.column,
                        d.message.clone()
                    ))
                    .collect::<Vec<_>>(),
                c.source
            );
        };
        assert_eq!(
            (d.span.line, d.span.column),
            (c.line, c.column),
            "{} at the wrong place: {}",
            c.code.as_str(),
            d.message
        );
        assert!(!d.message.is_empty());
        // JSON rendering carries the same position, and an end not before the start.
        let j = d.to_json(&c.source, &compiled.line_index);
        assert_eq!((j.line, j.column), (c.line, c.column));
        assert!(
            (j.end_line, j.end_column) >= (j.line, j.column),
            "{}",
            c.code.as_str()
        );
        assert_eq!(j.code, c.code.as_str());
        // Human rendering names the line and column and shows the source line.
        let human = render_human("p.omni", &c.source, std::slice::from_ref(d), false);
        assert!(
            human.contains(&format!("line {}, column {}", c.line, c.column)),
            "{human}"
        );
        assert!(human.contains(c.code.as_str()), "{human}");
        assert!(
            human.contains(&format!("p.omni:{}:{}", c.line, c.column)),
            "{human}"
        );
    }
}

#[test]
fn severities_follow_code_family_and_profile() {
    for c in cases() {
        let strict = compile(&c.source, &c.opts);
        let lenient = compile(
            &c.source,
            &CheckOptions {
                profile: omni::Profile::Lenient,
                ..c.opts.clone()
            },
        );
        let sev = |comp: &omni::Compiled| {
            comp.diagnostics
                .iter()
                .find(|d| d.code == c.code)
                .map(|d| d.severity)
        };
        if c.code.is_conformance() {
            assert_eq!(sev(&strict), Some(Severity::Error), "{}", c.code.as_str());
            assert_eq!(
                sev(&lenient),
                Some(Severity::Warning),
                "{}",
                c.code.as_str()
            );
        } else {
            assert_eq!(
                sev(&strict),
                Some(c.code.base_severity()),
                "{}",
                c.code.as_str()
            );
            assert_eq!(
                sev(&lenient),
                Some(c.code.base_severity()),
                "{}",
                c.code.as_str()
            );
        }
    }
}

#[test]
fn hints_point_to_the_fix() {
    let c = compile(&policy("- IF d < 2 m THEN A"), &CheckOptions::default());
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code == Code::SpaceBeforeUnit)
        .expect("E0105");
    assert_eq!(d.hint.as_deref(), Some("write 2m, without a space"));

    let c = compile(
        &policy("- IF avgg(xs) > 0 THEN A"),
        &CheckOptions::default(),
    );
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code == Code::UnknownFunction)
        .expect("E0305");
    assert!(
        d.hint.as_deref().unwrap_or("").contains("`avg`"),
        "{:?}",
        d.hint
    );

    let c = compile(
        &policy("- IF x > 1 THEN A").replace("CONSTRAINT:", "RULES:\nCONSTRAINT:"),
        &CheckOptions::default(),
    );
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code == Code::UnknownSection)
        .expect("E0201");
    assert!(
        d.hint.as_deref().unwrap_or("").contains("RULE"),
        "{:?}",
        d.hint
    );

    let c = compile(
        &policy("- IF std::web::get(\"u\") THEN A"),
        &CheckOptions::default(),
    );
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code == Code::DeniedIo)
        .expect("E0306");
    assert!(
        d.message.starts_with("denied: no I/O in policies"),
        "{}",
        d.message
    );
}

#[test]
fn parser_reports_every_broken_rule_in_one_pass() {
    let src = policy(
        "- IF x > THEN A\n- IF y == \"ok\" THEN B\n- IF z < ) THEN C\n- FOR d IN ] {\n}\n- IF q ++ 1 THEN D",
    );
    let c = compile(&src, &CheckOptions::default());
    let lines: Vec<u32> = c
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::UnexpectedToken)
        .map(|d| d.span.line)
        .collect();
    assert!(lines.contains(&7), "{lines:?}");
    assert!(lines.contains(&9), "{lines:?}");
    assert!(lines.contains(&10), "{lines:?}");
    assert!(lines.contains(&12), "{lines:?}");
    assert!(
        !lines.contains(&8),
        "the valid rule must not be reported: {lines:?}"
    );
}

#[test]
fn messages_do_not_leak_internals() {
    let nasty = [
        policy("- IF x > THEN A"),
        policy("- IF \"a\" > 3 THEN A"),
        policy("- IF std::fs::read(\"/etc/passwd\") THEN A"),
        "\u{0}\u{1}garbage{{{{".to_string(),
    ];
    for src in nasty {
        let c = compile(&src, &CheckOptions::default());
        for d in &c.diagnostics {
            for bad in [
                "src/", ".rs", "panicked", "Option<", "Result<", "omni::", "Vec<", "unwrap",
            ] {
                assert!(!d.message.contains(bad), "{} leaks {bad}", d.message);
            }
        }
    }
}
