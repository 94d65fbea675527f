//! PostgreSQL 15 clusters for the database tests (tests/tests/db.rs): each one on a data
//! directory the test chooses, on its own port, reached only through a unix socket in a
//! directory of the test's own (`listen_addresses = ''`). Nothing system-wide is used or
//! stopped. The server runs as the `postgres` user; clients connect as the `postgres` role.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::db::{as_user, free_port, need_binary, own_dir, Server};
use crate::{run, run_ok};

/// Where Debian's postgresql-15 installs its binaries.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Path of a PostgreSQL binary; panics loudly when it is not installed (scripts/setup.sh
/// installs it).
pub fn pg_bin(name: &str) -> PathBuf {
    need_binary(&Path::new(BIN).join(name), "postgresql-15")
}

/// A running PostgreSQL server; dropping it kills it (and its backends).
pub struct Pg {
    pub data: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    server: Option<Server>,
}

/// Client `name` of the server with its socket in `sock` on `port`, as role postgres.
fn client(sock: &Path, port: u16, name: &str) -> Command {
    let mut c = Command::new(pg_bin(name));
    c.env("PGHOST", sock)
        .env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres");
    c
}

/// `initdb` of a new cluster in `data` (created, owned by postgres), trust authentication.
pub fn initdb(data: &Path) {
    own_dir(data, "postgres");
    run_ok(
        as_user("postgres", &pg_bin("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .arg("-D")
            .arg(data),
    );
}

impl Pg {
    /// Starts a server on `data` with its socket in `sock` (created); waits until it accepts
    /// connections (crash recovery included). `settings` are `-c` options.
    pub fn start(data: &Path, sock: &Path, settings: &[&str]) -> Pg {
        own_dir(sock, "postgres");
        let mut pg = Pg {
            data: data.to_path_buf(),
            sock: sock.to_path_buf(),
            port: free_port(),
            server: None,
        };
        let mut cmd = as_user("postgres", &pg_bin("postgres"));
        cmd.arg("-D")
            .arg(data)
            .args(["-p", &pg.port.to_string(), "-k"])
            .arg(sock)
            .args(["-c", "listen_addresses="]);
        for s in settings {
            cmd.args(["-c", s]);
        }
        let what = format!("postgres on {}", data.display());
        let (sock, port) = (pg.sock.clone(), pg.port);
        pg.server = Some(Server::start(cmd, &pg.log_path(), &what, move || {
            run(client(&sock, port, "psql").args(["-X", "-c", "select 1"]))
                .status
                .success()
        }));
        pg
    }

    fn log_path(&self) -> PathBuf {
        self.sock.join("postgres.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A client command (psql, pgbench, pg_amcheck…) with this server's socket, port and role.
    pub fn client(&self, name: &str) -> Command {
        client(&self.sock, self.port, name)
    }

    /// psql without a psqlrc, unaligned, tuples only, stopping at the first error.
    pub fn psql(&self) -> Command {
        let mut c = self.client("psql");
        c.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]);
        c
    }

    /// Runs SQL; it must succeed; returns its output trimmed.
    pub fn sql(&self, q: &str) -> String {
        run_ok(self.psql().args(["-c", q])).trim().to_string()
    }

    /// Runs pgbench with `args` to completion; it must succeed.
    pub fn pgbench(&self, args: &[&str]) -> String {
        run_ok(self.client("pgbench").args(args))
    }

    /// pgbench's invariant: the balances of accounts, branches and tellers and the history's
    /// deltas all sum to the same value. Returns the four sums.
    pub fn pgbench_sums(&self) -> [i64; 4] {
        let out = self.sql(
            "select (select coalesce(sum(abalance),0) from pgbench_accounts), \
             (select coalesce(sum(bbalance),0) from pgbench_branches), \
             (select coalesce(sum(tbalance),0) from pgbench_tellers), \
             (select coalesce(sum(delta),0) from pgbench_history)",
        );
        let v: Vec<i64> = out.split('|').map(|s| s.parse().unwrap()).collect();
        [v[0], v[1], v[2], v[3]]
    }

    /// pg_amcheck of every table and index of the `postgres` database (amcheck installed when
    /// missing); it must find nothing.
    pub fn amcheck(&self) {
        let out = run(self
            .client("pg_amcheck")
            .args(["--install-missing", "-d", "postgres"]));
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "pg_amcheck on {} ({}):\n{}{}",
            self.data.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A clean shutdown (SIGINT: fast mode); waits for it.
    pub fn stop(mut self) {
        if let Some(s) = self.server.as_mut() {
            s.stop(libc::SIGINT);
        }
    }

    /// SIGKILL of the server and every backend, as in a host crash.
    pub fn kill9(mut self) {
        if let Some(s) = self.server.as_mut() {
            s.kill9();
        }
    }
}
