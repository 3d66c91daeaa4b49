//! `podwarden-proxy init`: the pod's interception rules (iptables/ip6tables).
//! Owned by the data-path interception work; not built yet.

#[derive(clap::Args, Debug)]
pub struct InitArgs {}

pub fn run(_args: InitArgs) -> anyhow::Result<()> {
    anyhow::bail!("`podwarden-proxy init` is not implemented yet")
}
