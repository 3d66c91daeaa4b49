//! podwarden's data path: accept → original destination → detect → decide →
//! relay or inspect → record. Also the `init` interception rules.
//!
//! Embedding (the binary does exactly this):
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use podwarden_proxy::{config::Config, Proxy};
//! let proxy = Proxy::builder(Config::default()).build()?;
//! let admin = podwarden_proxy::admin::spawn(proxy.shared().clone())?;
//! let running = proxy.start().await?;
//! // later, from the policy engine: proxy.hook().swap(Box::new(compiled_policy));
//! # Ok(()) }
//! ```

pub mod admin;
pub mod config;
pub mod decision_metrics;
pub mod detect;
pub mod dns;
pub mod events;
pub mod flowlog;
pub mod hook;
pub mod http;
pub mod init;
pub mod inspect;
pub mod io;
pub mod l7;
pub mod learning;
pub mod metrics;
pub mod orig_dst;
pub mod policy_reload;
pub mod process;
pub mod proxy;
pub mod records;
pub mod sockmap;
pub mod splice;
pub mod tcp;
pub mod tls;

pub use hook::DecisionHook;
pub use proxy::{Proxy, ProxyBuilder, Running, Shared};
