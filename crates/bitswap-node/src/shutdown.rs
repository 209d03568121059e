//! Waiting for Ctrl-C or SIGTERM.

/// Returns once the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub(crate) async fn signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
