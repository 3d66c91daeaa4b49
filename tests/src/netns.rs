//! A network namespace owned by one test: created with a unique name, every
//! process started in it is tracked, and everything is torn down on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A unique `pw-<pid>-<n>` stem, so parallel tests (and parallel runs) never collide.
pub fn unique_stem() -> String {
    format!(
        "pw-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Default bound on any command run to completion in a namespace.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound of every wait for something a test started (a server listening, a
/// flow record, an event, a process exiting). Waits are polls, so a fast
/// machine never waits for it; it only has to outlast a loaded 2-core CI VM,
/// which can stall a process for seconds.
pub const READY: Duration = Duration::from_secs(60);

/// A process started in a namespace; killed (with its process group) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (a server that died early is a test bug to report).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its combined stdout/stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM to the process group and waits up to `grace` before SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        let pgid = self.child.id();
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(pgid, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal_group(self.child.id(), "KILL");
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn signal_group(pgid: u32, sig: &str) {
    // Only ever a group we created (process_group(0) at spawn).
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A network namespace named `<stem>-<role>`.
pub struct Netns {
    name: String,
    log_dir: PathBuf,
    procs: Mutex<Vec<Proc>>,
}

/// Runs a command to completion with a time bound; returns its output whatever the status.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawning {desc}"))?;
    // Read pipes on threads so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = std::io::Read::read_to_end(o, &mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = std::io::Read::read_to_end(e, &mut v);
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            signal_group(child.id(), "KILL");
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?}: {desc}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

use std::os::unix::process::CommandExt as _;

impl Netns {
    /// Creates `<stem>-<role>` with loopback up. Logs of its processes go to `log_dir`.
    pub fn create(stem: &str, role: &str, log_dir: &Path) -> Result<Netns> {
        let name = format!("{stem}-{role}");
        let out = run_bounded(
            Command::new("ip").args(["netns", "add", &name]),
            COMMAND_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ns = Netns {
            name,
            log_dir: log_dir.to_path_buf(),
            procs: Mutex::new(Vec::new()),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> [setpriv as uid] argv…`
    pub fn command(&self, uid: Option<u32>, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        if let Some(uid) = uid {
            let id = uid.to_string();
            c.args([
                "setpriv",
                "--reuid",
                &id,
                "--regid",
                &id,
                "--clear-groups",
                "--",
            ]);
        }
        c.args(argv);
        c
    }

    /// Runs argv to completion (bounded), whatever its exit status.
    pub fn output(&self, uid: Option<u32>, argv: &[&str]) -> Result<Output> {
        run_bounded(&mut self.command(uid, argv), COMMAND_TIMEOUT)
    }

    /// Runs argv as root; fails with its stderr unless it exits 0. Returns stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        self.exec_as(None, argv)
    }

    /// Like [`Netns::exec`], optionally as another UID (and the same GID).
    pub fn exec_as(&self, uid: Option<u32>, argv: &[&str]) -> Result<String> {
        let out = self.output(uid, argv)?;
        if !out.status.success() {
            bail!(
                "in {}: {:?} failed ({}): {}{}",
                self.name,
                argv,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a shell script as root in the namespace.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.exec(&["sh", "-c", script])
    }

    /// Starts a long-running process; it is killed when the namespace is dropped
    /// (or earlier via [`Netns::stop`]). Its output goes to `<log_dir>/<label>.log`.
    pub fn spawn(&self, label: &str, uid: Option<u32>, argv: &[&str]) -> Result<u32> {
        let log = self.log_dir.join(format!("{}-{label}.log", self.name));
        let f = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let f2 = f.try_clone()?;
        let child = self
            .command(uid, argv)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {label} in {}", self.name))?;
        let pid = child.id();
        self.lock().push(Proc {
            name: label.to_string(),
            child,
            log,
        });
        Ok(pid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Proc>> {
        match self.procs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Stops a process started with [`Netns::spawn`] (TERM, then KILL after `grace`).
    pub fn stop(&self, label: &str, grace: Duration) {
        let mut procs = self.lock();
        if let Some(i) = procs.iter().position(|p| p.name == label) {
            let mut p = procs.remove(i);
            p.stop(grace);
        }
    }

    /// Log of a spawned process (empty if unknown).
    pub fn log_of(&self, label: &str) -> String {
        self.lock()
            .iter()
            .find(|p| p.name == label)
            .map(Proc::log_text)
            .unwrap_or_default()
    }

    /// Whether a spawned process is still alive.
    pub fn is_running(&self, label: &str) -> bool {
        self.lock()
            .iter_mut()
            .find(|p| p.name == label)
            .is_some_and(Proc::is_running)
    }

    /// Logs of every process, for failure messages.
    pub fn all_logs(&self) -> String {
        self.lock()
            .iter()
            .map(|p| format!("--- {} / {} ---\n{}", self.name, p.name, p.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Gives processes in this namespace their own /etc/resolv.conf (`ip netns
    /// exec` bind-mounts /etc/netns/<name>/resolv.conf); removed on drop.
    pub fn set_resolv_conf(&self, content: &str) -> Result<()> {
        let dir = Path::new("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("resolv.conf"), content)?;
        Ok(())
    }

    /// Waits until something listens on TCP `port` in this namespace.
    pub fn wait_listening(&self, port: u16, timeout: Duration) -> Result<()> {
        self.wait_socket("-ltnH", port, timeout)
    }

    /// Waits until something is bound to UDP `port` in this namespace.
    pub fn wait_udp_bound(&self, port: u16, timeout: Duration) -> Result<()> {
        self.wait_socket("-lunH", port, timeout)
    }

    fn wait_socket(&self, flags: &str, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let suffix = format!(":{port}");
        loop {
            let out = self.exec(&["ss", flags])?;
            let found = out.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|local| local.ends_with(&suffix))
            });
            if found {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "nothing bound to port {port} ({flags}) in {} after {timeout:?}\n{}",
                    self.name,
                    self.all_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Our own processes first (whole groups), then any stragglers inside the namespace.
        self.lock().clear();
        if let Ok(out) = run_bounded(
            Command::new("ip").args(["netns", "pids", &self.name]),
            COMMAND_TIMEOUT,
        ) {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = run_bounded(
            Command::new("ip").args(["netns", "del", &self.name]),
            COMMAND_TIMEOUT,
        );
        // Only our own per-namespace directory (see set_resolv_conf).
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}
