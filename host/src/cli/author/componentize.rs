//! `tally adapter componentize CORE.wasm -o ADAPTER.wasm`: turns the core
//! module a C, C++, Go or Zig toolchain writes (wasm32-wasi, preview 1) into
//! the component the host installs — what `wasm-tools component new --adapt
//! wasi_snapshot_preview1=…` does, with the preview-1 adapter of the same
//! wasmtime release the host runs, so an author needs neither tool.
//!
//! A module without the world in a `component-type` custom section (Go's
//! linker drops the one the C bindings carry) gets the host's own contract
//! embedded first.

use std::path::PathBuf;

use anyhow::{Context, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};

use super::bindings::contract;

/// Arguments of `tally adapter componentize`.
#[derive(clap::Args)]
pub struct ComponentizeArgs {
    /// The core module (wasm32-wasi / wasip1, built as a reactor or c-shared).
    module: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    out: PathBuf,
}

/// Runs `tally adapter componentize`.
pub fn run(args: ComponentizeArgs) -> anyhow::Result<()> {
    let module = std::fs::read(&args.module)
        .with_context(|| format!("reading {}", args.module.display()))?;
    let component = componentize(module)
        .with_context(|| format!("componentizing {}", args.module.display()))?;
    // Whole or not at all: a half-written component would fail to install later.
    let partial = args.out.with_extension("wasm.partial");
    std::fs::write(&partial, &component)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes, tally:billing component)",
        args.out.display(),
        component.len()
    );
    Ok(())
}

/// The component of a core module, adapted from WASI preview 1.
pub fn componentize(mut module: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if !module.starts_with(b"\0asm") {
        bail!("not a WebAssembly file");
    }
    if module.get(4..8) != Some(&[1, 0, 0, 0]) {
        bail!("already a component (or not a core module): install it as it is");
    }
    if !has_component_type(&module)? {
        let (resolve, world) = contract()?;
        embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .context("embedding the contract's world")?;
    }
    ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

/// Whether the module carries a world (a `component-type…` custom section).
fn has_component_type(module: &[u8]) -> anyhow::Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::CustomSection(section) =
            payload.context("reading the module")?
            && section.name().starts_with("component-type")
        {
            return Ok(true);
        }
    }
    Ok(false)
}
