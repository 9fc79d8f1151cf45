//! A TCP proxy that adds latency: a database on the same machine reached as
//! if it ran on another one, to see what each round trip costs.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// `server` (a `postgres://` URL) with its host and port replaced by a proxy
/// to them that delays every chunk by `delay` each way, running on the
/// current runtime for as long as it lives.
pub async fn behind_proxy(server: &str, delay: Duration) -> String {
    let mut url = url::Url::parse(server).expect("a PostgreSQL URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().expect("a PostgreSQL URL names its host"),
        url.port().unwrap_or(5432)
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue; // the client sees its connection closed
            };
            for stream in [&client, &server] {
                stream.set_nodelay(true).unwrap();
            }
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(delayed_copy(client_read, server_write, delay));
            tokio::spawn(delayed_copy(server_read, client_write, delay));
        }
    });
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(local.port())).unwrap();
    url.to_string()
}

/// Copies `from` to `to`, each chunk written `delay` after it was read, in
/// order (latency, not a bandwidth limit: chunks read meanwhile follow it).
async fn delayed_copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buffer = vec![0; 64 << 10];
    while let Ok(read @ 1..) = from.read(&mut buffer).await {
        if chunks
            .send((Instant::now() + delay, buffer[..read].to_vec()))
            .is_err()
        {
            return;
        }
    }
}
