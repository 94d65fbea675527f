//! The loop devices attached to wdevd's device files (losetup), for wdevc and walb-storage.

use std::path::Path;
use std::process::Command;

use crate::{Client, DevName, Error, Request};

fn losetup_error(e: std::io::Error) -> Error {
    Error::Loop(format!("run losetup: {e}"))
}

/// The loop device attached to `file`, if any.
pub fn loop_of(file: &Path) -> Result<Option<String>, Error> {
    let out = Command::new("losetup")
        .arg("-j")
        .arg(file)
        .output()
        .map_err(losetup_error)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.split(':').next())
        .map(str::to_string))
}

/// Grows device `name` through wdevd (0: to the whole data device), then tells its loop
/// device, if any, to pick up the new size.
pub fn resize(wdevd: &Client, name: &DevName, size_lb: u64) -> Result<(), Error> {
    wdevd
        .call(&Request::Resize {
            name: name.clone(),
            size_lb,
        })?
        .done()?;
    if let Some(dev) = loop_of(&wdevd.device_file(name))? {
        // The FUSE attribute cache holds the old size for up to a second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let st = Command::new("losetup")
            .arg("-c")
            .arg(&dev)
            .status()
            .map_err(losetup_error)?;
        if !st.success() {
            return Err(Error::Loop(format!("losetup -c {dev} failed")));
        }
    }
    Ok(())
}
