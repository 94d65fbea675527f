//! The layout file (TOML): storages, proxies in priority order, archives with the primary
//! first.
//!
//! ```toml
//! [[storage]]
//! id = "s0"
//! addr = "127.0.0.1:10000"
//! [[proxy]]
//! id = "p0"
//! addr = "127.0.0.1:10100"
//! [[archive]]
//! id = "a0"
//! addr = "127.0.0.1:10200"
//! names = ["10.0.0.5", "a0.example"]   # optional: more names for its certificate
//! ```

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    pub addr: String,
    /// More host names or addresses the server is reached at (behind NAT, through a relay,
    /// on a second network): `gen-certs` names them in its certificate too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Layout {
    #[serde(default)]
    pub storage: Vec<Server>,
    #[serde(default)]
    pub proxy: Vec<Server>,
    #[serde(default)]
    pub archive: Vec<Server>,
}

/// What kind of server an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Storage,
    Proxy,
    Archive,
}

impl Layout {
    pub fn load(path: &Path) -> Result<Layout> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read layout {}", path.display()))?;
        let l: Layout =
            toml::from_str(&text).with_context(|| format!("parse layout {}", path.display()))?;
        l.check()?;
        Ok(l)
    }

    fn check(&self) -> Result<()> {
        let mut ids: Vec<&str> = self.all().map(|(_, s)| s.id.as_str()).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            bail!("layout: server id {} appears twice", w[0]);
        }
        Ok(())
    }

    pub fn all(&self) -> impl Iterator<Item = (Kind, &Server)> {
        self.storage
            .iter()
            .map(|s| (Kind::Storage, s))
            .chain(self.proxy.iter().map(|s| (Kind::Proxy, s)))
            .chain(self.archive.iter().map(|s| (Kind::Archive, s)))
    }

    /// The server with `id`.
    pub fn find(&self, id: &str) -> Result<(Kind, &Server)> {
        self.all()
            .find(|(_, s)| s.id == id)
            .with_context(|| format!("no server {id:?} in the layout"))
    }

    pub fn primary_archive(&self) -> Result<&Server> {
        self.archive.first().context("the layout has no archive")
    }

    pub fn archive(&self, id: Option<&str>) -> Result<&Server> {
        match id {
            None => self.primary_archive(),
            Some(id) => match self.find(id)? {
                (Kind::Archive, s) => Ok(s),
                _ => bail!("{id} is not an archive"),
            },
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("layout serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_finds_servers() {
        let l: Layout = toml::from_str(
            "[[storage]]\nid='s0'\naddr='h:1'\n[[proxy]]\nid='p0'\naddr='h:2'\n[[archive]]\nid='a0'\naddr='h:3'\n",
        )
        .unwrap();
        assert_eq!(l.find("p0").unwrap().0, Kind::Proxy);
        assert_eq!(l.primary_archive().unwrap().id, "a0");
        assert!(l.find("x").is_err());
        let again: Layout = toml::from_str(&l.to_toml()).unwrap();
        assert_eq!(again.archive, l.archive);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let l: Layout =
            toml::from_str("[[storage]]\nid='s0'\naddr='h:1'\n[[proxy]]\nid='s0'\naddr='h:2'\n")
                .unwrap();
        assert!(l.check().is_err());
    }
}
