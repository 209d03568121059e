//! Raw peers: a libp2p-stream swarm writes the wire format by hand, as kubo and Helia use
//! streams, to check what the message layer reads, refuses and reports.

use super::*;

// Raw peers: a libp2p-stream swarm that writes the wire format by hand.

const V1_2_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");

/// A raw peer connected to `node`; its swarm runs in a task for at most a few [`TIMEOUT`]s.
async fn raw_peer(node: &mut Swarm<Behaviour>) -> (PeerId, libp2p_stream::Control) {
    let address = listen(node).await;
    let mut raw = new_swarm(libp2p_stream::Behaviour::new());
    let raw_id = *raw.local_peer_id();
    let control = raw.behaviour().new_control();
    raw.dial(address).expect("dial");
    tokio::spawn(async move {
        let _ = timeout(TIMEOUT * 3, async {
            loop {
                raw.select_next_some().await;
            }
        })
        .await;
    });
    timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::Behaviour(Event::PeerConnected { peer }) =
                node.select_next_some().await
            {
                assert_eq!(peer, raw_id);
                return;
            }
        }
    })
    .await
    .expect("raw peer connected");
    (raw_id, control)
}

/// A node of `config` (and its id) with a [raw peer](raw_peer) connected to it.
async fn with_raw_peer(
    config: Config,
) -> (Swarm<Behaviour>, PeerId, PeerId, libp2p_stream::Control) {
    let mut node = node(config);
    let node_id = *node.local_peer_id();
    let (raw_id, control) = raw_peer(&mut node).await;
    (node, node_id, raw_id, control)
}

/// Writes `message` (Bitswap 1.2.0) to `peer` on a stream of its own, then closes the stream.
async fn write_one(control: &mut libp2p_stream::Control, peer: PeerId, message: &Message) {
    let mut stream = control.open_stream(peer, V1_2_0).await.expect("stream");
    let frames = bitswap::protocol::encode(message, Version::V1_2_0);
    bitswap::protocol::write_frames(&mut stream, &frames)
        .await
        .expect("write");
    stream.close().await.expect("close");
}

/// Sends `message` to `peer` and drives `node` until it reports a message sent.
async fn send_and_wait(node: &mut Swarm<Behaviour>, peer: PeerId, message: Message) {
    node.behaviour_mut().send(peer, message).expect("send");
    drive_one(node, |event| {
        matches!(event, Event::MessageSent { .. }).then_some(())
    })
    .await;
}

/// Writes `messages` to `peer` on one stream, each `pause` after the one before was reported
/// (an ack on `acks`: the stream stays open meanwhile, so each must be reported before the
/// stream ends), then closes the stream.
fn write_acked(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    messages: Vec<Message>,
    pause: Duration,
    mut acks: mpsc::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = control.open_stream(peer, V1_2_0).await.expect("stream");
        for message in &messages {
            tokio::time::sleep(pause).await;
            let frames = bitswap::protocol::encode(message, Version::V1_2_0);
            bitswap::protocol::write_frames(&mut stream, &frames)
                .await
                .expect("write");
            timeout(TIMEOUT, acks.next())
                .await
                .expect("message reported while the stream is open");
        }
        stream.close().await.expect("close");
    })
}

/// Waits (within [`TIMEOUT`]) for the raw peer's `writer` task to finish; panics if it failed.
async fn finish(writer: tokio::task::JoinHandle<()>) {
    timeout(TIMEOUT, writer)
        .await
        .expect("writer finished")
        .expect("writer");
}

/// Drives `node` until `f` returns something, for at most [`TIMEOUT`].
async fn drive_one<T>(node: &mut Swarm<Behaviour>, mut f: impl FnMut(Event) -> Option<T>) -> T {
    timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::Behaviour(event) = node.select_next_some().await
                && let Some(out) = f(event)
            {
                return out;
            }
        }
    })
    .await
    .expect("timed out driving the swarm")
}

/// kubo: many messages on one long-lived stream, each reported before the stream ends.
#[tokio::test]
async fn reads_many_messages_on_one_stream() {
    let (mut node, node_id, raw_id, control) = with_raw_peer(Config::default()).await;

    let messages: Vec<_> = (0..5u8)
        .map(|i| Message::wantlist_update(vec![Entry::want_have(cid(i), 1)]))
        .collect();
    let (mut ack_tx, ack_rx) = mpsc::channel::<()>(8);
    let writer = write_acked(control, node_id, messages.clone(), Duration::ZERO, ack_rx);

    let mut received = Vec::new();
    drive_one(&mut node, |event| {
        if let Event::Message { peer, message, .. } = event {
            assert_eq!(peer, raw_id);
            received.push(message);
            ack_tx.try_send(()).expect("ack");
        }
        (received.len() == messages.len()).then_some(())
    })
    .await;
    assert_eq!(received, messages);
    finish(writer).await;
    assert_eq!(
        node.behaviour().peer_version(&raw_id),
        Some(Version::V1_2_0)
    );
}

/// A message's `began` is when its stream was opened for the stream's first message (a peer
/// that negotiates first sends it a round trip later), and when it arrived for the next ones.
#[tokio::test]
async fn the_first_message_of_a_stream_began_when_the_stream_opened() {
    const PAUSE: Duration = Duration::from_millis(500);
    let (mut node, node_id, _, control) = with_raw_peer(Config::default()).await;
    let messages: Vec<_> = (0..2u8)
        .map(|i| Message::wantlist_update(vec![Entry::want_have(cid(i), 1)]))
        .collect();
    let (mut ack_tx, ack_rx) = mpsc::channel::<()>(8);
    let writer = write_acked(control, node_id, messages.clone(), PAUSE, ack_rx);
    let mut arrivals = Vec::new();
    drive_one(&mut node, |event| {
        if let Event::Message { began, .. } = event {
            arrivals.push((began, std::time::Instant::now()));
            ack_tx.try_send(()).expect("ack");
        }
        (arrivals.len() == messages.len()).then_some(())
    })
    .await;
    finish(writer).await;
    let (first_began, first_came) = arrivals[0];
    assert!(
        first_came - first_began >= PAUSE * 3 / 5,
        "the first began at the stream's opening: {:?} before it came",
        first_came - first_began
    );
    let (second_began, second_came) = arrivals[1];
    assert!(
        second_began >= first_came,
        "the second began after the first came"
    );
    assert!(second_came >= second_began);
}

/// Wants past the limit are dropped as the message is decoded, but those that ask for
/// DONT_HAVE (up to as many again, to be answered); cancels are not counted.
#[tokio::test]
async fn wantlist_entries_past_the_limit_are_dropped() {
    let (mut node, node_id, _, mut control) =
        with_raw_peer(Config::default().with_max_wantlist_entries(100)).await;

    // Every third a cancel, every other want asks for DONT_HAVE.
    let sent = Message::wantlist_update(
        (0..=255u8)
            .map(|i| match i % 3 {
                0 => Entry::cancel(cid(i)),
                _ => Entry {
                    send_dont_have: i % 2 == 0,
                    ..Entry::want_have(cid(i), i32::from(i))
                },
            })
            .collect(),
    );
    let mut wanted = 0;
    let expected: Vec<Entry> = sent
        .wantlist
        .entries
        .iter()
        .filter(|entry| {
            if entry.cancel {
                return true;
            }
            wanted += 1;
            wanted <= 100 || entry.send_dont_have
        })
        .cloned()
        .collect();
    assert!(expected.len() < sent.wantlist.entries.len());
    let writer = tokio::spawn(async move { write_one(&mut control, node_id, &sent).await });
    let received = drive_one(&mut node, |event| match event {
        Event::Message { message, .. } => Some(message),
        _ => None,
    })
    .await;
    assert_eq!(received.wantlist.entries, expected);
    finish(writer).await;
}

/// With an inbound byte budget smaller than one message, messages too large for a
/// connection's own room (64 KiB) are read one at a time (each waits for the whole budget) and
/// all of them arrive, from every stream and peer.
#[tokio::test]
async fn messages_larger_than_the_inbound_budget_arrive_one_at_a_time() {
    let mut node = node(Config::default().with_max_inbound_bytes(100));
    let node_id = *node.local_peer_id();
    let mut controls = Vec::new();
    for _ in 0..2 {
        controls.push(raw_peer(&mut node).await.1);
    }
    let mut writers = Vec::new();
    for control in controls {
        for stream in 0..3u8 {
            let mut control = control.clone();
            writers.push(tokio::spawn(async move {
                let mut stream_io = control.open_stream(node_id, V1_2_0).await.expect("stream");
                for i in 0..4u8 {
                    let message = Message {
                        blocks: vec![raw_block(70_000, stream * 16 + i)],
                        ..Message::default()
                    };
                    let frames = bitswap::protocol::encode(&message, Version::V1_2_0);
                    bitswap::protocol::write_frames(&mut stream_io, &frames)
                        .await
                        .expect("write");
                }
                stream_io.close().await.expect("close");
            }));
        }
    }
    let mut received = 0;
    drive_one(&mut node, |event| {
        if let Event::Message { message, .. } = event {
            assert_eq!(message.blocks.len(), 1);
            received += 1;
        }
        (received == 2 * 3 * 4).then_some(())
    })
    .await;
    for writer in writers {
        finish(writer).await;
    }
}

/// Helia: one message per stream, each stream closed after it.
#[tokio::test]
async fn reads_one_message_per_stream() {
    let (mut node, node_id, _, mut control) = with_raw_peer(Config::default()).await;

    let messages: Vec<_> = (0..5u8)
        .map(|i| Message {
            blocks: vec![raw_block(1000, i)],
            ..Message::default()
        })
        .collect();
    let to_write = messages.clone();
    let writer = tokio::spawn(async move {
        for message in &to_write {
            write_one(&mut control, node_id, message).await;
        }
    });

    let mut received = Vec::new();
    drive_one(&mut node, |event| {
        if let Event::Message { message, .. } = event {
            received.push(message);
        }
        (received.len() == messages.len()).then_some(())
    })
    .await;
    // Streams written one after the other are reported in that order.
    assert_eq!(received, messages);
    finish(writer).await;
}

/// A stream that stays quiet past the idle timeout is reset.
#[tokio::test]
async fn idle_inbound_stream_is_reset() {
    let idle = Duration::from_millis(300);
    let (mut node, node_id, _, mut control) =
        with_raw_peer(Config::default().with_inbound_idle_timeout(idle)).await;

    let message = want_one(1);
    let to_write = message.clone();
    let writer = tokio::spawn(async move {
        let mut stream = control.open_stream(node_id, V1_2_0).await.expect("stream");
        let frames = bitswap::protocol::encode(&to_write, Version::V1_2_0);
        bitswap::protocol::write_frames(&mut stream, &frames)
            .await
            .expect("write");
        let written = tokio::time::Instant::now();
        // The node never writes on it: the read ends when the node resets the stream.
        let mut buf = [0u8; 16];
        let read = timeout(TIMEOUT, stream.read(&mut buf))
            .await
            .expect("stream reset");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        written.elapsed()
    });
    let received = drive_one(&mut node, |event| match event {
        Event::Message { message, .. } => Some(message),
        _ => None,
    })
    .await;
    assert_eq!(received, message);
    // Keep driving the node while the writer waits for the reset.
    let waited = timeout(TIMEOUT, async {
        tokio::select! {
            waited = writer => waited.expect("writer"),
            () = async { loop { node.select_next_some().await; } } => unreachable!(),
        }
    })
    .await
    .expect("writer done");
    assert!(waited >= idle - Duration::from_millis(50), "{waited:?}");
}

/// Writes `bytes` on a new stream, then keeps writing until the peer resets the stream.
async fn write_until_reset(control: &mut libp2p_stream::Control, peer: PeerId, bytes: &[u8]) {
    let mut stream = control.open_stream(peer, V1_2_0).await.expect("stream");
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
    timeout(TIMEOUT, async {
        loop {
            if stream.write_all(&[0; 1024]).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("stream reset");
}

#[tokio::test]
async fn oversized_and_malformed_messages_reset_the_stream() {
    let (mut node, node_id, raw_id, mut control) = with_raw_peer(Config::default()).await;

    let good = want_one(1);
    let to_write = good.clone();
    let writer = tokio::spawn(async move {
        // A declared length of 64 MiB.
        let mut buf = unsigned_varint::encode::u64_buffer();
        let prefix = unsigned_varint::encode::u64(64 << 20, &mut buf);
        write_until_reset(&mut control, node_id, prefix).await;
        // A valid length and bytes that are no protobuf.
        write_until_reset(&mut control, node_id, &[4, 0xff, 0xff, 0xff, 0xff]).await;
        // The node is still fine.
        write_one(&mut control, node_id, &to_write).await;
    });

    let (mut too_large, mut malformed, mut received) = (false, false, None);
    drive_one(&mut node, |event| {
        match event {
            Event::InboundFailure {
                peer,
                error: InboundFailure::Protocol(error),
                ..
            } => {
                assert_eq!(peer, raw_id);
                match error {
                    ProtocolError::MessageTooLarge { declared } => {
                        assert_eq!(declared, 64 << 20);
                        too_large = true;
                    }
                    ProtocolError::Decode(_) => malformed = true,
                    other => panic!("unexpected error {other}"),
                }
            }
            Event::Message { message, .. } => received = Some(message),
            Event::InboundFailure { error, .. } => panic!("unexpected failure {error}"),
            _ => {}
        }
        (too_large && malformed && received.is_some()).then_some(())
    })
    .await;
    assert_eq!(received, Some(good));
    finish(writer).await;
    assert!(node.behaviour().is_connected(&raw_id));
}

/// Streams beyond the readers wait for one (kubo opens a stream per answer); beyond three
/// times as many waiting, they are reset.
#[tokio::test]
async fn streams_beyond_those_waiting_are_reset() {
    let (mut node, node_id, _, mut control) =
        with_raw_peer(Config::default().with_max_inbound_streams(2)).await;

    let (mut done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let writer = tokio::spawn(async move {
        // Two streams read and six waiting, all held open, then a ninth.
        let mut open = Vec::new();
        for _ in 0..8 {
            open.push(control.open_stream(node_id, V1_2_0).await.expect("stream"));
        }
        write_until_reset(&mut control, node_id, &[]).await;
        // Keep the others open until the node reported the refusal.
        timeout(TIMEOUT, done_rx.next()).await.expect("done");
        drop(open);
    });

    drive_one(&mut node, |event| match event {
        Event::InboundFailure {
            error: InboundFailure::TooManyStreams { limit },
            ..
        } => {
            assert_eq!(limit, 2);
            Some(())
        }
        Event::InboundFailure { error, .. } => panic!("unexpected failure {error}"),
        _ => None,
    })
    .await;
    done_tx.try_send(()).expect("done");
    finish(writer).await;
}

/// A stream beyond the readers is not lost: its message is read once a reader is free.
#[tokio::test]
async fn a_stream_beyond_the_readers_is_read_once_one_is_free() {
    let (mut node, node_id, _, mut control) =
        with_raw_peer(Config::default().with_max_inbound_streams(1)).await;

    let message = want_one(3);
    let to_write = message.clone();
    let freed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let freed_by_writer = std::sync::Arc::clone(&freed);
    let writer = tokio::spawn(async move {
        // The one reader waits on a stream that stays quiet; the answer comes on a second.
        let quiet = control.open_stream(node_id, V1_2_0).await.expect("stream");
        write_one(&mut control, node_id, &to_write).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        freed_by_writer.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(quiet);
    });

    let received = drive_one(&mut node, |event| match event {
        Event::Message { message, .. } => Some(message),
        Event::InboundFailure { error, .. } => panic!("unexpected failure {error}"),
        _ => None,
    })
    .await;
    assert!(
        freed.load(std::sync::atomic::Ordering::SeqCst),
        "read before a reader was free"
    );
    assert_eq!(received, message);
    finish(writer).await;
}

/// A peer that does not speak Bitswap: messages fail with `Unsupported`.
#[tokio::test]
async fn peer_without_bitswap_fails_sends() {
    let mut node = node(Config::default());
    let (raw_id, _control) = raw_peer(&mut node).await;
    let id = node
        .behaviour_mut()
        .send(raw_id, want_one(1))
        .expect("send");
    let error = drive_one(&mut node, |event| match event {
        Event::SendFailed {
            id: failed, error, ..
        } => {
            assert_eq!(failed, id);
            Some(error)
        }
        _ => None,
    })
    .await;
    assert!(matches!(error, SendFailure::Unsupported), "{error}");
}

/// Outbound messages share one long-lived stream, each reported sent while it stays open; the
/// stream closes once idle and the next message opens another.
#[tokio::test]
async fn outbound_messages_share_a_stream_until_it_idles() {
    let idle = Duration::from_millis(300);
    let mut node = node(Config::default().with_outbound_idle_timeout(idle));
    let (raw_id, mut control) = raw_peer(&mut node).await;
    let mut incoming = control.accept(V1_2_0).expect("accept");
    // (stream index, message) for each message read; (stream index, None) at each clean end.
    let (reads_tx, mut reads) = mpsc::channel::<(usize, Option<Message>)>(64);
    tokio::spawn(async move {
        let mut index = 0;
        while let Some((_, mut stream)) = incoming.next().await {
            let mut reads_tx = reads_tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) = bitswap::protocol::read_message(&mut stream).await {
                    let _ = reads_tx.try_send((index, Some(message)));
                }
                let _ = reads_tx.try_send((index, None));
            });
            index += 1;
        }
    });

    let messages: Vec<_> = (0..5u8)
        .map(|i| Message::wantlist_update(vec![Entry::want_have(cid(i), 1)]))
        .collect();
    // One at a time: each is written (and reported) before the next is sent.
    for message in &messages {
        send_and_wait(&mut node, raw_id, message.clone()).await;
    }
    let mut first = Vec::new();
    while first.len() < messages.len() {
        let (index, message) = timeout(TIMEOUT, reads.next())
            .await
            .expect("read in time")
            .expect("reader alive");
        assert_eq!(index, 0, "every message on the first stream");
        first.push(message.expect("a message, not the end of the stream"));
    }
    assert_eq!(first, messages);

    // Idle: the stream is closed cleanly, without any report to the behaviour.
    let end = timeout(TIMEOUT, reads.next())
        .await
        .expect("closed when idle");
    assert_eq!(end, Some((0, None)));

    let last = Message::wantlist_update(vec![Entry::cancel(cid(9))]);
    send_and_wait(&mut node, raw_id, last.clone()).await;
    let read = timeout(TIMEOUT, reads.next()).await.expect("read in time");
    assert_eq!(read, Some((1, Some(last))));
}

/// A peer that takes the stream but never reads: the message being written and those
/// queued behind it are reported stalled, once each, and neither sent nor failed meanwhile.
#[tokio::test]
async fn messages_behind_a_stream_the_peer_does_not_read_are_reported_stalled() {
    let config = Config::default().with_write_stall(Duration::from_millis(100));
    let mut a = node(config);
    let (peer, mut control) = raw_peer(&mut a).await;
    let mut incoming = control.accept(V1_2_0).expect("accept");
    // Streams are taken and held, never read.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(stream) = incoming.next().await {
            held.push(stream);
        }
    });
    let ids: Vec<MessageId> = (0..4)
        .map(|i| {
            let message = Message {
                blocks: vec![raw_block(1 << 20, i)],
                ..Message::default()
            };
            a.behaviour_mut().send(peer, message).expect("send")
        })
        .collect();
    let mut stalled = Vec::new();
    drive_one(&mut a, |event| {
        match event {
            Event::MessageStalled { id, .. } => stalled.push(id),
            Event::MessageSent { id, .. } | Event::SendFailed { id, .. } => {
                panic!("{id:?} resolved while the peer reads nothing")
            }
            _ => {}
        }
        (stalled.len() == ids.len()).then_some(())
    })
    .await;
    stalled.sort();
    assert_eq!(stalled, ids);
    holder.abort();
}
