//! Flags and a TOML config with the same names: `--config FILE` supplies any flag the command
//! line leaves out (`data-dir = "/var/lib/walb"` or `data_dir = …` stands for `--data-dir`).

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Parses `T` from the process arguments, filling in flags from `--config FILE` when given.
pub fn parse<T: clap::Parser>() -> T {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match with_config(argv) {
        Ok(argv) => T::parse_from(argv),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// `argv` with the config file's settings appended for flags it does not set itself.
pub fn with_config(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(path) = config_path(&argv) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("read config {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parse config {}", path.display()))?;
    let mut out = argv.clone();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        let given = argv.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        });
        if given {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => out.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => out.extend([flag.into(), s.into()]),
            toml::Value::Integer(i) => out.extend([flag.into(), i.to_string().into()]),
            toml::Value::Float(f) => out.extend([flag.into(), f.to_string().into()]),
            toml::Value::Array(a) => {
                let items: Result<Vec<String>> = a
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        toml::Value::Integer(i) => Ok(i.to_string()),
                        other => bail!("config key {key}: unsupported list item {other}"),
                    })
                    .collect();
                out.extend([flag.into(), items?.join(",").into()]);
            }
            other => bail!("config key {key}: unsupported value {other}"),
        }
    }
    Ok(out)
}

fn config_path(argv: &[OsString]) -> Option<std::path::PathBuf> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if a == "--config" {
            return it.next().map(|p| Path::new(p).to_path_buf());
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(Path::new(p).to_path_buf());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fills_only_missing_flags() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "data_dir = \"/d\"\nlisten = \"1.2.3.4:5\"\nproxy = [\"a:1\", \"b:2\"]\nverbose = true\n",
        )
        .unwrap();
        let argv = ["x", "--listen", "9:9", "--config", cfg.to_str().unwrap()]
            .map(OsString::from)
            .to_vec();
        let out: Vec<String> = with_config(argv)
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            &out[..5],
            ["x", "--listen", "9:9", "--config", cfg.to_str().unwrap()]
        );
        let rest = out[5..].join(" ");
        assert!(rest.contains("--data-dir /d"));
        assert!(rest.contains("--proxy a:1,b:2"));
        assert!(rest.contains("--verbose"));
        assert!(!rest.contains("1.2.3.4"));
    }

    #[test]
    fn a_bad_config_is_an_error_naming_the_file() {
        let argv = ["x", "--config", "/nonexistent.toml"]
            .map(OsString::from)
            .to_vec();
        let e = with_config(argv).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent.toml"));
    }
}
