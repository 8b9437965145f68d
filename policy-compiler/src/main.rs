//! `meshward`: check, format, compile, explain and test meshward policies;
//! replay audit logs against them, diff and draw them, and sign them.
//!
//! Exit codes (stable; scripts may rely on them):
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 0    | success; for `explain`, the decision is allow |
//! | 1    | the policy has errors (diagnostics on stderr, or stdout with `--format json`) |
//! | 2    | usage, I/O or internal error |
//! | 3    | `test`: at least one policy test failed |
//! | 4    | `explain`: the decision is deny |
//! | 5    | `diff --exit-code`: the policies differ; `replay`: a decision changed as `--fail-on` forbids; `fmt --check`: a file is not formatted |
//!
//! Everything else lives in the library (`meshward_policy`); this binary only
//! parses arguments, reads and writes files, and prints.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
