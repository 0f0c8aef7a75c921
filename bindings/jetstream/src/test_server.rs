//! A throwaway `nats-server` for tests and benchmarks: JetStream on a free
//! loopback port, its store in a directory the caller owns, stopped by its
//! PID when the guard drops (a panicking test included). Nothing here is
//! needed to run a relay.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after it is started.
const START_WAIT: Duration = Duration::from_secs(20);

/// A running `nats-server -js`, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store_dir: PathBuf,
}

impl NatsServer {
    /// The `nats-server` on `PATH`, or why there is none.
    pub fn binary() -> Result<PathBuf, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
            .ok_or_else(|| "nats-server is not on PATH (apt-get install -y nats-server)".to_string())
    }

    /// Starts a server on a free port of 127.0.0.1, keeping its JetStream
    /// store (and its log, `nats-server.log`) in `store_dir`; returns once it
    /// accepts connections.
    pub fn start(store_dir: &Path) -> std::io::Result<NatsServer> {
        let mut last = None;
        // A port found free can be taken before the server binds it: try another.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            match NatsServer::start_on(port, store_dir) {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("nats-server did not start")))
    }

    /// Starts a server on `port` (a restart of a stopped one: same port,
    /// same store directory).
    pub fn start_on(port: u16, store_dir: &Path) -> std::io::Result<NatsServer> {
        let binary = NatsServer::binary().map_err(std::io::Error::other)?;
        std::fs::create_dir_all(store_dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(store_dir.join("nats-server.log"))?;
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = NatsServer { child: Some(child), port, store_dir: store_dir.to_path_buf() };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + START_WAIT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(std::io::Error::other(format!(
                        "nats-server on port {} exited with {status}; see {}",
                        self.port,
                        self.store_dir.join("nats-server.log").display()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::other(format!(
                    "nats-server on port {} did not accept connections",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL: `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it with SIGTERM (a clean shutdown: JetStream flushes its
    /// files) and waits for it, SIGKILL after 10 s.
    pub fn stop(&mut self) -> std::io::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait().map(|_| ())
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        child.kill()?;
        child.wait().map(|_| ())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
