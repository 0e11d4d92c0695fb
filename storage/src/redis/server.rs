//! Test support: a real `redis-server` child process on a free local port, in its own temp dir.
//!
//! Used by the Redis backend's tests and benches and by the project's integration and chaos tests. The server
//! runs with `--save ''` (no RDB snapshots) plus the options of [`ServerOptions`]: `--appendonly yes` (AOF,
//! which the backend's readiness requires; `everysec` unless durable), `--appendfsync always` for durability
//! tests, no AOF for the tests of that check, `--maxmemory N --maxmemory-policy noeviction` to provoke
//! `OOM command not allowed`. [`RedisServer::start`] returns only once the server answers `PING` with `PONG`
//! (polled against a deadline; a server still `LOADING` its AOF is not ready). Dropping the value kills the
//! child (SIGKILL) and removes the directory. [`RedisServer::kill9`] + [`RedisServer::restart`] simulate a
//! server crash and a restart on the same directory and port. [`RedisServer::start_replica_of`] starts a replica
//! (`--replicaof`) and returns once the primary lists it online; [`RedisServer::pause`] / [`RedisServer::resume`]
//! (SIGSTOP / SIGCONT) hang it without closing its link, as a stuck replica does.
//!
//! Everything here is synchronous std code so benches and non-async tests can use it too.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long [`RedisServer::start`] / [`RedisServer::restart`] wait for `PONG`.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// Options of a spawned server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The server binary (default `/usr/bin/redis-server`, or `$REDIS_SERVER` when set).
    pub binary: PathBuf,
    /// `--appendonly yes --appendfsync always`: every acknowledged write is fsynced before the reply.
    pub append_only_fsync_always: bool,
    /// `--appendonly yes` (with `--appendfsync everysec` unless `append_only_fsync_always`); `false` runs without
    /// AOF, which the backend's readiness refuses unless it is told to accept it.
    pub append_only: bool,
    /// `--maxmemory <bytes> --maxmemory-policy noeviction` when set.
    pub max_memory_bytes: Option<u64>,
    /// Extra `--flag value` arguments.
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            binary: std::env::var_os("REDIS_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server")),
            append_only_fsync_always: false,
            append_only: true,
            max_memory_bytes: None,
            extra_args: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// Durable options: AOF with fsync on every write.
    pub fn durable() -> Self {
        Self {
            append_only_fsync_always: true,
            ..Self::default()
        }
    }

    /// A server without AOF (RDB-only Redis's default persistence, snapshots off here).
    pub fn without_aof() -> Self {
        Self {
            append_only: false,
            ..Self::default()
        }
    }

    /// A server limited to `bytes` of memory with the `noeviction` policy.
    pub fn max_memory(bytes: u64) -> Self {
        Self {
            max_memory_bytes: Some(bytes),
            ..Self::default()
        }
    }
}

/// A running `redis-server` child; killed and its directory removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    options: ServerOptions,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

static DIR_SEQ: AtomicU64 = AtomicU64::new(0);

fn unique_dir() -> io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "relay-miner-redis-{}-{}-{nanos}",
        std::process::id(),
        DIR_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

impl RedisServer {
    /// Starts a server on a free port in a fresh temp dir and waits until it answers `PING`.
    /// Retries on a new port when the chosen one was taken in the meantime.
    pub fn start(options: ServerOptions) -> io::Result<Self> {
        let mut server = Self {
            options,
            port: 0,
            dir: unique_dir()?,
            child: None,
        };
        let mut last_err = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.kill_child();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its working directory (AOF files live here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server with SIGKILL (a crash: nothing flushed beyond what it already fsynced).
    pub fn kill9(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and directory (after [`RedisServer::kill9`]) and waits for it
    /// to answer `PING` (i.e. to have loaded its AOF).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill9()?;
        self.spawn_and_wait()
    }

    /// Starts a replica of `primary` (`--replicaof 127.0.0.1 <port>` added to `options`) and waits until it is in
    /// sync ([`RedisServer::wait_replica_online`]). [`RedisServer::restart`] restarts it as a replica again.
    pub fn start_replica_of(primary: &RedisServer, mut options: ServerOptions) -> io::Result<Self> {
        // A diskless full sync starts only after `repl-diskless-sync-delay` (5 s by default, for more replicas to
        // join it): at once here.
        let set = primary.command(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"])?;
        if !set.starts_with("+OK") {
            return Err(io::Error::other(format!("CONFIG SET repl-diskless-sync-delay: {set}")));
        }
        options
            .extra_args
            .extend(["--replicaof".into(), "127.0.0.1".into(), primary.port().to_string()]);
        let replica = Self::start(options)?;
        replica.wait_replica_online(primary)?;
        Ok(replica)
    }

    /// Waits (polled against [`START_DEADLINE`]) until this replica's `INFO replication` shows
    /// `master_link_status:up`, `primary`'s lists it `state=online`, and it acknowledged a write `primary` made
    /// after that (a `PUBLISH`, which Redis replicates). `online` alone is not enough: after a full sync the primary
    /// holds the command stream back until the replica's first `REPLCONF ACK`, which it sends once a second, so a
    /// `WAIT` right then timed out (800 ms) in about one run in four.
    pub fn wait_replica_online(&self, primary: &RedisServer) -> io::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let listed = format!("port={},state=online,offset=", self.port);
        let mut published = false;
        loop {
            let up = self
                .command(&["INFO", "replication"])?
                .contains("master_link_status:up");
            let info = primary.command(&["INFO", "replication"])?;
            if up && info.contains(&listed) && !published {
                primary.command(&["PUBLISH", "relay-miner-test-replica-sync", "1"])?;
                published = true;
                continue;
            }
            if published && caught_up(&info, &listed) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "replica on port {} never came online at the primary on port {}",
                        self.port, primary.port
                    ),
                ));
            }
            // Poll interval (bounded by the deadline above).
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the process with SIGSTOP: its connections stay open but it answers nothing (a hung server).
    pub fn pause(&self) -> io::Result<()> {
        self.signal("-STOP")
    }

    /// Continues a process stopped by [`RedisServer::pause`] (SIGCONT).
    pub fn resume(&self) -> io::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> io::Result<()> {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| io::Error::other("redis-server is not running"))?;
        let status = Command::new("kill").arg(sig).arg(pid.to_string()).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill {sig} {pid}: {status}")))
        }
    }

    /// Sends one command (inline protocol, arguments without spaces) and returns the raw reply line(s).
    /// Test support for `CONFIG SET`, `FLUSHALL`, `DEBUG` and the like, independent of the client under test.
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(2),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut req = Vec::new();
        req.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        s.write_all(&req)?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf)?;
        buf.truncate(n);
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let mut cmd = Command::new(&self.options.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--daemonize")
            .arg("no")
            .arg("--logfile")
            .arg("redis.log");
        if self.options.append_only_fsync_always {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else if self.options.append_only {
            cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
        }
        if let Some(bytes) = self.options.max_memory_bytes {
            cmd.arg("--maxmemory")
                .arg(bytes.to_string())
                .args(["--maxmemory-policy", "noeviction"]);
        }
        cmd.args(&self.options.extra_args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        self.child = Some(cmd.spawn()?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited during start ({status}); see {}",
                    self.dir.join("redis.log").display()
                )));
            }
            if self.ping().unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server on port {} never answered PONG", self.port),
                ));
            }
            // Poll interval of the readiness loop (bounded by the deadline above).
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the server answers `PING` with `PONG` right now.
    pub fn ping(&self) -> io::Result<bool> {
        Ok(self.command(&["PING"])?.starts_with("+PONG"))
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the replica whose `slaveN:` line of a primary's `INFO replication` contains `listed`
/// (`port=P,state=online,offset=`) acknowledged the primary's `master_repl_offset`.
fn caught_up(info: &str, listed: &str) -> bool {
    let field = |line: &str, name: &str| line.strip_prefix(name).and_then(|v| v.trim().parse::<u64>().ok());
    let primary = info.lines().find_map(|l| field(l, "master_repl_offset:"));
    let acked = info.lines().find_map(|l| {
        let rest = &l[l.find(listed)? + listed.len()..];
        rest.split(',').next()?.trim().parse::<u64>().ok()
    });
    matches!((primary, acked), (Some(p), Some(a)) if a >= p)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_child();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
