//! The one place that starts ffmpeg and ffprobe.
//!
//! Every call gets explicit arguments, a cleared environment, its own process group,
//! resource limits (address space, CPU time, no core dumps), death with its parent, and
//! a timeout enforced by a watchdog thread that kills the whole group. The watchdog's
//! [`Clock`] is either the wall clock since the spawn (probes, decodes), or only the time
//! the caller spends waiting on the child (the encoder: a stdin write that does not go
//! through, or the wait after the last frame), so that a slow producer of frames is never
//! mistaken for a hung ffmpeg. stderr is drained concurrently and its tail is kept for the
//! error. A [`Subprocess`] that is dropped unfinished is killed and reaped, so no zombie
//! outlives it.

use crate::error::MediaError;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

/// What the watchdog's timeout measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Time since the spawn.
    WallClock,
    /// Time the caller has been waiting on the child without a break: one stdin write
    /// ([`Subprocess::write`]), or [`Subprocess::finish`]. Time between writes is the
    /// caller's, not the child's, and does not count.
    Stall,
}

/// Resource limits for one subprocess.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The process group is killed when this passes on the [`Clock`].
    pub timeout: Duration,
    /// How `timeout` is measured.
    pub clock: Clock,
    /// `RLIMIT_AS`, in bytes.
    pub max_address_space: u64,
    /// `RLIMIT_CPU`, in seconds.
    pub max_cpu_seconds: u64,
    /// Most bytes of stdout kept; more is an error.
    pub max_stdout: usize,
}

impl Limits {
    /// Limits for probing an untrusted file.
    pub fn probe() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            clock: Clock::WallClock,
            max_address_space: 2 << 30,
            max_cpu_seconds: 30,
            max_stdout: 1 << 20,
        }
    }

    /// Limits for decoding video.
    pub fn transcode() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            clock: Clock::WallClock,
            max_address_space: 16 << 30,
            max_cpu_seconds: 1800,
            max_stdout: 1 << 30,
        }
    }

    /// Limits for encoding frames that arrive as fast as an engine renders them: a stall
    /// of `stall` (a frame write or the final wait that does not finish) kills ffmpeg, but
    /// a render of any length does not. CPU time stays capped.
    pub fn encode(stall: Duration) -> Self {
        Self {
            timeout: stall,
            clock: Clock::Stall,
            ..Self::transcode()
        }
    }
}

/// What the watchdog thread watches.
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchState {
    /// Since when the caller has been waiting on the child, if it is.
    waiting_since: Option<Instant>,
    /// The child is finished; the watchdog leaves.
    stopped: bool,
}

impl Watch {
    fn set(&self, update: impl FnOnce(&mut WatchState)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut state);
        self.changed.notify_all();
    }

    /// Waits until stopped (`false`) or until the caller has waited `timeout` on the
    /// child (`true`).
    fn expired(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.stopped {
                return false;
            }
            state = match state.waiting_since {
                None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(since) => {
                    let elapsed = since.elapsed();
                    if elapsed >= timeout {
                        return true;
                    }
                    self.changed
                        .wait_timeout(state, timeout - elapsed)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Where the ffmpeg and ffprobe programs are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The ffmpeg program (`ffmpeg` on `PATH` by default).
    pub ffmpeg: PathBuf,
    /// The ffprobe program (`ffprobe` on `PATH` by default).
    pub ffprobe: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
        }
    }
}

/// The stdout reader thread's result: the bytes kept, and whether there were more.
type StdoutReader = JoinHandle<std::io::Result<(Vec<u8>, bool)>>;

/// A running, sandboxed child process.
pub struct Subprocess {
    program: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<StdoutReader>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    watch: Arc<Watch>,
    watchdog: Option<JoinHandle<()>>,
    timed_out: Arc<AtomicBool>,
    limits: Limits,
}

impl Subprocess {
    /// Starts `program` with `args`; stdin is a pipe when `with_stdin`, stdout is captured.
    pub fn spawn(
        program: &std::path::Path,
        args: &[String],
        limits: Limits,
        with_stdin: bool,
    ) -> Result<Self, MediaError> {
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let rlimits = limits;
        // SAFETY: the closure only makes async-signal-safe system calls (setrlimit, prctl).
        unsafe {
            command.pre_exec(move || {
                set_rlimit(libc::RLIMIT_AS, rlimits.max_address_space)?;
                set_rlimit(libc::RLIMIT_CPU, rlimits.max_cpu_seconds)?;
                set_rlimit(libc::RLIMIT_CORE, 0)?;
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| MediaError::Spawn {
            program: name.clone(),
            source,
        })?;
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout is piped");
        let mut err = child.stderr.take().expect("stderr is piped");
        let max_stdout = limits.max_stdout;
        let stdout = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let n = (&mut out)
                .take(max_stdout as u64 + 1)
                .read_to_end(&mut buf)?;
            let overflow = n > max_stdout;
            if overflow {
                buf.truncate(max_stdout);
                std::io::copy(&mut out, &mut std::io::sink())?;
            }
            Ok((buf, overflow))
        });
        let stderr = std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 4 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            tail
        });
        let timed_out = Arc::new(AtomicBool::new(false));
        let watch = Arc::new(Watch::default());
        if limits.clock == Clock::WallClock {
            watch.set(|s| s.waiting_since = Some(Instant::now()));
        }
        let pgid = child.id() as libc::pid_t;
        let flag = timed_out.clone();
        let watched = watch.clone();
        let watchdog = std::thread::spawn(move || {
            if watched.expired(limits.timeout) {
                flag.store(true, Ordering::SeqCst);
                kill_group(pgid);
            }
        });
        Ok(Self {
            program: name,
            child: Some(child),
            stdin,
            stdout: Some(stdout),
            stderr: Some(stderr),
            watch,
            watchdog: Some(watchdog),
            timed_out,
            limits,
        })
    }

    /// Writes all of `bytes` to the child's stdin. With [`Clock::Stall`] the watchdog
    /// counts only while this call waits.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "started without stdin")
        })?;
        if self.limits.clock == Clock::Stall {
            self.watch.set(|s| s.waiting_since = Some(Instant::now()));
        }
        let written = stdin.write_all(bytes);
        if self.limits.clock == Clock::Stall {
            self.watch.set(|s| s.waiting_since = None);
        }
        written
    }

    /// Ends the watchdog thread (the child is gone or being reaped).
    fn stop_watchdog(&mut self) {
        self.watch.set(|s| s.stopped = true);
        if let Some(handle) = self.watchdog.take() {
            let _ = handle.join();
        }
    }

    /// Closes stdin, waits for the child, and returns its stdout when it exited with 0.
    pub fn finish(mut self) -> Result<Vec<u8>, MediaError> {
        drop(self.stdin.take());
        if self.limits.clock == Clock::Stall {
            self.watch.set(|s| s.waiting_since = Some(Instant::now()));
        }
        let mut child = self.child.take().expect("finish runs once");
        // Wait without reaping, so the group id cannot be reused, then kill whatever the
        // leader left behind in its group, then reap.
        wait_exited_unreaped(child.id() as libc::pid_t);
        kill_group(child.id() as libc::pid_t);
        let status = child.wait();
        self.stop_watchdog();
        let stderr_tail = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .map(|t| tail_text(&t))
            .unwrap_or_default();
        let stdout = self.stdout.take().map(|h| h.join());
        let status = status.map_err(|source| MediaError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        if self.timed_out.load(Ordering::SeqCst) {
            return Err(MediaError::Timeout {
                program: self.program.clone(),
                seconds: self.limits.timeout.as_secs_f64(),
            });
        }
        if !status.success() {
            let status = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => "an unknown status".to_owned(),
            };
            return Err(MediaError::Ffmpeg {
                program: self.program.clone(),
                status,
                stderr_tail,
            });
        }
        match stdout {
            Some(Ok(Ok((buf, false)))) => Ok(buf),
            Some(Ok(Ok((_, true)))) => Err(MediaError::Ffmpeg {
                program: self.program.clone(),
                status: format!("more than {} bytes of output", self.limits.max_stdout),
                stderr_tail,
            }),
            _ => Err(MediaError::Ffmpeg {
                program: self.program.clone(),
                status: "unreadable output".to_owned(),
                stderr_tail,
            }),
        }
    }
}

impl Drop for Subprocess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id() as libc::pid_t);
            let _ = child.wait();
        }
        self.stop_watchdog();
    }
}

/// Runs a program to completion without stdin and returns its stdout.
pub fn run(
    program: &std::path::Path,
    args: &[String],
    limits: Limits,
) -> Result<Vec<u8>, MediaError> {
    Subprocess::spawn(program, args, limits, false)?.finish()
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads a valid, initialised struct.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait_exited_unreaped(pid: libc::pid_t) {
    // SAFETY: waitid writes into a zeroed siginfo_t that it owns for the call.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        while libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        ) != 0
        {
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill with a negative pid signals the child's own process group only.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, limits: Limits) -> Result<Vec<u8>, MediaError> {
        run(
            std::path::Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            limits,
        )
    }

    #[test]
    fn captures_stdout_and_reports_exit_codes() {
        assert_eq!(sh("printf hi", Limits::probe()).unwrap(), b"hi");
        let err = sh("echo broken >&2; exit 3", Limits::probe()).unwrap_err();
        assert_eq!(err.to_string(), "sh failed with exit code 3: broken");
    }

    #[test]
    fn stdout_over_the_cap_is_an_error() {
        let limits = Limits {
            max_stdout: 10,
            ..Limits::probe()
        };
        let err = sh("head -c 100 /dev/zero", limits).unwrap_err();
        assert!(err.to_string().contains("more than 10 bytes"), "{err}");
    }
}
