//! What a guest language's trap means, in words that tell the adapter's
//! author what to do. A trap's own message is wasm's (`unreachable`
//! executed); the cause is in what the guest's runtime wrote to stderr just
//! before: a Python traceback (kept as one log line, see [`super::stdio`]),
//! or a panic of componentize-qjs's runtime when JavaScript threw what the
//! contract cannot carry.

use super::stdio::TRACEBACK_START;

/// How a JavaScript function of the contract fails with a reason.
fn js_shape(call: &str) -> &'static str {
    match call {
        "export" => {
            "throw an export-error: `throw { tag: 'permanent', val: 'why' }` \
             (tags: 'invalid-config', 'transient', 'permanent')"
        }
        "validate-config" => "throw a string saying what to fix: `throw 'why'`",
        _ => "return the value the contract declares",
    }
}

/// How a Python method of the contract fails with a reason.
fn python_shape(call: &str) -> &'static str {
    match call {
        "export" => "raise Err(ExportError_Permanent(\"why\")) (or _Transient, _InvalidConfig)",
        "validate-config" => "raise Err(\"why\")",
        _ => "return the value the contract declares",
    }
}

/// The cause of a trap of `call` (`export`, `validate-config`, `describe`),
/// read from the last lines the guest wrote to stderr (oldest first), when
/// a guest language's runtime said it.
pub fn explain(call: &str, stderr: &[&str]) -> Option<String> {
    python_exception(call, stderr).or_else(|| javascript_throw(call, &stderr.join("\n")))
}

/// A Python exception that escaped `call`: its type and message, and the
/// innermost frame (`app.py` line N, in F).
fn python_exception(call: &str, stderr: &[&str]) -> Option<String> {
    let traceback = stderr
        .iter()
        .rev()
        .find(|line| line.starts_with(TRACEBACK_START))?;
    let exception = traceback.lines().last()?.trim();
    let frame = traceback
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("File \""))
        .and_then(|frame| {
            let (file, rest) = frame.split_once("\", line ")?;
            let (line, function) = rest.split_once(", in ").unwrap_or((rest, ""));
            Some(match function {
                "" => format!(" at {file} line {line}"),
                function => format!(" at {file} line {line} (in {function})"),
            })
        })
        .unwrap_or_default();
    Some(format!(
        "{call} raised {exception}{frame} (the traceback is in the run's log); \
         an exception that escapes traps: to fail with a reason, {}",
        python_shape(call)
    ))
}

/// A JavaScript throw that componentize-qjs could not turn into `call`'s
/// result: a value of the wrong shape, an unknown tag, or an `Error`.
fn javascript_throw(call: &str, stderr: &str) -> Option<String> {
    let shape = js_shape(call);
    if let Some(at) = stderr.find("unknown variant tag: ") {
        let tag = stderr[at + "unknown variant tag: ".len()..]
            .split(['"', '\n'])
            .next()
            .unwrap_or_default();
        return Some(format!(
            "{call} threw {{ tag: '{tag}' }}, which is not a case of the contract's error; {shape}"
        ));
    }
    if let Some(at) = stderr.find("FromJs { from: \"") {
        let rest = &stderr[at + "FromJs { from: \"".len()..];
        let from = rest.split('"').next().unwrap_or_default();
        let thrown = match from {
            "string" => "a string".to_owned(),
            "object" => "an object that is not of the contract's error shape".to_owned(),
            other => format!(
                "a value that is not of the contract's error shape ({other} where a field was expected)"
            ),
        };
        return Some(format!("{call} threw {thrown}; {shape}"));
    }
    let failed = stderr.find("Failed to call '")?;
    let rest = &stderr[failed..];
    let message = debug_string_after(rest, "message: Some(\"").unwrap_or_default();
    let place = debug_string_after(rest, "stack: Some(\"")
        .and_then(|stack| {
            stack
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        })
        .map(|frame| format!(" ({frame})"))
        .unwrap_or_default();
    Some(format!(
        "{call} threw an Error: {message}{place}. A thrown Error traps; to fail with a reason, {shape}"
    ))
}

/// The Rust `{:?}` string that starts right after `marker` in `text`, unescaped.
fn debug_string_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let mut out = String::new();
    let mut chars = text[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As componentize-py 0.25's runtime writes them (the traceback as the
    /// run log keeps it: one line).
    #[test]
    fn a_python_exception_names_its_type_message_and_line() {
        let traceback = "Traceback (most recent call last):\n  File \"app.py\", line 20, in export\n  File \"app.py\", line 8, in rate_of\nKeyError: 'rates'";
        let stderr = [
            traceback,
            "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:",
            "Python function threw an unexpected exception",
        ];
        let reason = explain("export", &stderr).unwrap();
        assert!(
            reason.starts_with(
                "export raised KeyError: 'rates' at app.py line 8 (in rate_of) (the traceback"
            ),
            "{reason}"
        );
    }

    /// As componentize-qjs 0.4.5's runtime panics.
    #[test]
    fn a_javascript_throw_says_which_shape_to_throw() {
        let string = [
            "thread '<unnamed>' (1) panicked at crates/runtime/src/call.rs:283:18:",
            "invalid variant: Error(FromJs { from: \"string\", to: \"variant\", message: None })",
        ];
        let reason = explain("export", &string).unwrap();
        assert!(
            reason.starts_with(
                "export threw a string; throw an export-error: `throw { tag: 'permanent'"
            ),
            "{reason}"
        );

        let tag = [
            "invalid variant: Exception(Exception { message: Some(\"unknown variant tag: nope\"), stack: Some(\"\") })",
        ];
        let reason = explain("export", &tag).unwrap();
        assert!(
            reason.starts_with("export threw { tag: 'nope' }"),
            "{reason}"
        );

        let error = [
            "thread '<unnamed>' (1) panicked at crates/runtime/src/interpreter.rs:51:31:",
            "Failed to call 'export': Value(Exception(",
            "Exception { message: Some(\"an \\\"Error\\\" object\"), stack: Some(\"    at export (/js/adapter.js:7:39)\\n\") })",
            ")",
        ];
        let reason = explain("validate-config", &error).unwrap();
        assert_eq!(
            reason,
            "validate-config threw an Error: an \"Error\" object (at export (/js/adapter.js:7:39)). \
             A thrown Error traps; to fail with a reason, throw a string saying what to fix: `throw 'why'`"
        );
    }

    #[test]
    fn other_panics_are_left_as_they_are() {
        let rust = [
            "thread '<unnamed>' panicked at src/lib.rs:3:5:",
            "rate card missing",
        ];
        assert_eq!(explain("export", &rust), None);
    }
}
