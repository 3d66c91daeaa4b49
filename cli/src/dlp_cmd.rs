//! `podwarden dlp ...` — not built yet; its issue owns this module.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`podwarden dlp` is not implemented yet")
}
