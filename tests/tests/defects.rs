//! Defects found running PostgreSQL on walb-rs, each as the scenario that showed it.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;

use walb_tests::{bin, have_root_and_fuse, run_ok};

fn tool(dir: &Path) -> Command {
    let mut c = Command::new(bin("walb-tool"));
    c.current_dir(dir);
    c
}

/// `walb-tool wlog-gen` with a fixed seed, `-o out`.
fn gen_to(dir: &Path, out: &str) {
    run_ok(tool(dir).args([
        "wlog-gen", "--size", "8M", "--total", "1M", "--seed", "3", "-o", out,
    ]));
}

#[test]
fn defects_output_to_a_fifo_stays_a_fifo() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    gen_to(dir, "ref.wlog");
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut v)
                .unwrap();
            v
        })
    };
    gen_to(dir, "fifo");
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "-o FIFO replaced the FIFO"
    );
    let got = reader.join().unwrap();
    assert!(
        got == std::fs::read(dir.join("ref.wlog")).unwrap(),
        "the FIFO's reader got other bytes than the regular file holds"
    );
    // A copy of /dev/null's node, so that a tool that replaces it harms nothing else.
    let null = dir.join("null");
    mknod_like(&null, Path::new("/dev/null"));
    gen_to(dir, "null");
    let t = std::fs::metadata(&null).unwrap().file_type();
    assert!(t.is_char_device(), "-o a character device replaced it");
}

/// Makes `node` a device node for the same device as `like` (a test run against a tool that
/// replaces its output then clobbers only this node).
fn mknod_like(node: &Path, like: &Path) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(like).unwrap();
    let c = std::ffi::CString::new(node.as_os_str().as_bytes()).unwrap();
    let kind = if m.file_type().is_block_device() {
        libc::S_IFBLK
    } else {
        libc::S_IFCHR
    };
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o600, m.rdev()) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        node.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn defects_output_to_a_block_device_writes_the_device() {
    if !have_root_and_fuse("defects_output_to_a_block_device_writes_the_device") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    gen_to(dir, "ref.wlog");
    let want = std::fs::read(dir.join("ref.wlog")).unwrap();
    let backing = dir.join("disk");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let lp = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(&backing));
    let lp = lp.trim().to_string();
    // The tool writes through a node of its own for the loop device.
    let node = dir.join("dev");
    mknod_like(&node, Path::new(&lp));
    gen_to(dir, "dev");
    let is_block = std::fs::metadata(&node)
        .unwrap()
        .file_type()
        .is_block_device();
    let mut got = vec![0u8; want.len()];
    std::fs::File::open(&lp)
        .unwrap()
        .read_exact(&mut got)
        .unwrap();
    let _ = Command::new("losetup").args(["-d", &lp]).status();
    assert!(is_block, "-o a block device replaced the device node");
    assert!(
        got == want,
        "{lp} does not start with the regular file's bytes"
    );
}
