//! The browser playground of a real `r2v serve` (preview engine, SQLite in a temp dir), driven
//! in Debian's Chromium by `tests/playground/e2e.mjs` (playwright-core, pinned). Screenshots of
//! every stage land in `target/playground/`.

mod util;

use std::ffi::OsStr;
use std::path::Path;
use util::{Server, repo_root, run_script};

#[test]
fn the_playground_works_in_chromium() {
    let e2e = repo_root().join("tests/playground");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    for (path, what) in [
        (e2e.join("node_modules/playwright-core"), "playwright-core"),
        (Path::new(&chromium).to_path_buf(), "Chromium"),
    ] {
        assert!(
            path.exists(),
            "{what} is not installed at {}; scripts/test.sh installs it",
            path.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--x264-preset", "ultrafast"]);
    let key = server.key.clone().expect("the first start prints a key");
    let script = e2e.join("e2e.mjs");
    let screenshots = repo_root().join("target/playground");
    let run = |server: &Server, key: &str, shots: &Path| {
        let envs = [
            ("R2V_SCREENSHOTS", shots.as_os_str()),
            ("CHROMIUM", OsStr::new(&chromium)),
        ];
        run_script(Path::new("node"), &script, server, key, &envs);
    };
    run(&server, &key, &screenshots);
    // Without keys, none is asked for.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--x264-preset", "ultrafast", "--no-auth"]);
    run(&server, "", &screenshots.join("no-auth"));
}
