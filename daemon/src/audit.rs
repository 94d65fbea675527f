//! The audit log (docs/security.md): every command that changes state, one JSON line each in
//! `DATA_DIR/audit.jsonl`: time, caller, command (its name and the whole request), volume,
//! result.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use tonic::Status;

use crate::access::Rule;
use crate::peer::Peer;

/// The audit log's file name in the data dir.
pub const FILE: &str = "audit.jsonl";

pub struct Audit {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Audit {
    pub fn new(data_dir: &std::path::Path) -> Audit {
        Audit {
            path: data_dir.join(FILE),
            lock: Mutex::new(()),
        }
    }

    /// Appends the line for one state-changing command (`request`: the whole request as
    /// text); a failure to write is logged at ERROR (the command already ran).
    pub fn record<R>(&self, rule: &Rule, peer: &Peer, request: &str, result: &Result<R, Status>) {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let result = match result {
            Ok(_) => serde_json::json!("ok"),
            Err(s) => serde_json::json!({
                "code": format!("{:?}", s.code()),
                "message": s.message(),
            }),
        };
        let mut line = serde_json::json!({
            "time": time,
            "caller": peer.to_string(),
            "command": rule.word,
            "request": request,
            "volume": rule.vol,
            "result": result,
        })
        .to_string();
        line.push('\n');
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            });
        if let Err(e) = written {
            tracing::error!("audit log {}: {e}", self.path.display());
        }
    }
}
