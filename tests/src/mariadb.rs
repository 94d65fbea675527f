//! MariaDB (InnoDB) servers for the database tests (tests/tests/db.rs): each on a data
//! directory the test chooses, with its own socket, port and pid file in a directory of the
//! test's own, no option files read (`--no-defaults`). Nothing system-wide is used or stopped.
//! The server runs as the `mysql` user; clients connect as root over the socket.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::db::{free_port, need_binary, own_dir, Server};
use crate::{run, run_ok};

/// Path of a MariaDB binary (`/usr/bin`, else `/usr/sbin`); panics loudly when it is not
/// installed (scripts/setup.sh installs mariadb-server).
pub fn maria_bin(name: &str) -> PathBuf {
    let usr = Path::new("/usr/bin").join(name);
    if usr.exists() {
        return usr;
    }
    need_binary(&Path::new("/usr/sbin").join(name), "mariadb-server")
}

/// `mariadb-install-db` of a new data directory `data` (created, owned by mysql).
pub fn install_db(data: &Path) {
    own_dir(data, "mysql");
    run_ok(
        Command::new(maria_bin("mariadb-install-db"))
            .args(["--no-defaults", "--user=mysql", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .current_dir("/"),
    );
}

/// A running MariaDB server; dropping it kills it.
pub struct Maria {
    pub data: PathBuf,
    pub dir: PathBuf,
    server: Option<Server>,
}

impl Maria {
    /// Starts a server on `data` with its socket, pid file and log in `dir` (created); waits
    /// until it answers (InnoDB crash recovery included).
    pub fn start(data: &Path, dir: &Path) -> Maria {
        own_dir(dir, "mysql");
        let mut m = Maria {
            data: data.to_path_buf(),
            dir: dir.to_path_buf(),
            server: None,
        };
        let port = free_port();
        let mut cmd = Command::new(maria_bin("mariadbd"));
        cmd.arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", m.sock().display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=32M",
                "--innodb-flush-log-at-trx-commit=1",
                "--innodb-flush-method=fsync",
                "--skip-log-bin",
            ])
            .current_dir("/");
        let what = format!("mariadbd on {}", data.display());
        let sock = m.sock();
        m.server = Some(Server::start(
            cmd,
            &dir.join("mariadbd.log"),
            &what,
            move || run(client(&sock).args(["-e", "select 1"])).status.success(),
        ));
        m
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("mariadbd.sock")
    }

    /// The mariadb client on this server, in database `walb` (`create_db`): batch mode, no
    /// column names.
    pub fn client(&self) -> Command {
        let mut c = client(&self.sock());
        c.arg("walb");
        c
    }

    /// Creates the database `walb` the other calls use.
    pub fn create_db(&self) {
        run_ok(client(&self.sock()).args(["-e", "create database walb"]));
    }

    /// Runs SQL (several statements allowed); it must succeed; returns its output trimmed.
    pub fn sql(&self, q: &str) -> String {
        run_ok(self.client().args(["-e", q])).trim().to_string()
    }

    /// Runs a script fed on stdin (`delimiter` allowed); it must succeed.
    pub fn script(&self, text: &str) {
        use std::io::Write;
        let mut child = self
            .client()
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("start mariadb");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "mariadb script failed ({st}):\n{text}");
    }

    /// `CHECK TABLE tables EXTENDED`: every table's status must be OK.
    pub fn check_tables(&self, tables: &str) {
        let out = self.sql(&format!("check table {tables} extended"));
        for l in out.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(
                f.len() == 4 && (f[2] != "status" || f[3] == "OK") && f[2] != "error",
                "CHECK TABLE on {}: {out}",
                self.data.display()
            );
        }
        assert!(
            out.contains("status\tOK"),
            "CHECK TABLE said nothing: {out}"
        );
    }

    /// A clean shutdown (SIGTERM); waits for it.
    pub fn stop(mut self) {
        if let Some(s) = self.server.as_mut() {
            s.stop(libc::SIGTERM);
        }
    }
}

fn client(sock: &Path) -> Command {
    let mut c = Command::new(maria_bin("mariadb"));
    c.arg("--no-defaults")
        .arg(format!("--socket={}", sock.display()))
        .args(["-u", "root", "-N", "-B"]);
    c
}
