//! [`Config`]: the settings of the whole [`Behaviour`](crate::Behaviour).

use crate::{network, server::Config as ServerConfig};

/// Settings of a [`Behaviour`](crate::Behaviour): the message layer, the server engine and
/// the store writes the behaviour performs.
///
/// Build it with [`Config::default`] and the consuming `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The message layer. Default: [`network::Config::default`].
    network: network::Config,
    /// The server engine. Default: [`ServerConfig::default`].
    server: ServerConfig,
    /// Store writes started by [`Behaviour::put`](crate::Behaviour::put) and not finished.
    /// Default: 16 batches.
    max_puts_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            network: network::Config::default(),
            server: ServerConfig::default(),
            max_puts_in_flight: 16,
        }
    }
}

impl Config {
    /// The default configuration; the same as [`Config::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the message layer's settings. Its per-peer message queue
    /// ([`network::Config::with_max_queued_messages`]) is raised, if needed, to hold the
    /// server's [`max_envelopes_in_flight`](ServerConfig::with_max_envelopes_in_flight) so that
    /// the server's answers are never refused as a full queue. Default:
    /// [`network::Config::default`].
    pub fn with_network(mut self, network: network::Config) -> Self {
        self.network = network;
        self
    }

    /// Sets the server engine's settings. Default: [`ServerConfig::default`].
    pub fn with_server(mut self, server: ServerConfig) -> Self {
        self.server = server;
        self
    }

    /// Sets how many store writes started by [`Behaviour::put`](crate::Behaviour::put) may be
    /// unfinished (at least 1); `put` refuses more with
    /// [`PutError::Busy`](crate::PutError::Busy). Default: 16 batches.
    pub fn with_max_puts_in_flight(mut self, batches: usize) -> Self {
        self.max_puts_in_flight = batches.max(1);
        self
    }

    /// The message layer's settings.
    pub fn network(&self) -> &network::Config {
        &self.network
    }

    /// The server engine's settings.
    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    /// Store writes that may be unfinished, in batches.
    pub fn max_puts_in_flight(&self) -> usize {
        self.max_puts_in_flight
    }

    /// Splits into the parts the behaviour builds from, with the network queue raised to hold
    /// the server's envelopes.
    pub(crate) fn into_parts(self) -> (network::Config, ServerConfig, usize) {
        let puts = self.max_puts_in_flight;
        let needed = self.server.max_envelopes_in_flight();
        let network = if self.network.max_queued_messages() < needed {
            self.network.with_max_queued_messages(needed)
        } else {
            self.network
        };
        (network, self.server, puts)
    }
}
