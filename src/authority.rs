//! Accepts any `:authority` on the unix socket.
//!
//! gRPC clients built on C-core (Python grpcio, C++, Ruby) send the socket's
//! path (`/csi/csi.sock`) as the HTTP/2 `:authority` of every request. The
//! HTTP/2 server under tonic refuses a value that is not a valid URI
//! authority and resets every stream (PROTOCOL_ERROR), so such clients could
//! not talk to the driver at all. On a unix socket the authority means
//! nothing, so [`AnyAuthority`] wraps each accepted connection and, only for
//! a client whose first request carries an authority that does not parse,
//! rewrites it to `localhost` in every request header block of that
//! connection. Clients that send a valid one (kubelet, the Go sidecars) see
//! their bytes passed through untouched.
//!
//! Rewriting means decoding the client's HPACK header blocks (with the
//! client's dynamic table) and re-encoding them as literals that never touch
//! the server's dynamic table, so both sides' tables stay consistent.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every peer accepts frames this large (the HTTP/2 minimum maximum).
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is refused (the connection is ended).
const MAX_BLOCK: usize = 1 << 20;
const REPLACEMENT: &[u8] = b"localhost";

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Waiting for the connection preface.
    Preface,
    /// Looking at the first request's header block.
    Inspect,
    /// Decoding and re-encoding every header block.
    Rewrite,
    /// Bytes go through untouched.
    Passthrough,
}

/// A header block being collected over HEADERS + CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    fragment: Vec<u8>,
    /// The frames as received, to pass on untouched when no rewrite is needed.
    raw: Vec<u8>,
}

/// A connection whose request `:authority` is made acceptable (see the
/// module docs). Writes pass straight through.
pub(crate) struct AnyAuthority<S> {
    inner: S,
    mode: Mode,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    decoder: fluke_hpack::Decoder<'static>,
    block: Option<Block>,
    eof: bool,
}

impl<S> AnyAuthority<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            mode: Mode::Preface,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            decoder: fluke_hpack::Decoder::new(),
            block: None,
            eof: false,
        }
    }

    /// Moves what can be processed from `input` to `output`; false when more
    /// input is needed.
    fn process(&mut self) -> std::io::Result<bool> {
        match self.mode {
            Mode::Passthrough => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                self.output.append(&mut self.input);
                Ok(true)
            }
            Mode::Preface => {
                if self.input.len() < PREFACE.len() {
                    return Ok(false);
                }
                let rest = self.input.split_off(PREFACE.len());
                let preface = std::mem::replace(&mut self.input, rest);
                self.mode = if preface == PREFACE {
                    Mode::Inspect
                } else {
                    // Not HTTP/2 prior knowledge: nothing for us to do.
                    Mode::Passthrough
                };
                self.output.extend_from_slice(&preface);
                Ok(true)
            }
            Mode::Inspect | Mode::Rewrite => {
                if self.input.len() < FRAME_HEADER {
                    return Ok(false);
                }
                let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
                if self.input.len() < FRAME_HEADER + len {
                    return Ok(false);
                }
                let rest = self.input.split_off(FRAME_HEADER + len);
                let frame = std::mem::replace(&mut self.input, rest);
                self.frame(frame)?;
                Ok(true)
            }
        }
    }

    fn frame(&mut self, frame: Vec<u8>) -> std::io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match kind {
            HEADERS => {
                let mut start = 0;
                let mut end = payload.len();
                if flags & PADDED != 0 {
                    let pad = *payload.first().ok_or_else(|| bad("empty padded HEADERS"))? as usize;
                    start = 1;
                    end = end.checked_sub(pad).ok_or_else(|| bad("bad padding"))?;
                }
                if flags & PRIORITY != 0 {
                    start += 5;
                }
                if start > end {
                    return Err(bad("HEADERS frame too short"));
                }
                self.block = Some(Block {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    fragment: payload[start..end].to_vec(),
                    raw: frame.clone(),
                });
            }
            CONTINUATION => match self.block.as_mut() {
                Some(b) if b.stream == stream => {
                    b.fragment.extend_from_slice(payload);
                    b.raw.extend_from_slice(&frame);
                    if b.fragment.len() > MAX_BLOCK {
                        return Err(bad("header block too large"));
                    }
                }
                // Let the server report the protocol error.
                _ => {
                    self.output.extend_from_slice(&frame);
                    return Ok(());
                }
            },
            _ => {
                self.output.extend_from_slice(&frame);
                return Ok(());
            }
        }
        if flags & END_HEADERS != 0 {
            let block = self.block.take().expect("a block is open");
            self.finish_block(block)?;
        }
        Ok(())
    }

    fn finish_block(&mut self, block: Block) -> std::io::Result<()> {
        let headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| bad(&format!("cannot decode a header block: {e:?}")))?;
        if self.mode == Mode::Inspect {
            let acceptable = headers
                .iter()
                .find(|(n, _)| n == b":authority")
                .is_none_or(|(_, v)| http::uri::Authority::try_from(v.as_slice()).is_ok());
            if acceptable {
                // The server decodes the very bytes we decoded: both tables
                // agree, and from here on nothing is touched.
                self.output.extend_from_slice(&block.raw);
                self.mode = Mode::Passthrough;
                self.output.append(&mut self.input);
                return Ok(());
            }
            tracing::debug!(
                "client sends a non-URI :authority (a C-core gRPC client on a unix socket); rewriting it"
            );
            self.mode = Mode::Rewrite;
        }
        let mut encoded = Vec::new();
        for (name, value) in &headers {
            let value = if name == b":authority" {
                REPLACEMENT
            } else {
                value.as_slice()
            };
            encode_literal(&mut encoded, name, value);
        }
        write_block(&mut self.output, block.stream, block.end_stream, &encoded);
        Ok(())
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("HTTP/2 from client: {what}"),
    )
}

/// HPACK integer with an `n`-bit prefix; `first` holds the bits above it.
fn encode_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// "Literal header field without indexing, new name", no Huffman: leaves
/// the receiver's dynamic table alone.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    encode_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// A header block as one HEADERS frame and as many CONTINUATION frames as
/// its size needs.
fn write_block(out: &mut Vec<u8>, stream: u32, end_stream: bool, block: &[u8]) {
    let chunks: Vec<&[u8]> = if block.is_empty() {
        vec![&[]]
    } else {
        block.chunks(MAX_FRAME).collect()
    };
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let mut flags = if i + 1 == n { END_HEADERS } else { 0 };
        if i == 0 && end_stream {
            flags |= END_STREAM;
        }
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.sent < this.output.len() {
                let n = (this.output.len() - this.sent).min(buf.remaining());
                buf.put_slice(&this.output[this.sent..this.sent + n]);
                this.sent += n;
                if this.sent == this.output.len() {
                    this.output.clear();
                    this.sent = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.process()? {
                continue;
            }
            if this.eof {
                // A truncated frame at the end: hand it on as it is.
                this.output.append(&mut this.input);
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.input.extend_from_slice(rb.filled());
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for AnyAuthority<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_literals_round_trip_through_a_decoder() {
        let mut block = Vec::new();
        let long = vec![b'v'; 300];
        encode_literal(&mut block, b":authority", b"localhost");
        encode_literal(&mut block, b"x-long", &long);
        let mut d = fluke_hpack::Decoder::new();
        let h = d.decode(&block).unwrap();
        assert_eq!(h[0], (b":authority".to_vec(), b"localhost".to_vec()));
        assert_eq!(h[1].1, long);
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let mut out = Vec::new();
        write_block(&mut out, 3, true, &vec![0u8; MAX_FRAME + 10]);
        assert_eq!(out[3], HEADERS);
        assert_eq!(out[4], END_STREAM);
        let second = FRAME_HEADER + MAX_FRAME;
        assert_eq!(out[second + 3], CONTINUATION);
        assert_eq!(out[second + 4], END_HEADERS);
        assert_eq!(out.len(), 2 * FRAME_HEADER + MAX_FRAME + 10);
    }
}
