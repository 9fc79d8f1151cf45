//! The `tally` command; see [`tally::cli`].

fn main() -> std::process::ExitCode {
    tally::cli::main()
}
