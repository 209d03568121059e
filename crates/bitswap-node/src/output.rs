//! What the binary prints: one JSON object with `--json`, a few lines for people otherwise,
//! and errors as one line on stderr.

use std::{
    io::{self, Write},
    process::ExitCode,
    sync::Mutex,
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
    let mut line = error_line(error);
    // The store turns a panic of redb (a corrupt file, or a bug) into an error that does not
    // say what went wrong; the panic hook kept that.
    let panicked = error.chain().any(|cause| {
        use bitswap::RedbBlockstoreError::Panicked;
        use bitswap_node::store::NodeStoreError;
        matches!(
            cause.downcast_ref::<bitswap::RedbBlockstoreError>(),
            Some(Panicked)
        ) || matches!(
            cause.downcast_ref::<NodeStoreError>(),
            Some(NodeStoreError::Redb(Panicked))
        )
    });
    if panicked && let Some(panic) = last_panic() {
        line.push_str(&format!(" ({panic})"));
    }
    eprintln!("error: {line}");
    ExitCode::FAILURE
}

/// `error` and its causes, joined by `: ` on one line. A cause whose text the line already
/// holds is left out: many errors print their source in their own message too.
pub(crate) fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace(['\n', '\r'], " ");
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

/// The last panic of the process: its message and where.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the default panic report (several lines and a backtrace on stderr) with a note of
/// the panic, which the one error line shows: the block store catches the panics of redb
/// meeting a corrupt file and reports them as errors, and `main` reports any other panic.
pub(crate) fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic");
        let mut note = format!("panicked: {message}");
        if let Some(location) = info.location() {
            note.push_str(&format!(" at {}:{}", location.file(), location.line()));
        }
        let note = note.replace(['\n', '\r'], " ");
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(note);
        }
    }));
}

/// The note of the last panic, if any.
pub(crate) fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|last| last.clone())
}

/// Seconds with millisecond precision, for JSON.
pub(crate) fn seconds(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] io::Error);

    #[test]
    fn causes_already_shown_are_left_out() {
        let error = anyhow::Error::new(Outer(io::Error::other("disk on fire"))).context("add /x");
        assert_eq!(error_line(&error), "add /x: outer: disk on fire");
        let error = anyhow::Error::new(io::Error::other("a\nb")).context("read");
        assert_eq!(error_line(&error), "read: a b");
    }
}
