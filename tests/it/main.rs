//! The integration tests of the omni language and its CLI, as one test binary (one link
//! instead of one per file, which matters on a 2-core CI). Each module is
//! one area; shared helpers are in `common`.

mod cli;
mod common;
mod compat;
mod deep_inputs;
mod diagnostics;
mod docs;
mod eval_constructs;
mod eval_props;
mod examples;
mod fmt;
mod language_fixes;
mod parser_props;
mod policy_cli;
mod policy_test;
mod regex_budgets;
mod typed_context;
