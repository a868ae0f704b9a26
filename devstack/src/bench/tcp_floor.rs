//! The floor under `devstack bench --fanout`: the same fan-out with nothing
//! of AppSync in it. N bare TCP connections on loopback, each with its own
//! writer task fed by a channel (as the real-time server has one per
//! connection), each read by its own task in this process; one message of
//! the turn's mean size to all of them, again and again at the turn's pace.
//!
//! Place in the data path: none. It measures what the machine itself costs
//! per delivered message (the kernel's loopback TCP, the runtime's wake-ups,
//! every reader sharing the cores), so the fan-out's spread can be read
//! against it: what is above the floor is the stand-in's and the protocol's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::measure::{percentile, spread};

/// Messages sent to every connection.
const ROUNDS: usize = 200;

/// The spread of one message over `n` bare connections, over [`ROUNDS`].
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FloorSpread {
    /// Median over messages of (last read - first read), milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same, milliseconds.
    pub p99_ms: f64,
}

/// Sends a `message_bytes` message to `n` connections every `gap`, [`ROUNDS`]
/// times, and times each read.
///
/// # Errors
/// A socket that cannot be bound, connected, written or read.
pub async fn tcp_floor(
    n: usize,
    message_bytes: usize,
    gap: Duration,
) -> anyhow::Result<FloorSpread> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let mut readers = Vec::with_capacity(n);
    let mut writers = Vec::with_capacity(n);
    for _ in 0..n {
        let client = TcpStream::connect(addr).await.context("connect")?;
        let (server, _) = listener.accept().await.context("accept")?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        readers.push(tokio::spawn(read_rounds(client, message_bytes)));
        writers.push(spawn_writer(server));
    }
    let message = vec![b'x'; message_bytes];
    for _ in 0..ROUNDS {
        for writer in &writers {
            writer.send(message.clone()).context("a writer ended")?;
        }
        tokio::time::sleep(gap).await;
    }
    let mut reads = Vec::with_capacity(n);
    for reader in readers {
        reads.push(reader.await.context("a reader task")??);
    }
    let spreads: Vec<Duration> = (0..ROUNDS)
        .map(|round| spread(reads.iter().map(|r| r[round])))
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(FloorSpread {
        p50_ms: ms(percentile(&spreads, 50.0)),
        p99_ms: ms(percentile(&spreads, 99.0)),
    })
}

/// One connection's writer: every message it is sent, written whole.
fn spawn_writer(mut socket: TcpStream) -> mpsc::UnboundedSender<Vec<u8>> {
    let (sender, mut messages) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            if socket.write_all(&message).await.is_err() {
                break;
            }
        }
    });
    sender
}

/// Reads [`ROUNDS`] messages of `message_bytes`, each timed as its last byte
/// is read.
async fn read_rounds(mut socket: TcpStream, message_bytes: usize) -> anyhow::Result<Vec<Instant>> {
    let mut buffer = vec![0; message_bytes];
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        socket.read_exact(&mut buffer).await.context("read")?;
        times.push(Instant::now());
    }
    Ok(times)
}
