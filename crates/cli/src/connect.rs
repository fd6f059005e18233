//! Which server and token a client command uses: `--url`/`ARUNTIME_URL`
//! and `--token`/`ARUNTIME_TOKEN`, falling back to a local server's
//! `<data-dir>/admin.token`, the file `aruntime serve` writes on first start.

use std::path::PathBuf;

use anyhow::{Context, bail};
use aruntime_client::Client;

/// The default address of `aruntime serve`.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8770";

/// Where a client command connects.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Conn {
    /// Server URL.
    #[arg(long, env = "ARUNTIME_URL", global = true, default_value = DEFAULT_URL)]
    pub(crate) url: String,
    /// API token; defaults to `<data-dir>/admin.token` of a local server.
    #[arg(long, env = "ARUNTIME_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Data directory of a local server, for its admin token.
    #[arg(
        long,
        env = "ARUNTIME_DATA_DIR",
        global = true,
        default_value = "./.aruntime"
    )]
    pub(crate) data_dir: PathBuf,
}

impl Conn {
    /// The token to use, read from the data directory if not given.
    pub(crate) fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_owned());
        }
        let path = self.data_dir.join("admin.token");
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
            Ok(_) => bail!("{} is empty", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no API token: set ARUNTIME_TOKEN (or --token), or run next to a local \
                 server so that {} exists",
                path.display()
            ),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// A client for this server and token.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, &self.token()?)?)
    }
}
