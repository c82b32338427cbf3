//! The limits of the command line, as flags. A person checking their own
//! files is not a shared server, so the defaults are far above the service's
//! (a policy of up to 10 MiB, a context of up to 64 MiB and 10,000,000 keys
//! and elements); the evaluation's own limits (fuel, loop iterations) keep the
//! language's defaults and can be raised.

use omni::{ContextLimits, ErrorCode, EvalLimits};

/// The most keys and list elements of a context by default (the sizes'
/// defaults are in the flags, written as people write them).
pub const MAX_CONTEXT_ITEMS: usize = 10_000_000;

/// `--max-policy-bytes`, for every command that reads a policy.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct PolicyArgs {
    /// Refuse policy files larger than this (bytes, or with KiB, MiB, GiB).
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    pub max_policy_bytes: usize,
}

/// The limits on a context document.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ContextArgs {
    /// Refuse context files larger than this (bytes, or with KiB, MiB, GiB).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_context_bytes: usize,
    /// Refuse contexts with more keys and list elements than this, all levels counted.
    #[arg(long, value_name = "N", default_value_t = MAX_CONTEXT_ITEMS)]
    pub max_context_items: usize,
    /// Refuse contexts nested deeper than this many levels (127 at most).
    #[arg(long, value_name = "LEVELS", default_value_t = ContextLimits::default().max_depth,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=127))]
    pub max_context_depth: usize,
}

impl ContextArgs {
    pub fn limits(&self) -> ContextLimits {
        ContextLimits {
            max_bytes: self.max_context_bytes,
            max_depth: self.max_context_depth,
            max_items: self.max_context_items,
        }
    }
}

/// The evaluation's deterministic limits.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct EvalArgs {
    /// Evaluation steps allowed (each node visited, each element produced).
    #[arg(long, value_name = "STEPS", default_value_t = EvalLimits::default().fuel)]
    pub fuel: u64,
    /// Iterations allowed to one FOR loop.
    #[arg(long, value_name = "N", default_value_t = EvalLimits::default().max_loop_iterations)]
    pub max_loop_iterations: u64,
}

impl EvalArgs {
    pub fn limits(&self) -> EvalLimits {
        EvalLimits {
            fuel: self.fuel,
            max_loop_iterations: self.max_loop_iterations,
            ..EvalLimits::default()
        }
    }
}

/// The line `check` and `fmt` print for a policy over `--max-policy-bytes`.
pub fn policy_too_large(name: &str, len: usize, limit: usize) -> String {
    format!(
        "error[policy_too_large]: {name} is {len} bytes; the limit is {limit} (--max-policy-bytes raises it)"
    )
}

/// The flag that raises the limit an error code names, for the hint after it.
pub fn flag_for(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::PolicyTooLarge => "--max-policy-bytes",
        ErrorCode::ContextTooLarge => "--max-context-bytes or --max-context-items",
        ErrorCode::ContextTooDeep => "--max-context-depth",
        ErrorCode::BudgetExceeded => "--fuel or --max-loop-iterations",
        _ => return None,
    })
}

/// A size: a number of bytes, optionally followed by `KiB`, `MiB` or `GiB`.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 1048576, 512KiB, 64MiB)"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        _ => return Err(format!("`{s}`: the unit is one of KiB, MiB, GiB")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10 mib"), Ok(10 << 20));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
