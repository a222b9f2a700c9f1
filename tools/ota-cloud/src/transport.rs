//! The transports: cloud-proto over UDP (one frame per datagram) and over TCP (each frame
//! COBS-encoded and delimited by `00`, `docs/protocol.md` §2.5). Both feed every frame to
//! [`Server::handle_frame`] and send its answer only once it returns (after the commit).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use cloud_proto::{stream_encode, stream_encoded_max, StreamDecoder, MAX_FRAME};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::server::Server;
use crate::store::Store;

/// The stream decoder's buffer: one encoded frame, delimiter included.
const STREAM_BUF: usize = stream_encoded_max(MAX_FRAME);

/// Serves UDP datagrams on `socket` until an I/O error on receive. Each datagram is handled in
/// its own task (so one device's store round trip does not hold up the others), at most
/// [`Limits::max_in_flight`](crate::limit::Limits::max_in_flight) at once (more are dropped
/// unread and counted: the devices retransmit, and a flood cannot grow the server's memory
/// without bound); each source address is charged before anything else
/// ([`Server::check_source`]). Its answer frames go back to the datagram's source, one
/// datagram each. Datagrams longer than a frame are dropped (counted as frame errors by the
/// server).
///
/// Errors: the socket's receive error. Send errors are ignored (the device retransmits).
pub async fn serve_udp<S: Store>(server: Arc<Server<S>>, socket: UdpSocket) -> io::Result<()> {
    let socket = Arc::new(socket);
    // One byte more than a frame, so an oversized datagram is seen as such, not truncated.
    let mut buf = vec![0u8; MAX_FRAME + 1];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if server.check_source(from).is_err() {
            continue;
        }
        let Ok(permit) = server.try_begin() else {
            continue;
        };
        let frame = buf[..n].to_vec();
        let (server, socket) = (server.clone(), socket.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(answer) = server.handle_frame(&frame, from).await {
                for f in &answer.frames {
                    let _ = socket.send_to(f, from).await;
                }
            }
        });
    }
}

/// Accepts TCP connections on `listener` until an accept error; each connection is served in
/// its own task by [`serve_tcp_connection`].
pub async fn serve_tcp<S: Store>(server: Arc<Server<S>>, listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let server = server.clone();
        tokio::spawn(async move {
            let _ = serve_tcp_connection(server, stream, peer).await;
        });
    }
}

/// Serves one TCP connection until the peer closes it: decodes COBS frames, handles them in
/// order, writes each answer frame COBS-encoded. The replay source is the peer's IP address
/// with port 0 (a TCP peer cannot spoof its address; a device that reconnects between two
/// retransmissions is still answered); the rate limit per source is charged to the
/// connection's full peer address, and each frame takes an in-flight slot. A frame that overflows the decoder or is not valid
/// COBS is skipped (the decoder resynchronises at the next delimiter).
///
/// Errors: the connection's I/O errors.
pub async fn serve_tcp_connection<S: Store>(
    server: Arc<Server<S>>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> io::Result<()> {
    let source = SocketAddr::new(peer.ip(), 0);
    let mut decoder = StreamDecoder::<STREAM_BUF>::new();
    let mut input = vec![0u8; 4096];
    let mut out = vec![0u8; STREAM_BUF];
    loop {
        let n = stream.read(&mut input).await?;
        if n == 0 {
            return Ok(());
        }
        let mut rest = &input[..n];
        while !rest.is_empty() {
            let (used, frame) = decoder.feed(rest);
            rest = &rest[used..];
            let Some(Ok(frame)) = frame else {
                continue;
            };
            if server.check_source(peer).is_err() {
                continue;
            }
            let Ok(_slot) = server.try_begin() else {
                continue;
            };
            let frame = frame.to_vec();
            if let Ok(answer) = server.handle_frame(&frame, source).await {
                for f in &answer.frames {
                    if let Some(m) = stream_encode(f, &mut out) {
                        stream.write_all(&out[..m]).await?;
                    }
                }
                stream.flush().await?;
            }
        }
    }
}
