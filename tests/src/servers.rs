//! Real servers for the server side of the tests, each started in a namespace
//! and waited for. All listen dual-stack so the same server serves IPv4 and IPv6.

use anyhow::Result;

use crate::netns::{Netns, READY};
use crate::pod::{fixture, python};
use crate::topology::Scratch;

/// A fresh directory under `scratch` holding `files` (name, content).
fn docroot(scratch: &Scratch, label: &str, files: &[(&str, &str)]) -> Result<String> {
    let dir = scratch.path(label);
    std::fs::create_dir_all(&dir)?;
    for (name, content) in files {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(dir.display().to_string())
}

/// `python3 -m http.server` on `port`, serving `files` (name, content) from a
/// fresh directory; it logs each request line, which tests read back.
pub fn http(
    ns: &Netns,
    scratch: &Scratch,
    label: &str,
    port: u16,
    files: &[(&str, &str)],
) -> Result<()> {
    let (port_s, dir_s) = (port.to_string(), docroot(scratch, label, files)?);
    ns.spawn(
        label,
        None,
        &[
            python(),
            "-m",
            "http.server",
            &port_s,
            "--bind",
            "::",
            "--directory",
            &dir_s,
        ],
    )?;
    ns.wait_listening(port, READY)
}

/// nghttpd (h2c, prior knowledge) serving `files` on `port`, verbose so it logs requests.
pub fn h2c(
    ns: &Netns,
    scratch: &Scratch,
    label: &str,
    port: u16,
    files: &[(&str, &str)],
) -> Result<()> {
    let (port_s, dir_s) = (port.to_string(), docroot(scratch, label, files)?);
    ns.spawn(
        label,
        None,
        &["nghttpd", "--no-tls", "-v", "-d", &dir_s, &port_s],
    )?;
    ns.wait_listening(port, READY)
}

/// A self-signed certificate for `name` made with openssl; returns (cert, key) paths.
pub fn self_signed(ns: &Netns, scratch: &Scratch, name: &str) -> Result<(String, String)> {
    let cert = scratch.path(&format!("{name}.crt")).display().to_string();
    let key = scratch.path(&format!("{name}.key")).display().to_string();
    ns.exec(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        &format!("subjectAltName=DNS:{name}"),
        "-keyout",
        &key,
        "-out",
        &cert,
    ])?;
    Ok((cert, key))
}

/// The stdlib HTTPS server from tests/fixtures, logging `SNI=<name>` per handshake.
pub fn tls(ns: &Netns, label: &str, port: u16, cert: &str, key: &str) -> Result<()> {
    let port_s = port.to_string();
    ns.spawn(
        label,
        None,
        &[python(), &fixture("tls_server.py"), cert, key, &port_s],
    )?;
    ns.wait_listening(port, READY)
}

/// The stdlib WebSocket echo server from tests/fixtures.
pub fn websocket(ns: &Netns, label: &str, port: u16) -> Result<()> {
    let port_s = port.to_string();
    ns.spawn(label, None, &[python(), &fixture("ws_server.py"), &port_s])?;
    ns.wait_listening(port, READY)
}

/// redis-server without persistence, listening on every address.
pub fn redis(ns: &Netns, scratch: &Scratch, label: &str, port: u16) -> Result<()> {
    let dir = scratch.path(label);
    std::fs::create_dir_all(&dir)?;
    let (port_s, dir_s) = (port.to_string(), dir.display().to_string());
    ns.spawn(
        label,
        None,
        &[
            "redis-server",
            "--port",
            &port_s,
            "--bind",
            "0.0.0.0",
            "::",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir_s,
        ],
    )?;
    ns.wait_listening(port, READY)
}
