//! `tally compile-component` (hidden): the host's bounded compiler child.
//! The host starts it with the component on stdin and a file as stdout; see
//! [`crate::sandbox::compile`].

use std::process::ExitCode;

/// Arguments the host gives its compiler child.
#[derive(clap::Args)]
pub struct CompileArgs {
    /// The host engine's settings hash: the child refuses to compile for another.
    #[arg(long)]
    settings_hash: String,
    /// Whether the host's engine uses the pooling allocator.
    #[arg(long)]
    pooling: bool,
}

/// Compiles stdin to stdout; no runtime, no logging, no store.
pub fn run(args: CompileArgs) -> ExitCode {
    crate::sandbox::compile::child_main(args.pooling, &args.settings_hash)
}
