//! docs/tutorial.md, run as written: every ```sh block of the page, in order, as one bash
//! script, with the binaries of this build on PATH, in a temp dir, on free ports. Needs root
//! and /dev/fuse.

use std::path::Path;
use std::process::Command;

use walb_tests::{bin, have_root_and_fuse, run};

/// The ```sh blocks of a markdown page, in order.
fn sh_blocks(md: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in md.lines() {
        if inside && line.trim_start().starts_with("```") {
            inside = false;
        } else if inside {
            out.push_str(line);
            out.push('\n');
        } else if line.trim() == "```sh" {
            inside = true;
        }
    }
    out
}

#[test]
fn tutorial_runs_as_written() {
    if !have_root_and_fuse("tutorial_runs_as_written") {
        return;
    }
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tutorial.md");
    let script = sh_blocks(&std::fs::read_to_string(&page).unwrap());
    assert!(
        script.contains("walbc full-backup"),
        "no shell blocks found"
    );
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w");
    let bin_dir = bin("walbc").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    // Three free ports in a row, from a range the other tests' ephemeral ports avoid.
    let base = 20000 + (std::process::id() % 2000) * 3;
    let out = run(Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("W", &w)
        .env("BASE", base.to_string())
        .env("PATH", &path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Whatever happened, nothing may keep running.
    if let Ok(pids) = std::fs::read_to_string(w.join("pids")) {
        for p in pids.split_whitespace() {
            let _ = Command::new("kill").arg("-9").arg(p).status();
        }
    }
    let _ = Command::new("umount")
        .arg("-l")
        .arg(w.join("run").join("devices"))
        .status();
    let logs: String = ["wdevd", "s0", "p0", "a0"]
        .iter()
        .map(|n| {
            format!(
                "---- {n}\n{}\n",
                std::fs::read_to_string(w.join(format!("{n}.log"))).unwrap_or_default()
            )
        })
        .collect();
    assert!(
        out.status.success(),
        "the tutorial failed:\n{stdout}\n{stderr}\n{logs}"
    );
    assert!(stdout.contains("device: /dev/loop"), "{stdout}");
    assert!(stdout.contains("restored exactly"), "{stdout}");
    assert!(
        stdout.contains(" keep ") && stdout.contains(" drop"),
        "{stdout}"
    );
    assert!(stdout.contains("\nok "), "verify did not say ok:\n{stdout}");
    assert!(
        stdout.contains(" 1 snapshots matching the device"),
        "the deep verify compared no snapshot:\n{stdout}"
    );
    // After retention: the two newest explicit snapshots (and the newest point).
    let explicit_lines = stdout
        .lines()
        .filter(|l| l.ends_with(" 1") || l.ends_with(" ?"))
        .filter(|l| l.split_whitespace().count() == 3)
        .count();
    assert!(explicit_lines >= 2, "{stdout}");
}
