//! podwarden's data path: accept → original destination → detect → decide →
//! relay or inspect → record. Also the `init` interception rules.

pub mod init;
