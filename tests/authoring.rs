//! What an adapter's author meets before any host: `tally adapter new
//! --help`, `tally adapter test` (the manifest's config, its `--out`, its
//! compile cache) and the errors of guest languages, each provoked — a
//! JavaScript throw of a string and of an `Error`, a Python `KeyError`, a
//! core module given where a component belongs.
//!
//! The components come from the toolchains `adapters/build.sh` installs
//! (`adapters/js/node_modules`, `.venv-adapters`) and from `target/adapters`;
//! the tests fail, not skip, without them.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use support::process::{Server, create_token, tally};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const SAMPLE_USAGE: &str = "host/templates/sample-usage.ndjson";

/// `tally adapter test ARGS…` with its compile cache in `cache`.
fn adapter_test(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["adapter", "test"])
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("the tally binary runs")
}

/// The chargeback-csv component and its example manifest's text.
fn chargeback() -> (PathBuf, String) {
    let component = root().join("target/adapters/chargeback-csv.wasm");
    assert!(component.exists(), "run adapters/build.sh first");
    let manifest =
        std::fs::read_to_string(root().join("examples/adapters/chargeback.toml")).unwrap();
    (component, manifest)
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A failed `tally adapter test`: its error line (the run's reason) and its output.
fn failed(output: &Output) -> (String, String) {
    let (stdout, stderr) = text(output);
    assert!(!output.status.success(), "it passed:\n{stdout}");
    (stderr, stdout)
}

#[test]
fn adapter_new_help_lists_the_languages_and_what_it_writes() {
    let output = tally(&["adapter", "new", "--help"]);
    let (help, _) = text(&output);
    assert!(output.status.success(), "{help}");
    for language in ["rust ", "python ", "js ", "c ", "go "] {
        assert!(
            help.contains(&format!("\n  {language}")),
            "{language}: {help}"
        );
    }
    for file in [
        "manifest.toml",
        "sample-usage.ndjson",
        "wit/billing-adapter.wit",
        "build.sh",
    ] {
        assert!(help.contains(file), "{file}: {help}");
    }
    let output = tally(&["adapter", "test", "--help"]);
    let (help, _) = text(&output);
    assert!(
        help.contains("--manifest") && help.contains("replaced"),
        "{help}"
    );
}

/// The config is the manifest's: a manifest whose `[config]` the adapter
/// refuses fails the test as it would fail the install. The second run of a
/// component loads it from the cache, and replaces the first run's output.
#[test]
fn adapter_test_reads_the_manifests_config_and_caches_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (component, manifest) = chargeback();
    let manifest_path = dir.path().join("manifest.toml");
    let out = dir.path().join("out");
    let usage = root().join(SAMPLE_USAGE);
    let args = |manifest: &Path| -> Vec<String> {
        [
            component.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--usage",
            usage.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let run = |manifest: &Path| {
        let args = args(manifest);
        adapter_test(&cache, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    std::fs::write(
        &manifest_path,
        manifest.replace("currency = \"EUR\"", "currency = \"euros\""),
    )
    .unwrap();
    let (error, stdout) = failed(&run(&manifest_path));
    assert!(
        error.contains("refused its configuration") && error.contains("euros"),
        "{error}"
    );
    assert!(
        stdout.contains("compiled (and cached for the next runs) in"),
        "{stdout}"
    );

    std::fs::write(&manifest_path, &manifest).unwrap();
    let second = run(&manifest_path);
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stderr}");
    assert!(stdout.contains("loaded from the cache in"), "{stdout}");
    assert!(out.join("chargeback.csv").exists());

    // `--config` still takes a config of its own instead of the manifest's.
    let json = dir.path().join("config.json");
    std::fs::write(&json, r#"{"currency": "EUR"}"#).unwrap();
    let mut with_config = args(&manifest_path);
    with_config.splice(
        1..3,
        ["--config".to_owned(), json.to_str().unwrap().to_owned()],
    );
    let refused = adapter_test(
        &cache,
        &with_config.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (error, _) = failed(&refused);
    assert!(error.contains("missing field `group_by_tag`"), "{error}");

    // No manifest where the default looks: the error says where config comes from.
    let missing = dir.path().join("nowhere.toml");
    let (error, _) = failed(&run(&missing));
    assert!(
        error.contains("--manifest FILE, or --config FILE"),
        "{error}"
    );
}

/// The run gets the manifest's `[limits]`, as the installed adapter would:
/// an adapter that fits the defaults but not its manifest's memory fails
/// here, not after it is installed; a limit the host would refuse is
/// refused here, naming it.
#[test]
fn adapter_test_runs_under_the_manifests_limits() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (component, manifest) = chargeback();
    let manifest_path = dir.path().join("manifest.toml");
    let usage = root().join(SAMPLE_USAGE);
    let run = |limits: &str| {
        std::fs::write(&manifest_path, format!("{manifest}\n[limits]\n{limits}\n")).unwrap();
        let out = tempfile::tempdir_in(dir.path()).unwrap();
        adapter_test(
            &cache,
            &[
                component.to_str().unwrap(),
                "--manifest",
                manifest_path.to_str().unwrap(),
                "--usage",
                usage.to_str().unwrap(),
                "--out",
                out.path().join("out").to_str().unwrap(),
            ],
        )
    };

    let roomy = run("memory_mib = 64\nlog_lines = 5");
    let (stdout, stderr) = text(&roomy);
    assert!(roomy.status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "limits: 60 s a call, 64 MiB of memory, 256 MiB of documents, 5 log lines / 1024 KiB"
        ),
        "{stdout}"
    );

    let (error, stdout) = failed(&run("memory_mib = 1"));
    assert!(stdout.contains("1 MiB of memory"), "{stdout}");
    assert!(error.contains("exceeded its memory limit"), "{error}");

    // A read of more than the 64 KiB of rows the host hashes in place (an
    // hour's rows of 8 times the sample's resources), under a cap that
    // leaves no room to hash them beside the adapter: hashed in place, not
    // refused for the host's own speed-up.
    let sample = std::fs::read_to_string(root().join(SAMPLE_USAGE)).unwrap();
    let groups = 8;
    let larger: String = (0..groups)
        .flat_map(|group| {
            sample.lines().map(move |line| {
                let line = line
                    .replacen("\"eventId\":\"", &format!("\"eventId\":\"g{group}-"), 1)
                    .replacen(
                        "/resourceGroups/demo/",
                        &format!("/resourceGroups/demo{group}/"),
                        1,
                    );
                format!("{line}\n")
            })
        })
        .collect();
    let larger_usage = dir.path().join("larger.ndjson");
    std::fs::write(&larger_usage, larger).unwrap();
    std::fs::write(
        &manifest_path,
        format!("{manifest}\n[limits]\nmemory_mib = 4\n"),
    )
    .unwrap();
    let out = dir.path().join("hourly");
    let cramped = adapter_test(
        &cache,
        &[
            component.to_str().unwrap(),
            "--manifest",
            manifest_path.to_str().unwrap(),
            "--usage",
            larger_usage.to_str().unwrap(),
            "--granularity",
            "hourly",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&cramped);
    assert!(cramped.status.success(), "{stderr}");
    let rows = groups * sample.lines().count();
    assert!(
        stdout.contains(&format!("ok: {rows} rows read")),
        "{stdout}"
    );

    let (error, _) = failed(&run("memory_mib = 0"));
    assert!(error.contains("limits.memory_mib must be 1 to"), "{error}");
    let (error, _) = failed(&run("cpu_seconds = 5"));
    assert!(error.contains("cpu_seconds"), "{error}");
}

#[test]
fn adapter_test_refuses_an_out_directory_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mine");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, "{}").unwrap();
    let component = root().join("target/adapters/chargeback-csv.wasm");
    let (error, _) = failed(&adapter_test(
        &dir.path().join("cache"),
        &[
            component.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--usage",
            root().join(SAMPLE_USAGE).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    assert!(
        error.contains("is not an output of `tally adapter test`") && error.contains("notes.txt"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "keep me"
    );
}

/// A core module (what C, C++, Go and Zig compilers write) is refused by
/// `tally adapter test` and by a host's install, with the way to a component
/// for each toolchain.
#[tokio::test]
async fn a_core_module_gets_advice_for_each_toolchain() {
    let dir = tempfile::tempdir().unwrap();
    let core = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, &core).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, "{}").unwrap();
    let (error, _) = failed(&adapter_test(
        &dir.path().join("cache"),
        &[
            path.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--usage",
            root().join(SAMPLE_USAGE).to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ],
    ));
    let advice = [
        "a core WebAssembly module, not a component",
        "--target wasm32-wasip2",
        "tally adapter componentize core.wasm -o adapter.wasm",
        "wasm-tools component new",
    ];
    for words in advice {
        assert!(error.contains(words), "{words:?} not in {error}");
    }

    let data = tempfile::tempdir().unwrap();
    let token = create_token(data.path().to_str().unwrap(), "operator");
    let server = Server::start(data.path());
    let sha256: String = Sha256::digest(&core)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = format!(
        "name = \"core\"\nversion = \"0.1.0\"\nworld = \"tally:billing@0.2.0\"\nsha256 = \"{sha256}\"\n[schedule]\nwindow = \"daily\"\n"
    );
    let address = server.base.trim_start_matches("http://").parse().unwrap();
    let (status, body) = support::send_adapter(
        reqwest::Method::POST,
        address,
        &token,
        "/v1/adapters",
        &manifest,
        &core,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    for words in advice {
        assert!(message.contains(words), "{words:?} not in {message}");
    }
}

/// Builds a JavaScript adapter from `source` with the repository's
/// componentize-qjs (as the template's build.sh does).
fn build_js(dir: &Path, source: &str) -> PathBuf {
    let qjs = root().join("adapters/js/node_modules/.bin/componentize-qjs");
    assert!(
        qjs.exists(),
        "{} is missing: run adapters/build.sh",
        qjs.display()
    );
    let js = dir.join("adapter.js");
    std::fs::write(&js, source).unwrap();
    let wasm = dir.join("thrower.wasm");
    let built = Command::new(qjs)
        .args([
            "--wit",
            root().join("wit").to_str().unwrap(),
            "--world",
            "billing-adapter",
            "--sync",
        ])
        .args(["--js", js.to_str().unwrap(), "-o", wasm.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    wasm
}

/// JavaScript that throws what its config says, from `export` or `validateConfig`.
const THROWER_JS: &str = r#"
export const adapter = {
  describe() { return { name: 'thrower', version: '0.1.0', produces: [] }; },
  validateConfig(config) {},
  export(request, config) {
    if (JSON.parse(config).throw === 'error') throw new Error('no rate for meter X');
    throw 'no rate for meter X';
  },
};
"#;

#[test]
fn a_javascript_throw_names_the_function_and_the_shape_to_throw() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = build_js(dir.path(), THROWER_JS);
    let cache = dir.path().join("cache");
    let reason = |config: &str| {
        let path = dir.path().join("config.json");
        std::fs::write(&path, config).unwrap();
        let out = dir.path().join("out");
        let (error, _) = failed(&adapter_test(
            &cache,
            &[
                wasm.to_str().unwrap(),
                "--config",
                path.to_str().unwrap(),
                "--usage",
                root().join(SAMPLE_USAGE).to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        ));
        error
    };
    let error = reason(r#"{"throw": "string"}"#);
    assert!(
        error.contains(
            "export threw a string; throw an export-error: `throw { tag: 'permanent', val: 'why' }`"
        ),
        "{error}"
    );
    assert!(!error.contains("FromJs"), "{error}");
    let error = reason(r#"{"throw": "error"}"#);
    assert!(
        error.contains("export threw an Error: no rate for meter X (at export (")
            && error.contains("throw { tag: 'permanent'"),
        "{error}"
    );
}

/// A Python adapter whose `export` looks up a rate its config lacks.
const RAISER_PY: &str = r#"import json

from wit_world import exports
from wit_world.exports.adapter import Description


def rate_of(config, meter):
    return config["rates"][meter]


class Adapter(exports.Adapter):
    def describe(self):
        return Description(name="raiser", version="0.1.0", produces=[])

    def validate_config(self, config):
        pass

    def export(self, request, config):
        return rate_of(json.loads(config), "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5")
"#;

#[test]
fn a_python_exception_names_its_type_message_and_line() {
    let componentize = root().join(".venv-adapters/bin/componentize-py");
    assert!(
        componentize.exists(),
        "{} is missing: run adapters/build.sh",
        componentize.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let site = dir.path().join("env/lib/site-packages");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(src.join("app.py"), RAISER_PY).unwrap();
    let wasm = dir.path().join("raiser.wasm");
    // An empty site-packages, as the template's build.sh gives it.
    let built = Command::new(&componentize)
        .env("VIRTUAL_ENV", dir.path().join("env"))
        .args([
            "--quiet",
            "-d",
            root().join("wit").to_str().unwrap(),
            "-w",
            "billing-adapter",
        ])
        .args([
            "componentize",
            "app",
            "-p",
            src.to_str().unwrap(),
            "-o",
            wasm.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let config = dir.path().join("config.json");
    std::fs::write(&config, "{}").unwrap();
    let (error, stdout) = failed(&adapter_test(
        &dir.path().join("cache"),
        &[
            wasm.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--usage",
            root().join(SAMPLE_USAGE).to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ],
    ));
    assert!(
        error.contains("export raised KeyError: 'rates' at app.py line 8 (in rate_of)"),
        "{error}"
    );
    assert!(
        error.contains("raise Err(ExportError_Permanent("),
        "{error}"
    );
    // The traceback is one entry of the log, naming app.py as the author knows it.
    let traceback = [
        "  [stderr] Traceback (most recent call last):",
        "        File \"app.py\", line 19, in export",
        "        File \"app.py\", line 8, in rate_of",
        "      KeyError: 'rates'",
    ]
    .join("\n");
    assert!(stdout.contains(&traceback), "{stdout}");
    assert!(!stdout.contains("/0/app.py"), "{stdout}");
}
