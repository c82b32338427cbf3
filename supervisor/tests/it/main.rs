//! The integration tests of omnid: the HTTP API, the pool, the guard rails, against the real server, as one test binary (one link
//! instead of one per file, which matters on a 2-core CI). Each module is
//! one area; shared helpers are in `common`.

mod api;
mod common;
mod dedicated;
mod faults;
mod guards;
mod isolation;
mod lifecycle;
mod playground;
mod policy_cli;
mod registry;
mod tenant_budgets;
mod tls;
