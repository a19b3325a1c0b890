//! A Postgres server for tests: Debian's packages (`/usr/lib/postgresql/*/bin`), a cluster in a
//! temporary directory, a free loopback port, stopped when dropped. Shared by the store's
//! suite and the fleet tests of `crates/r2v` (which include this file by path).

/// A Postgres server of Debian's packages in a temporary directory, on a free loopback port,
/// for the length of a test (stopped on drop). As root it runs as the `postgres` user.
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    as_postgres: bool,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
}

impl TempPostgres {
    /// Starts a fresh server.
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("Postgres is not installed (Debian: postgresql); scripts/test.sh installs it");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut server = Self {
            url: String::new(),
            dir,
            bin,
            as_postgres,
        };
        if as_postgres {
            server.run(
                "chown",
                &["-R", "postgres", server.dir.path().to_str().unwrap()],
                false,
            );
        }
        let data = server.dir.path().join("data");
        let data = data.to_str().unwrap();
        server.run(
            "initdb",
            &[
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            true,
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            server.dir.path().display()
        );
        let log = server.dir.path().join("postgres.log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                data,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
            true,
        );
        server.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        server
    }

    fn run(&self, program: &str, args: &[&str], postgres_tool: bool) {
        let program = if postgres_tool {
            self.bin.join(program).to_string_lossy().into_owned()
        } else {
            program.to_owned()
        };
        let mut command = if self.as_postgres && program != "chown" {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            std::process::Command::new(&program)
        };
        let output = command
            .args(args)
            .output()
            .expect("running a Postgres tool");
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the server at once (as a crash would) and starts it again on the same port.
    #[allow(
        dead_code,
        reason = "crates/r2v/tests/fleet.rs, which includes this file, uses it"
    )]
    pub fn restart(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        // With a log file, so the server does not hold our pipes open (the options of the
        // first start are kept in postmaster.opts).
        let (data, log) = (data.to_str().unwrap(), log.to_str().unwrap());
        self.run(
            "pg_ctl",
            &["-D", data, "-m", "immediate", "-l", log, "-w", "restart"],
            true,
        );
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
            true,
        );
    }
}
