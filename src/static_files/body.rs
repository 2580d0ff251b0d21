//! The body of a file reply: the pieces it is made of (file ranges and literal bytes, such as
//! the part headers of `multipart/byteranges`), read whole when small, or streamed in bounded
//! slices read off the event loop.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom};

use bytes::Bytes;

use crate::responder::BodySender;

/// Bytes read from the file per step of a stream (and the most a read holds up a thread of the
/// blocking pool).
pub(crate) const CHUNK: u64 = 64 * 1024;

/// A piece of a reply body.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    /// These bytes.
    Literal(Bytes),
    /// `len` bytes of the file from `offset`.
    File { offset: u64, len: u64 },
}

/// The pieces of a body and their total length.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pieces {
    pub(crate) pieces: Vec<Piece>,
    pub(crate) len: u64,
}

impl Pieces {
    fn push(&mut self, piece: Piece) {
        self.len += match &piece {
            Piece::Literal(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        };
        self.pieces.push(piece);
    }

    /// One range of the file (the whole file is the range `0..len`).
    pub(crate) fn range(offset: u64, len: u64) -> Pieces {
        let mut p = Pieces::default();
        p.push(Piece::File { offset, len });
        p
    }

    /// A `multipart/byteranges` body (RFC 9110 §14.6) of `ranges` (inclusive) of a file of
    /// `file_len` bytes of `content_type`: each part is the boundary line, its `Content-Type`
    /// and `Content-Range` fields, an empty line, the bytes and CRLF; the last boundary line ends
    /// with `--`.
    pub(crate) fn multipart(
        ranges: &[(u64, u64)],
        file_len: u64,
        content_type: &str,
        boundary: &str,
    ) -> Pieces {
        let mut p = Pieces::default();
        for (i, &(first, last)) in ranges.iter().enumerate() {
            let crlf = if i == 0 { "" } else { "\r\n" };
            p.push(Piece::Literal(Bytes::from(format!(
                "{crlf}--{boundary}\r\nContent-Type: {content_type}\r\n\
                 Content-Range: bytes {first}-{last}/{file_len}\r\n\r\n"
            ))));
            p.push(Piece::File {
                offset: first,
                len: last - first + 1,
            });
        }
        p.push(Piece::Literal(Bytes::from(format!(
            "\r\n--{boundary}--\r\n"
        ))));
        p
    }

    /// Read the whole body into memory (blocking: call it off the event loop).
    pub(crate) fn read_all(&self, file: &mut File) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for piece in &self.pieces {
            match piece {
                Piece::Literal(b) => out.extend_from_slice(b),
                Piece::File { offset, len } => {
                    file.seek(SeekFrom::Start(*offset))?;
                    let start = out.len();
                    file.take(*len).read_to_end(&mut out)?;
                    if (out.len() - start) as u64 != *len {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
        Ok(Bytes::from(out))
    }

    /// Stream the body into `body`: file bytes are read in slices of [`CHUNK`] on smol's
    /// blocking pool, so the event loop only moves finished buffers, and the stream's bounded
    /// queue holds the reading back when the client is slow. Stops when the client goes; aborts
    /// the body (the client sees it cut short) if the file cannot be read to the end, for
    /// example because it was truncated meanwhile.
    pub(crate) async fn stream(self, mut file: File, body: BodySender) {
        for piece in self.pieces {
            match piece {
                Piece::Literal(bytes) => {
                    if body.send(bytes).await.is_err() {
                        return;
                    }
                }
                Piece::File {
                    mut offset,
                    len: mut left,
                } => {
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let (back, read) = smol::unblock(move || {
                            let read = read_at(&mut file, offset, n);
                            (file, read)
                        })
                        .await;
                        file = back;
                        match read {
                            Ok(bytes) => {
                                if body.send(bytes).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                log::warn!("static file read failed mid-stream: {e}");
                                body.abort();
                                return;
                            }
                        }
                        offset += n;
                        left -= n;
                    }
                }
            }
        }
        body.finish();
    }
}

/// Exactly `n` bytes of `file` from `offset`.
fn read_at(file: &mut File, offset: u64, n: u64) -> io::Result<Bytes> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; usize::try_from(n).map_err(|_| io::ErrorKind::InvalidInput)?];
    file.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// A fresh `multipart/byteranges` boundary: 128 random bits (from the standard library's
/// randomly keyed hasher) in hex, so that it cannot be predicted and placed in a file.
pub(crate) fn boundary() -> String {
    let word = || RandomState::new().build_hasher().finish();
    format!("iomux-{:016x}{:016x}", word(), word())
}
