//! Incremental decoders for a stream whose framing is known from its
//! headers: HTTP/1.1 chunked transfer coding and gzip/deflate content
//! coding. Memory stays bounded: input is fed in small steps so one step
//! can inflate to at most ~1000× its size, and a stream that inflates far
//! past the limit is reported and no longer decompressed.

use std::io::Write;

use crate::decode::Compression;

/// Chunked transfer decoding as a state machine over arbitrary splits.
#[derive(Debug, Default)]
pub(crate) struct Dechunker {
    state: ChunkState,
    size: usize,
    digits: u8,
    /// Framing bytes since the last payload, replayed if the framing breaks.
    held: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    TrailerLine,
    Done,
    /// Framing broke: the rest passes through undecoded.
    Raw,
}

impl Dechunker {
    /// Append the payload bytes contained in `input` to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            use ChunkState::*;
            if !matches!(self.state, Data | Raw) {
                if self.held.len() >= 512 {
                    self.state = Raw;
                } else {
                    self.held.push(c);
                }
            }
            match self.state {
                Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if self.digits < 8 => {
                        let v = (c as char).to_digit(16).unwrap_or(0) as usize;
                        self.size = self.size << 4 | v;
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = Ext,
                    b'\r' if self.digits > 0 => self.state = SizeLf,
                    _ => self.state = Raw,
                },
                Ext => {
                    if c == b'\r' {
                        self.state = SizeLf;
                    }
                }
                SizeLf => {
                    self.state = if c != b'\n' {
                        Raw
                    } else if self.size == 0 {
                        Trailer
                    } else {
                        Data
                    };
                }
                Data => {
                    self.held.clear();
                    let n = self.size.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + n]);
                    self.size -= n;
                    i += n;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => self.state = if c == b'\r' { DataLf } else { Raw },
                DataLf => {
                    if c == b'\n' {
                        self.state = Size;
                        self.digits = 0;
                        self.size = 0;
                    } else {
                        self.state = Raw;
                    }
                }
                Trailer => self.state = if c == b'\r' { TrailerLf } else { TrailerLine },
                TrailerLine => {
                    if c == b'\n' {
                        self.state = Trailer;
                    }
                }
                TrailerLf => self.state = if c == b'\n' { Done } else { Raw },
                Done => {}
                Raw => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
            }
            if self.state == Raw {
                // Not chunked after all: replay what was taken for framing.
                out.append(&mut self.held);
                out.extend_from_slice(&input[i + 1..]);
                return;
            }
            i += 1;
        }
    }
}

enum Inner {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
}

/// Streaming decompression with a bomb guard.
pub(crate) struct Inflater {
    inner: Option<Inner>,
    kind: Compression,
    total_in: u64,
    total_out: u64,
    limit: u64,
}

/// What one inflate step produced.
pub(crate) enum Inflate {
    Ok,
    /// Past the limit with a bomb's ratio: decompression stopped.
    Bomb,
}

impl Inflater {
    pub fn new(kind: Compression, limit: usize) -> Self {
        let inner = match kind {
            Compression::Gzip => Inner::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Compression::Deflate => Inner::Zlib(flate2::write::ZlibDecoder::new(Vec::new())),
        };
        Inflater {
            inner: Some(inner),
            kind,
            total_in: 0,
            total_out: 0,
            limit: limit as u64,
        }
    }

    pub fn kind(&self) -> Compression {
        self.kind
    }

    /// Decompress `input`, handing output to `sink` in bounded pieces.
    pub fn feed(&mut self, input: &[u8], mut sink: impl FnMut(&[u8])) -> Inflate {
        for piece in input.chunks(256) {
            let Some(inner) = self.inner.as_mut() else {
                return Inflate::Ok;
            };
            let (res, out) = match inner {
                Inner::Gzip(d) => (d.write_all(piece), d.get_mut()),
                Inner::Zlib(d) => (d.write_all(piece), d.get_mut()),
            };
            self.total_in += piece.len() as u64;
            self.total_out += out.len() as u64;
            sink(out);
            out.clear();
            if res.is_err() {
                // Corrupt stream: nothing more to decode.
                self.inner = None;
                return Inflate::Ok;
            }
            if self.total_out > self.limit && self.total_out > 100 * self.total_in {
                self.inner = None;
                return Inflate::Bomb;
            }
        }
        Inflate::Ok
    }

    /// Flush what the decoder still holds at end of stream.
    pub fn finish(&mut self, mut sink: impl FnMut(&[u8])) {
        if let Some(inner) = self.inner.take() {
            let out = match inner {
                Inner::Gzip(d) => d.finish(),
                Inner::Zlib(d) => d.finish(),
            };
            if let Ok(out) = out {
                sink(&out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_any_split() {
        let framed =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..framed.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            d.feed(&framed[..split], &mut out);
            d.feed(&framed[split..], &mut out);
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "split {split}");
        }
    }

    #[test]
    fn broken_framing_passes_through() {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        d.feed(b"hello world", &mut out);
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn stops_a_bomb() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 50 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        let mut inf = Inflater::new(Compression::Gzip, 1 << 20);
        let mut seen = 0usize;
        let mut bombed = false;
        for c in bomb.chunks(4096) {
            if let Inflate::Bomb = inf.feed(c, |o| seen += o.len()) {
                bombed = true;
                break;
            }
        }
        assert!(bombed);
        assert!(seen < 4 << 20, "stopped early: {seen}");
    }
}
