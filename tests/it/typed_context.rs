//! Typed context declarations (the `SCHEMA` section): a wrong unit, a wrong
//! type and a missing declared field are caught at check time (E0301, E0302,
//! E0313) and at run time (a warning naming the field, the declared and the
//! received type; the value is then treated as missing); declarations read,
//! print and format; a policy that declares nothing behaves as before.

use omni::fmt::{format_policy, FmtOptions};
use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, Decision, EvalOptions};

fn policy(schema: &str, context_defaults: &str, rules: &str) -> String {
    format!(
        "INTENT: Typed context\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Tests\n{context_defaults}\
         SCHEMA:\n{schema}\nRULE:\n{rules}\nCONSTRAINT: none\nIMPACT: none\nTRACE: none\n"
    )
}

const SCHEMA: &str = "- Battery: ratio in %\n\
                      - zone.humidity: ratio\n\
                      - Mode?: text\n\
                      - drones: list of { id: text, battery: ratio, status?: text }";

/// The codes of the errors of `src`.
fn errors(src: &str) -> Vec<(String, String)> {
    compile(src, &CheckOptions::default())
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| (d.code.as_str().to_string(), d.message.clone()))
        .collect()
}

fn eval(src: &str, ctx: &str) -> Decision {
    let c = compile(src, &CheckOptions::default());
    let errs: Vec<_> = c.errors().map(|d| d.message.clone()).collect();
    let p = c
        .policy
        .unwrap_or_else(|| panic!("errors: {errs:?}\n{src}"));
    let ctx = Context::from_json(ctx.as_bytes(), &ContextLimits::default()).expect("context");
    let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
    evaluate(&p, &ctx, now, &EvalOptions::default()).expect("decision")
}

fn warnings(d: &Decision) -> Vec<(&str, &str)> {
    d.warnings
        .iter()
        .map(|w| (w.code, w.message.as_str()))
        .collect()
}

// ----- check time ---------------------------------------------------------

#[test]
fn a_wrong_unit_is_e0301_at_check_time() {
    let src = policy(SCHEMA, "", "- IF zone.humidity > 60kg THEN Dry");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "E0301");
    assert!(e[0].1.contains("`zone.humidity` (a ratio)"), "{e:?}");
    assert!(e[0].1.contains("`60kg` (a mass)"), "{e:?}");
    // Without the declaration the checker cannot know: it checks clean.
    let undeclared = policy("- Other: text", "", "- IF zone.humidity > 60kg THEN Dry");
    assert!(errors(&undeclared).is_empty());
    // Through a loop variable and a lambda parameter, too.
    for rule in [
        "- FOR d IN drones {\n  - IF d.battery > 2m THEN X\n}",
        "- IF any(drones, |d| d.battery > 2m) THEN X",
        "- IF drones[0].battery > 2m THEN X",
        "- IF $.zone.humidity + 2m > 1m THEN X",
    ] {
        let e = errors(&policy(SCHEMA, "", rule));
        assert!(e.iter().any(|(c, _)| c == "E0301"), "{rule}: {e:?}");
    }
}

#[test]
fn a_wrong_type_is_e0302_at_check_time() {
    for rule in [
        "- IF Mode == 3 THEN X",
        "- IF Mode > 20% THEN X",
        "- IF drones[0].id + 1 > 2 THEN X",
        "- IF drones > 3 THEN X",
    ] {
        let e = errors(&policy(SCHEMA, "", rule));
        assert!(e.iter().any(|(c, _)| c == "E0302"), "{rule}: {e:?}");
    }
    // A text compared with text is fine.
    assert!(errors(&policy(SCHEMA, "", "- IF Mode == \"auto\" THEN X")).is_empty());
}

#[test]
fn a_field_the_declaration_does_not_list_is_e0313_at_check_time() {
    let src = policy(
        SCHEMA,
        "",
        "- FOR d IN drones {\n  - IF d.batery < 20% THEN Recharge(d.id)\n}",
    );
    let c = compile(&src, &CheckOptions::default());
    let e: Vec<_> = c.errors().collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].code.as_str(), "E0313");
    assert!(e[0].message.contains("`batery`"));
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `battery`?"));
    // Objects declared by a dotted path stay open: other fields are not known.
    assert!(errors(&policy(SCHEMA, "", "- IF zone.temperature > 30C THEN Cool")).is_empty());
}

#[test]
fn a_default_must_fit_its_declaration() {
    let e = errors(&policy(
        "- MinBattery: ratio",
        "- MinBattery: 20kg\n",
        "- IF Battery < MinBattery THEN X",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "E0301");
    assert!(e[0].1.contains("default of `MinBattery`"));
    let e = errors(&policy(
        "- Mode: text",
        "- Mode: 3\n",
        "- IF Mode == \"a\" THEN X",
    ));
    assert_eq!(e[0].0, "E0302", "{e:?}");
    assert!(errors(&policy(
        "- MinBattery: ratio",
        "- MinBattery: 20%\n",
        "- IF Battery < MinBattery THEN X"
    ))
    .is_empty());
}

#[test]
fn bad_declarations_are_e0312_with_a_hint() {
    for (decl, hint) in [
        ("- Battery: ratoi", "did you mean `ratio`?"),
        ("- Battery: %", "ratio in %"),
        ("- Battery: ratio in kg", "mass in kg"),
        ("- Price: currency", "currency in USD"),
        (
            "- Battery: ratio\n- Battery: ratio",
            "declare each field once",
        ),
        ("- Mode: text\n- Mode.x: text", "declare each field once"),
    ] {
        let c = compile(&policy(decl, "", "- IF X THEN Y"), &CheckOptions::default());
        let d = c
            .diagnostics
            .iter()
            .find(|d| d.code.as_str() == "E0312")
            .unwrap_or_else(|| panic!("{decl}: {:?}", c.diagnostics));
        assert!(
            d.hint.as_deref().unwrap_or("").contains(hint),
            "{decl}: {d:?}"
        );
    }
}

// ----- run time -----------------------------------------------------------

const RULES: &str = "- IF Battery < 20% THEN ReturnToHome(Battery)\n\
                     - IF zone.humidity > 60% THEN Dry\n\
                     - FOR d IN drones {\n  - IF d.battery < 30% THEN Recharge(d.id)\n}";

#[test]
fn a_wrong_unit_at_run_time_warns_and_is_treated_as_missing() {
    let src = policy(SCHEMA, "", RULES);
    let d = eval(
        &src,
        r#"{"Battery": 15, "zone": {"humidity": "70kg"}, "drones": []}"#,
    );
    let w = warnings(&d);
    assert_eq!(w[0].0, "declared_type");
    assert_eq!(
        w[0].1,
        "`zone.humidity` is declared a ratio, but the context has a mass (`\"70kg\"`): it is treated as missing"
    );
    assert_eq!(d.warnings[0].rule.as_ref(), "SCHEMA");
    assert_eq!(d.warnings[0].line, 8);
    // The rule on humidity is unknown, not fired; the others run.
    assert_eq!(d.action_strings(), ["ReturnToHome(15%)"]);
    assert_eq!(d.rules[1].outcome, omni::decision::Outcome::Unknown);
}

#[test]
fn a_wrong_type_at_run_time_warns_and_never_fires() {
    let src = policy(SCHEMA, "", RULES);
    let d = eval(
        &src,
        r#"{"Battery": "low", "zone": {"humidity": 0.7},
            "drones": [{"id": "a", "battery": 10}, {"id": 7, "battery": 12}, {"id": "c", "battery": true}]}"#,
    );
    let w = warnings(&d);
    assert!(w.contains(&(
        "declared_type",
        "`Battery` is declared a ratio in %, but the context has a string (`\"low\"`): it is treated as missing"
    )), "{w:?}");
    assert!(w.contains(&(
        "declared_type",
        "`drones[1].id` is declared text, but the context has a number (`7`): it is treated as missing"
    )), "{w:?}");
    assert!(w.contains(&(
        "declared_type",
        "`drones[2].battery` is declared a ratio, but the context has a bool (`true`): it is treated as missing"
    )), "{w:?}");
    // drone a recharges; drone 7's id is unknown, so its action does not fire.
    assert_eq!(d.action_strings(), ["Recharge(a)"]);
}

#[test]
fn a_missing_declared_field_at_run_time_warns_once_per_cause() {
    let src = policy(SCHEMA, "", RULES);
    let d = eval(
        &src,
        r#"{"Battery": 50, "drones": [{"id": "a"}, {"id": "b"}, {"id": "c", "battery": 5}]}"#,
    );
    let w = warnings(&d);
    assert!(
        w.contains(&(
            "declared_missing",
            "`zone` is declared an object, but it is missing from the context"
        )),
        "{w:?}"
    );
    assert!(w.contains(&(
        "declared_missing",
        "`drones[0].battery` is declared a ratio, but it is missing from the context (and 1 more like it)"
    )), "{w:?}");
    // Optional fields (`Mode?`, `status?`) may be left out without a warning.
    assert!(!w
        .iter()
        .any(|(_, m)| m.contains("Mode") || m.contains("status")));
    assert_eq!(d.action_strings(), ["Recharge(c)"]);
}

#[test]
fn a_context_that_fits_gives_no_declaration_warnings() {
    let src = policy(SCHEMA, "", RULES);
    let d = eval(
        &src,
        r#"{"Battery": "15%", "zone": {"humidity": 0.4}, "Mode": null,
            "drones": [{"id": "a", "battery": "25%", "status": null}, {"id": "b", "battery": "90%"}]}"#,
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.action_strings(), ["ReturnToHome(15%)", "Recharge(a)"]);
}

#[test]
fn a_bare_number_declared_in_a_unit_is_read_in_that_unit() {
    let src = policy(
        "- Distance: length in km",
        "",
        "- IF Distance > 500m THEN Far(Distance)",
    );
    let d = eval(&src, r#"{"Distance": 0.8}"#);
    assert_eq!(d.action_strings(), ["Far(0.8km)"]);
    // Undeclared, the bare 0.8 adopts metres and is not far.
    let plain = policy(
        "- Other: text",
        "",
        "- IF Distance > 500m THEN Far(Distance)",
    );
    assert!(eval(&plain, r#"{"Distance": 0.8}"#).actions.is_empty());
}

#[test]
fn a_contradicting_value_falls_back_to_its_default() {
    let src = policy(
        "- MinBattery: ratio",
        "- MinBattery: 20%\n",
        "- IF Battery < MinBattery THEN Low",
    );
    let d = eval(&src, r#"{"Battery": 15, "MinBattery": "9kg"}"#);
    assert_eq!(d.action_strings(), ["Low"]);
    assert_eq!(d.defaults, vec![std::sync::Arc::from("MinBattery")]);
    assert_eq!(d.warnings.len(), 1);
    // A declared name with a default may be absent without a warning.
    let d = eval(&src, r#"{"Battery": 15}"#);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn a_policy_without_declarations_is_unchanged() {
    let src = "INTENT: x\nACTOR:\n- Primary: O\nCONTEXT:\n- Domain: D\nRULE:\n\
               - IF zone.humidity > 60% THEN Dry\nCONSTRAINT: n\nIMPACT: n\nTRACE: n\n";
    let p = compile(src, &CheckOptions::default())
        .policy
        .expect("policy");
    assert!(p.schema.is_empty());
    let d = eval(src, r#"{"zone": {"humidity": "70kg"}}"#);
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].code, "dimension_mismatch");
}

// ----- formatting -----------------------------------------------------------

#[test]
fn fmt_prints_declarations_canonically_and_is_idempotent() {
    let src = "INTENT: x\nACTOR:\n- Primary: O\nSCHEMA: Battery :ratio in %\n\
               - drones : list of {id:string,battery?:ratio}\n- zone.humidity:ratio\n\
               CONTEXT:\n- Domain: D\nRULE:\n- IF Battery < 20% THEN X\nCONSTRAINT: n\nIMPACT: n\nTRACE: n\n";
    let once = format_policy(src, &FmtOptions::default()).expect("formats");
    assert!(
        once.contains(
            "CONTEXT:\n- Domain: D\nSCHEMA: Battery: ratio in %\n\
         - drones: list of { id: text, battery?: ratio }\n- zone.humidity: ratio\nRULE:"
        ),
        "{once}"
    );
    let twice = format_policy(&once, &FmtOptions::default()).expect("formats");
    assert_eq!(once, twice);
}
