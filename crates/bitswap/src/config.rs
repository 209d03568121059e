//! [`Config`]: the settings of the whole [`Behaviour`](crate::Behaviour).

use ipfs_blockstore::{config_getters, config_setters};

use crate::{client::Config as ClientConfig, network, server::Config as ServerConfig};

/// Settings of a [`Behaviour`](crate::Behaviour): the message layer, the server and client
/// engines and the store writes the behaviour performs.
///
/// Build it with [`Config::default`] and the consuming `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The message layer. Default: [`network::Config::default`].
    pub(crate) network: network::Config,
    /// The server engine. Default: [`ServerConfig::default`].
    pub(crate) server: ServerConfig,
    /// The client engine. Default: [`ClientConfig::default`].
    pub(crate) client: ClientConfig,
    /// Store writes started by [`Behaviour::put`](crate::Behaviour::put) and not finished.
    /// Default: 16 batches.
    pub(crate) max_puts_in_flight: usize,
    /// Wantlist entries a peer may hand in per second, on average; 0 is unlimited. Default:
    /// 50,000 entries per second.
    pub(crate) max_wants_per_second: u32,
    /// Wantlist entries a peer may hand in at once beyond that rate. Default: 8,192 entries.
    pub(crate) want_burst: u32,
    /// Whether queries look in the store before asking peers. Default: `true`.
    pub(crate) local_first: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            network: network::Config::default(),
            server: ServerConfig::default(),
            client: ClientConfig::default(),
            max_puts_in_flight: 16,
            max_wants_per_second: 50_000,
            want_burst: 8192,
            local_first: true,
        }
    }
}

impl Config {
    /// The default configuration; the same as [`Config::default`].
    pub fn new() -> Self {
        Self::default()
    }

    config_setters! {
        /// Sets the message layer's settings. Its per-peer message queue
        /// ([`network::Config::with_max_queued_messages`]) is raised, if needed, to hold the
        /// server's [`max_envelopes_in_flight`](ServerConfig::with_max_envelopes_in_flight) plus 16
        /// client messages, so that the server's answers are not refused as a full queue; and its
        /// [`max_wantlist_entries`](network::Config::with_max_wantlist_entries) is raised, if
        /// needed, to the server's
        /// [`max_entries_per_message`](ServerConfig::with_max_entries_per_message). Default:
        /// [`network::Config::default`].
        with_network(network: network::Config) -> network;

        /// Sets the server engine's settings. Default: [`ServerConfig::default`].
        with_server(server: ServerConfig) -> server;

        /// Sets the client engine's settings. Default: [`ClientConfig::default`].
        with_client(client: ClientConfig) -> client;

        /// Sets how many store writes started by [`Behaviour::put`](crate::Behaviour::put) may be
        /// unfinished (at least 1); `put` refuses more with
        /// [`PutError::Busy`](crate::PutError::Busy). Default: 16 batches.
        with_max_puts_in_flight(batches: usize) -> max_puts_in_flight = batches.max(1);

        /// Sets how many wantlist entries (wants and cancels) each peer may hand in per second on
        /// average; 0 lifts the limit. What a peer sends beyond it waits in its own stream: the
        /// node reads no further from that connection meanwhile, so a flood of wants costs bounded
        /// memory and at most this rate of work, and other peers keep their share of the CPU.
        /// Default: 50,000 entries per second (kubo and Helia send far fewer).
        with_max_wants_per_second(entries: u32) -> max_wants_per_second;

        /// Sets how many wantlist entries a peer may hand in at once beyond the
        /// [rate](Self::with_max_wants_per_second) (at least 1). Default: 8,192 entries (eight
        /// full wantlists of kubo's size).
        with_want_burst(entries: u32) -> want_burst = entries.max(1);

        /// Sets whether [`Behaviour::get`](crate::Behaviour::get), `get_many` and the
        /// [`Control`](crate::Control)'s look in the store first and ask peers only for the blocks
        /// it lacks (`true`), or ask peers for every block (`false`: for an embedder that checks
        /// its store itself before asking, and so saves the second lookup). Default: `true`.
        with_local_first(local_first: bool) -> local_first;
    }

    config_getters! {
        /// Whether queries look in the store before asking peers.
        local_first: bool;

        /// Wantlist entries per second per peer (0: unlimited).
        max_wants_per_second: u32;

        /// Wantlist entries a peer may hand in at once.
        want_burst: u32;
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

    config_getters! {
        /// Store writes that may be unfinished, in batches.
        max_puts_in_flight: usize;
    }

    /// The settings the behaviour builds from: these, with the network queue raised to hold
    /// the server's envelopes beside the client's messages, and the network's wantlist
    /// entries per message to the server's.
    pub(crate) fn settled(self) -> Self {
        let needed = self.server.max_envelopes_in_flight() + MIN_CLIENT_MESSAGES;
        let mut network = if self.network.max_queued_messages() < needed {
            self.network.with_max_queued_messages(needed)
        } else {
            self.network
        };
        let entries = self.server.max_entries_per_message();
        if network.max_wantlist_entries() < entries {
            network = network.with_max_wantlist_entries(entries);
        }
        Self { network, ..self }
    }
}

/// Messages per peer the network queue keeps for the client beside the server's envelopes.
const MIN_CLIENT_MESSAGES: usize = 16;
