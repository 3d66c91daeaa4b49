//! DLP: validated, streaming detection of sensitive data.
//!
//! Sensors are validated, not bare patterns: card numbers pass Luhn and an
//! IIN range, IBANs their country length and mod-97, GitHub tokens their
//! CRC32 suffix, JWTs must decode to JSON, private keys must carry key
//! material. Encoded data (percent, base64, gzip, JSON escapes, chunked
//! HTTP) is decoded within depth and size bounds. A [`StreamScanner`] scans
//! bytes as they flow with bounded memory, finding values split across
//! reads. Findings hold only a masked excerpt, never the value.
//!
//! In the proxy, an inspector keeps one [`StreamScanner`] per body or raw
//! stream direction (`Scanner::stream_with` with the body's chunked/content
//! coding when HTTP headers declare them), calls `push` for every chunk and
//! `finish` at the end, and decides on the returned findings (monitor: emit
//! and count; protect: 403 if nothing was sent yet, else reset). A finding is
//! returned as soon as the bytes that decide it have arrived: at most
//! `LOOKAHEAD` (160) bytes after the value, or the end of an encoded region.
//!
//! ```
//! use podwarden_dlp::{Config, Scanner};
//! let scanner = Scanner::new(&Config::default()).unwrap();
//! let mut stream = scanner.stream();
//! let mut found = stream.push(b"card=4111 1111 ");
//! found.extend(stream.push(b"1111 1111&x=1"));
//! found.extend(stream.finish());
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].sensor, "credit_card");
//! assert_eq!(found[0].masked, "4111 **** **** 1111");
//! assert_eq!(found[0].offset, 5);
//! ```

mod classify;
pub mod config;
pub mod corpus;
mod custom;
mod decode;
mod engine;
mod error;
mod finding;
mod layers;
mod numeric;
mod pem;
mod scanner;
mod sensors;
mod stream_decode;
mod tokens;
pub mod validate;

pub use config::{Config, CustomSensor, Limits};
pub use decode::Compression;
pub use error::ConfigError;
pub use finding::{Finding, FindingKind, Severity};
pub use scanner::{Scanner, StreamOptions, StreamScanner};
pub use sensors::{BUILTIN_SENSORS, DECODE_LIMIT};
