//! The loop devices attached to wdevd's device files (losetup), for wdevc and walb-storage.

use std::path::Path;
use std::process::Command;

/// The loop device attached to `file`, if any.
pub fn loop_of(file: &Path) -> Result<Option<String>, String> {
    let out = Command::new("losetup")
        .arg("-j")
        .arg(file)
        .output()
        .map_err(|e| format!("run losetup: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.split(':').next())
        .map(str::to_string))
}

/// Grows device `name` through wdevd's socket in `run_dir` (0: to the whole data device),
/// then tells its loop device, if any, to pick up the new size.
pub fn resize(run_dir: &Path, name: &str, size_lb: u64) -> Result<(), String> {
    super::ctl::request(
        &run_dir.join("wdevd.sock"),
        &format!("resize {name} {size_lb}"),
    )?;
    if let Some(dev) = loop_of(&run_dir.join("devices").join(name))? {
        // The FUSE attribute cache holds the old size for up to a second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let st = Command::new("losetup")
            .arg("-c")
            .arg(&dev)
            .status()
            .map_err(|e| format!("run losetup: {e}"))?;
        if !st.success() {
            return Err(format!("losetup -c {dev} failed"));
        }
    }
    Ok(())
}
