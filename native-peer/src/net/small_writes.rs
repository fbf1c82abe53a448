//! The request-response codec: the same bytes as libp2p's CBOR codec, written in pieces of at
//! most [`PIECE`] bytes, each flushed on its own.
//!
//! Over WebRTC every flushed write becomes one data-channel message, and `libp2p-webrtc` (0.9)
//! reads at most 8 KiB per message: a larger one fails the stream ("Failed to encode/decode
//! message" on a 1 MiB blob between two native peers). libp2p's codec writes a whole blob at
//! once, which the transport cuts into 16 KiB messages. Small flushed pieces keep every message
//! under the limit without touching the transport; over TCP, QUIC and WebSocket they are merely
//! smaller frames.

use std::io;

use async_trait::async_trait;
use futures::io::Cursor;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::request_response::{self, cbor};
use libp2p::StreamProtocol;
use protocol::wire::{Request, Response};

/// The largest write handed to the stream at once (with framing, well under 8 KiB).
pub const PIECE: usize = 4096;

#[derive(Clone, Default)]
pub struct SmallWrites(pub cbor::codec::Codec<Request, Response>);

/// Writes `bytes` to `io` in flushed pieces of at most [`PIECE`] bytes.
async fn write_in_pieces<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    for piece in bytes.chunks(PIECE) {
        io.write_all(piece).await?;
        io.flush().await?;
    }
    Ok(())
}

#[async_trait]
impl request_response::Codec for SmallWrites {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Request> {
        self.0.read_request(protocol, io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Response> {
        self.0.read_response(protocol, io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, protocol: &StreamProtocol, io: &mut T, request: Request) -> io::Result<()> {
        let mut encoded = Cursor::new(Vec::new());
        self.0.write_request(protocol, &mut encoded, request).await?;
        write_in_pieces(io, encoded.get_ref()).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(&mut self, protocol: &StreamProtocol, io: &mut T, response: Response) -> io::Result<()> {
        let mut encoded = Cursor::new(Vec::new());
        self.0.write_response(protocol, &mut encoded, response).await?;
        write_in_pieces(io, encoded.get_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A writer that remembers how many bytes each flushed message held.
    #[derive(Default)]
    struct Messages {
        bytes: Vec<u8>,
        unflushed: usize,
        sizes: Vec<usize>,
    }

    impl AsyncWrite for Messages {
        fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.bytes.extend_from_slice(buf);
            this.unflushed += buf.len();
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.unflushed > 0 {
                this.sizes.push(std::mem::take(&mut this.unflushed));
            }
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    #[tokio::test]
    async fn a_large_response_goes_out_in_small_flushed_pieces_and_reads_back_whole() {
        let protocol = StreamProtocol::new(protocol::wire::RPC_PROTOCOL);
        let mut codec = SmallWrites::default();
        let blob: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let mut out = Messages::default();
        codec.write_response(&protocol, &mut out, Response::Blob(blob.clone())).await.unwrap();
        assert!(out.sizes.len() > 10 && out.sizes.iter().all(|&n| n <= PIECE), "{:?}", out.sizes);
        let read = codec.read_response(&protocol, &mut Cursor::new(out.bytes)).await.unwrap();
        assert!(matches!(read, Response::Blob(bytes) if bytes == blob));
    }
}
