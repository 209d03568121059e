//! [`Config`]: the settings of the whole [`Behaviour`](crate::Behaviour).

use crate::{client::Config as ClientConfig, network, server::Config as ServerConfig};

/// Settings of a [`Behaviour`](crate::Behaviour): the message layer, the server and client
/// engines and the store writes the behaviour performs.
///
/// Build it with [`Config::default`] and the consuming `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The message layer. Default: [`network::Config::default`].
    network: network::Config,
    /// The server engine. Default: [`ServerConfig::default`].
    server: ServerConfig,
    /// The client engine. Default: [`ClientConfig::default`].
    client: ClientConfig,
    /// Store writes started by [`Behaviour::put`](crate::Behaviour::put) and not finished.
    /// Default: 16 batches.
    max_puts_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            network: network::Config::default(),
            server: ServerConfig::default(),
            client: ClientConfig::default(),
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
    /// server's [`max_envelopes_in_flight`](ServerConfig::with_max_envelopes_in_flight) plus 16
    /// client messages, so that the server's answers are not refused as a full queue. Default:
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

    /// Sets the client engine's settings. Default: [`ClientConfig::default`].
    pub fn with_client(mut self, client: ClientConfig) -> Self {
        self.client = client;
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

    /// The client engine's settings.
    pub fn client(&self) -> &ClientConfig {
        &self.client
    }

    /// Store writes that may be unfinished, in batches.
    pub fn max_puts_in_flight(&self) -> usize {
        self.max_puts_in_flight
    }

    /// Splits into the parts the behaviour builds from, with the network queue raised to hold
    /// the server's envelopes beside the client's messages.
    pub(crate) fn into_parts(self) -> Parts {
        let needed = self.server.max_envelopes_in_flight() + MIN_CLIENT_MESSAGES;
        let network = if self.network.max_queued_messages() < needed {
            self.network.with_max_queued_messages(needed)
        } else {
            self.network
        };
        Parts {
            network,
            server: self.server,
            client: self.client,
            max_puts_in_flight: self.max_puts_in_flight,
        }
    }
}

/// Messages per peer the network queue keeps for the client beside the server's envelopes.
const MIN_CLIENT_MESSAGES: usize = 16;

/// A [`Config`] taken apart.
pub(crate) struct Parts {
    pub(crate) network: network::Config,
    pub(crate) server: ServerConfig,
    pub(crate) client: ClientConfig,
    pub(crate) max_puts_in_flight: usize,
}
