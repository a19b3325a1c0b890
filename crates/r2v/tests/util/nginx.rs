//! nginx (Debian's `nginx-light`) in front of several `r2v serve` nodes, running the
//! balancer configuration the deployment guide ships (`docs/nginx-r2v.conf`) with the test's
//! addresses, and logging which node served each request.

use super::{Endpoint, free_port, repo_root};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx, killed when dropped.
pub struct Balancer {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

/// One proxied call: its path and query, and the node (`127.0.0.1:PORT`) that served it;
/// `upstream` lists every node tried when the first was down.
#[derive(Debug, Clone)]
pub struct Served {
    pub uri: String,
    pub upstream: String,
}

impl Balancer {
    /// Starts nginx on a free loopback port in front of `nodes` (their `http://HOST:PORT`
    /// bases), with `port` as its own when given (a node's `--public-url` may need it first).
    pub fn start(nodes: &[&str], port: Option<u16>) -> Balancer {
        let program = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect(
                "nginx is not installed; scripts/ensure-deps.sh --clients installs nginx-light",
            );
        let port = port.unwrap_or_else(free_port);
        let shipped = std::fs::read_to_string(repo_root().join("docs/nginx-r2v.conf")).unwrap();
        let servers: Vec<String> = nodes
            .iter()
            .map(|base| {
                format!(
                    "    server {} max_fails=1 fail_timeout=5s;",
                    base.trim_start_matches("http://")
                )
            })
            .collect();
        let site: String = shipped
            .lines()
            .filter(|l| !l.trim_start().starts_with("server 10.0.0."))
            .map(|l| {
                if l.trim() == "upstream r2v_nodes {" {
                    format!("{l}\n{}", servers.join("\n"))
                } else if l.trim() == "listen 80;" {
                    format!("    listen 127.0.0.1:{port};")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(site.contains(&servers[0]) && site.contains(&format!(":{port};")));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("r2v.conf"), site).unwrap();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                   client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
                   fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
                   log_format served '$request_uri $upstream_addr';\n\
                   access_log {d}/access.log served;\n\
                   include {d}/r2v.conf;\n\
                 }}\n"
            ),
        )
        .unwrap();
        let child = Command::new(program)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nginx");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// Every call proxied so far, in the order nginx logged them.
    pub fn served(&self) -> Vec<Served> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (uri, upstream) = line.split_once(' ')?;
                Some(Served {
                    uri: uri.to_owned(),
                    upstream: upstream.to_owned(),
                })
            })
            .collect()
    }
}

impl Endpoint for Balancer {
    fn base(&self) -> &str {
        &self.base
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
