//! What the binary prints: one JSON object with `--json`, a few lines for people otherwise,
//! and errors as one line on stderr.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use serde_json::Value;

/// Prints the result of a command: `value` as one JSON line with `--json`, else `human()`.
pub(crate) fn emit(json: bool, value: &Value, human: impl FnOnce() -> String) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    if json {
        writeln!(stdout, "{value}")?;
    } else {
        let text = human();
        if !text.is_empty() {
            writeln!(stdout, "{text}")?;
        }
    }
    stdout.flush()
}

/// Prints `error` with its causes as one line on stderr and returns the failure exit code.
pub(crate) fn fail(error: &anyhow::Error) -> ExitCode {
    let line = format!("{error:#}").replace(['\n', '\r'], " ");
    eprintln!("error: {line}");
    ExitCode::FAILURE
}

/// Seconds with millisecond precision, for JSON.
pub(crate) fn seconds(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}
