//! The `--out` directory of `tally adapter test`: created if missing, a
//! previous output of the command replaced, any other non-empty directory
//! refused, so that a mistyped `--out` never overwrites an author's files.

use std::path::Path;

use anyhow::{Context, bail};

/// The file that marks a directory as an output of `tally adapter test`:
/// the names of the documents it wrote, one a line.
const MARKER: &str = ".tally-adapter-test";

/// Makes `out` ready for a run's documents: creates it, or removes what a
/// previous run wrote there; refuses a directory holding anything else.
pub fn prepare(out: &Path) -> anyhow::Result<()> {
    if !out.exists() {
        return std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()));
    }
    if !out.is_dir() {
        bail!("--out {} is not a directory", out.display());
    }
    let marker = out.join(MARKER);
    let written: Vec<String> = match std::fs::read_to_string(&marker) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", marker.display())),
    };
    let mut others = Vec::new();
    for entry in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != MARKER && !written.contains(&name) {
            others.push(name);
        }
    }
    if !others.is_empty() {
        others.sort();
        let what = if marker.exists() {
            "files that `tally adapter test` did not write"
        } else {
            "files, and is not an output of `tally adapter test`"
        };
        bail!(
            "--out {} holds {what} ({}{}): choose another --out, or empty it yourself",
            out.display(),
            others
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if others.len() > 5 { ", …" } else { "" }
        );
    }
    // A previous output: its documents go, so none of them outlives this run.
    for name in written.iter().chain([&MARKER.to_owned()]) {
        match std::fs::remove_file(out.join(name)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error)
                    .with_context(|| format!("removing {}", out.join(name).display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Marks `out` as this command's output of the documents `names`: the next
/// run may replace them.
pub fn record<'a>(out: &Path, names: impl Iterator<Item = &'a String>) -> anyhow::Result<()> {
    let list: String = names.map(|name| format!("{name}\n")).collect();
    let marker = out.join(MARKER);
    std::fs::write(&marker, list).with_context(|| format!("writing {}", marker.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_output_is_replaced_and_anything_else_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        prepare(&out).unwrap();
        std::fs::write(out.join("summary.csv"), "a\n").unwrap();
        record(&out, [&"summary.csv".to_owned()].into_iter()).unwrap();
        prepare(&out).unwrap();
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "the previous output went"
        );

        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let refused = prepare(&out).unwrap_err().to_string();
        assert!(
            refused.contains("notes.txt") && refused.contains("choose another --out"),
            "{refused}"
        );
        record(&out, std::iter::empty()).unwrap();
        let refused = prepare(&out).unwrap_err().to_string();
        assert!(refused.contains("did not write (notes.txt)"), "{refused}");
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "mine"
        );

        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(
            prepare(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }
}
