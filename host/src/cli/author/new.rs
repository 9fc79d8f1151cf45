//! `tally adapter new NAME --lang rust|python|js|c|go`: a working adapter
//! project to start from — the WIT, a small adapter (a priced usage summary
//! per meter), a build script, sample usage, an install manifest (whose
//! `[config]` is the adapter's config, for `tally adapter test` as for the
//! host) and a README. It builds as generated and passes `tally adapter test`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ValueEnum;

use super::bindings::WIT;

const SAMPLE_USAGE: &str = include_str!("../../../templates/sample-usage.ndjson");
const MANIFEST: &str = include_str!("../../../templates/manifest.toml");
const README: &str = include_str!("../../../templates/README.md");

/// The files of a Rust project: (path, contents, executable).
const RUST: &[(&str, &str, bool)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/rust/Cargo.toml"),
        false,
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/rust/src/lib.rs"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../../templates/rust/build.sh"),
        true,
    ),
];

/// The files of a Python project (componentize-py).
const PYTHON: &[(&str, &str, bool)] = &[
    (
        "app.py",
        include_str!("../../../templates/python/app.py"),
        false,
    ),
    (
        "requirements.txt",
        include_str!("../../../templates/python/requirements.txt"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../../templates/python/build.sh"),
        true,
    ),
    (".gitignore", ".venv/\n*.wasm\nout/\n", false),
];

/// The files of a JavaScript project (componentize-qjs, QuickJS).
const JS: &[(&str, &str, bool)] = &[
    (
        "adapter.js",
        include_str!("../../../templates/js/adapter.js"),
        false,
    ),
    (
        "package.json",
        include_str!("../../../templates/js/package.json"),
        false,
    ),
    (
        "package-lock.json",
        include_str!("../../../templates/js/package-lock.json"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../../templates/js/build.sh"),
        true,
    ),
    (".gitignore", "node_modules/\n*.wasm\nout/\n", false),
];

/// The files of a C project (clang 16 and wasi-libc; bindings and
/// componentizing by tally itself).
const C: &[(&str, &str, bool)] = &[
    (
        "adapter.c",
        include_str!("../../../templates/c/adapter.c"),
        false,
    ),
    (
        "config.c",
        include_str!("../../../templates/c/config.c"),
        false,
    ),
    (
        "config.h",
        include_str!("../../../templates/c/config.h"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../../templates/c/build.sh"),
        true,
    ),
    (".gitignore", "gen/\n*.wasm\nout/\n", false),
];

/// The files of a Go project (standard Go for wasip1; the bindings and the
/// component come from `tally adapter bindings` and `tally adapter componentize`).
const GO: &[(&str, &str, bool)] = &[
    (
        "export_tally_billing_adapter/adapter.go",
        include_str!("../../../templates/go/adapter.go"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../../templates/go/build.sh"),
        true,
    ),
    (
        ".gitignore",
        "# written by build.sh (tally adapter bindings)\n/go.mod\n/wit_exports.go\n/tally_billing_*/\n/witpkg/\n*.wasm\nout/\n",
        false,
    ),
];

/// The language of a new adapter.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
    C,
    Go,
}

/// What `tally adapter new --help` adds: each language and what it writes.
const LANGUAGES_HELP: &str = "\
Languages (--lang) and what each writes besides the common files:
  rust    Cargo.toml, src/lib.rs; build.sh: cargo build --target wasm32-wasip2 (Rust from rustup)
  python  app.py, requirements.txt; build.sh: componentize-py in a local .venv (python3 with venv)
  js      adapter.js, package.json, package-lock.json; build.sh: componentize-qjs (Node.js 18+ and npm)
  c       adapter.c, config.c, config.h; build.sh: the contract's C bindings (tally adapter
          bindings), clang-16 for wasm32-wasi (Debian's clang-16, lld-16, wasi-libc), then
          tally adapter componentize
  go      export_tally_billing_adapter/adapter.go; build.sh: the contract's Go bindings and go.mod,
          Go 1.25+ for wasip1 (-buildmode=c-shared), then tally adapter componentize

Every project also holds:
  wit/billing-adapter.wit  the contract, every item documented
  manifest.toml            the installation manifest; its [config] is the adapter's config,
                           for `tally adapter test` as for the host
  sample-usage.ndjson      48 hours of usage of two VMs and an IP address
  build.sh                 builds NAME.wasm;  README.md: the next steps

Next: cd NAME && ./build.sh && tally adapter test NAME.wasm --usage sample-usage.ndjson --out out
The guide, from an empty directory to a first export: docs/writing-adapters.md";

/// Arguments of `tally adapter new`.
#[derive(clap::Args)]
#[command(after_help = LANGUAGES_HELP)]
pub struct NewArgs {
    /// The adapter's name (a-z, 0-9, '-'): also its folder and component name.
    name: String,
    /// The adapter's language (what each writes: below).
    #[arg(long, value_enum)]
    lang: Language,
    /// Where to create the project folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// Creates the project; refuses to overwrite an existing folder.
pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!("'{name}' is not a valid adapter name: a-z, 0-9 and '-', starting with a letter");
    }
    let root = args.dir.join(name);
    if root.exists() {
        bail!("{} exists already", root.display());
    }
    let (files, language) = match args.lang {
        Language::Rust => (RUST, "Rust"),
        Language::Python => (PYTHON, "Python"),
        Language::Js => (JS, "JavaScript"),
        Language::C => (C, "C"),
        Language::Go => (GO, "Go"),
    };
    let render = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{language}}", language)
    };
    write(&root.join("wit/billing-adapter.wit"), WIT, false)?;
    write(&root.join("sample-usage.ndjson"), SAMPLE_USAGE, false)?;
    for (path, text) in [("manifest.toml", MANIFEST), ("README.md", README)] {
        write(&root.join(path), &render(text), false)?;
    }
    for (path, text, executable) in files {
        write(&root.join(path), &render(text), *executable)?;
    }
    println!("created {} ({language} adapter). Next:", root.display());
    println!("  cd {} && ./build.sh", root.display());
    println!("  tally adapter test {name}.wasm --usage sample-usage.ndjson --out out");
    println!(
        "(the adapter's config is manifest.toml's [config]; the guide: docs/writing-adapters.md)"
    );
    Ok(())
}

fn write(path: &Path, text: &str, executable: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
