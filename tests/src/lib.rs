//! The end-to-end harness: a real `redis-server` on a free port per test, real
//! `eddy` processes, and helpers to deploy the guests and wait for outcomes.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eddy_protocol::{Envelope, FunctionConfig, FunctionName, RunRecord, TenantId};
use eddy_queue::{Queue, QueueConfig};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The workspace's `target/<profile>` directory (where `eddy` is built).
pub fn bin_dir() -> PathBuf {
    // The test binary lives in target/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A guest's compiled bytes.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../functions/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the guests first: `make functions`",
            path.display()
        )
    })
}

/// A JavaScript processor of `functions/js`, built by componentize-js.
pub fn js_wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../functions/js/target")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the guests first: `make functions`",
            path.display()
        )
    })
}

/// A hand-written hostile component of `functions/fixtures/hostile`,
/// compiled from its text format.
pub fn hostile(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../functions/fixtures/hostile")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `redis-server` of this test's own, on a free port, with AOF
/// (`appendfsync always`) in a temporary directory, so it can be killed and
/// restarted without losing anything it acknowledged.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--logfile", "redis.log"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (`make setup`)");
        self.child = Some(child);
        wait_for(Duration::from_secs(10), "redis to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        // Listening is not loaded: wait until the AOF is replayed.
        wait_for(Duration::from_secs(10), "redis to load", || {
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "PING"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
                .unwrap_or(false)
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye, the AOF is all that survives.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A local Redis Cluster of this test's own: `masters` primaries (each with
/// `replicas_each` replicas) on free loopback ports, created with
/// `redis-cli --cluster create`, AOF on every node.
#[derive(Debug)]
pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas_each: usize) -> Self {
        let n = masters * (1 + replicas_each);
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for port in &ports {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .arg("--dir")
                .arg(&node_dir)
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .args(["--save", ""])
                .args(["--logfile", "redis.log"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (`make setup`)");
            children.push(Some(child));
        }
        for port in &ports {
            wait_for(Duration::from_secs(10), "a cluster node to listen", || {
                std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", &replicas_each.to_string()])
            .arg("--cluster-yes")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster {
            ports,
            dir,
            children,
        };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every live node says `cluster_state:ok` and knows all
    /// nodes.
    pub fn wait_ok(&self) {
        wait_for(Duration::from_secs(60), "the cluster to be ok", || {
            self.ports
                .iter()
                .enumerate()
                .filter(|(i, _)| self.children[*i].is_some())
                .all(|(_, p)| {
                    self.cli(*p, &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                })
        });
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// `redis-cli` against the node on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The ports of the nodes that are primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.ports
            .iter()
            .enumerate()
            .filter(|(i, _)| self.children[*i].is_some())
            .map(|(_, p)| *p)
            .filter(|p| self.cli(*p, &["ROLE"]).starts_with("master"))
            .collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            if let Some(mut c) = c.take() {
                signal(&c, libc::SIGKILL);
                let _ = c.wait();
            }
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// The `env` entry of [`EddyProcess::spawn`] that sends the process's
/// stderr (its log) to a file.
pub const STDERR_TO: &str = "test:stderr-to";

/// A real `eddy` process.
#[derive(Debug)]
pub struct EddyProcess {
    child: Option<Child>,
    pub name: String,
}

impl EddyProcess {
    /// `eddy <role>` with the role's environment (`cmd`), then `env` on top;
    /// stdout dropped, stderr shown, or appended to the file named by the
    /// entry [`STDERR_TO`] of `env` (not passed on).
    pub fn spawn(mut cmd: Command, env: &[(&str, &str)], name: String) -> Self {
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        for (k, v) in env {
            if *k == STDERR_TO {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(v)
                    .unwrap();
                cmd.stderr(file);
                continue;
            }
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "starting {name} ({}): {e} (build it: cargo build --release)",
                bin_dir().join("eddy").display()
            )
        });
        EddyProcess {
            child: Some(child),
            name,
        }
    }

    /// `eddy worker` against `redis_url`, with extra environment.
    pub fn worker(redis_url: &str, cache_dir: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin_dir().join("eddy"));
        cmd.arg("worker")
            .env("REDIS_URL", redis_url)
            .env("EDDY_CACHE_DIR", cache_dir)
            .env("EDDY_CONSUMER", name)
            .env("EDDY_LOG", "eddy=info,warn");
        Self::spawn(cmd, env, name.to_string())
    }

    /// `eddy gateway` against `redis_url` on `port`, admin key `admin-secret`.
    pub fn gateway(redis_url: &str, cache_dir: &Path, port: u16) -> Self {
        Self::gateway_with(redis_url, cache_dir, port, &[])
    }

    /// [`EddyProcess::gateway`] with extra environment.
    pub fn gateway_with(
        redis_url: &str,
        cache_dir: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(bin_dir().join("eddy"));
        cmd.arg("gateway")
            .env("REDIS_URL", redis_url)
            .env("EDDY_LISTEN", format!("127.0.0.1:{port}"))
            .env("EDDY_ADMIN_KEY", "admin-secret")
            .env("EDDY_CACHE_DIR", cache_dir)
            .env("EDDY_LOG", "warn");
        let gateway = Self::spawn(cmd, env, format!("gateway-{port}"));
        wait_for(Duration::from_secs(30), "the gateway to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        gateway
    }

    /// `eddy controller` against `redis_url`.
    pub fn controller(redis_url: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin_dir().join("eddy"));
        cmd.arg("controller")
            .env("REDIS_URL", redis_url)
            .env(
                "EDDY_CONTROLLER_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("EDDY_CONTROLLER_TICK_MS", "50")
            .env("EDDY_LOG", "eddy=info,warn");
        Self::spawn(cmd, env, "controller".into())
    }

    /// `eddy up` with its own private Redis on `redis_port`, the gateway on
    /// `listen`, admin key `admin`, callbacks to 127.0.0.1 allowed.
    pub fn up(data_dir: &Path, listen: u16, redis_port: u16, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin_dir().join("eddy"));
        cmd.arg("up")
            .env_remove("REDIS_URL")
            .env("EDDY_DATA_DIR", data_dir)
            .env("EDDY_CACHE_DIR", data_dir.join("artifacts"))
            .env("EDDY_LISTEN", format!("127.0.0.1:{listen}"))
            .env("EDDY_REDIS_PORT", redis_port.to_string())
            .env("EDDY_ADMIN_KEY", "admin-secret")
            .env("EDDY_CALLBACK_ALLOWLIST", "127.0.0.1")
            .env("EDDY_LOG", "warn");
        let up = Self::spawn(cmd, env, "up".into());
        wait_for(Duration::from_secs(30), "eddy up to serve /healthz", || {
            std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok()
        });
        up
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        signal(&c, libc::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                signal(&c, libc::SIGKILL);
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EddyProcess {
    fn drop(&mut self) {
        // `eddy up` owns a redis-server child that only a graceful stop
        // takes down with it; everything else just dies.
        if self.name == "up" {
            self.terminate(Duration::from_secs(10));
        }
        self.kill();
    }
}

/// Polls `check` until it holds, or panics after `timeout` naming `what`.
pub fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The async twin of [`wait_for`], returning the last value seen.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

pub fn function(name: &str) -> FunctionName {
    FunctionName::new(name).unwrap()
}

/// Connects a queue client that retries through Redis restarts.
pub async fn queue(redis: &RedisServer) -> Queue {
    Queue::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap()
}

/// Deploys guest `guest` as `name` for `tenant`.
pub async fn deploy(
    q: &Queue,
    tenant: &TenantId,
    name: &str,
    guest: &str,
    config: FunctionConfig,
) -> u32 {
    let bytes = wasm(guest);
    let sha = eddy_runtime::sha256_hex(&bytes);
    q.deploy(tenant, &function(name), &bytes, &sha, config)
        .await
        .unwrap()
        .version
}

/// Enqueues a root invocation of `name` with a JSON payload; returns its id.
pub async fn invoke(q: &Queue, tenant: &TenantId, name: &str, payload: &str) -> String {
    let spec = q
        .function(tenant, &function(name), None)
        .await
        .unwrap()
        .unwrap();
    let mut env = Envelope::root(tenant.clone(), function(name), "application/json".into());
    env.version = Some(spec.version);
    q.enqueue(&env, payload.as_bytes(), spec.config.run, None)
        .await
        .unwrap()
        .id
}

/// Waits until run `id` is no longer running and returns it.
pub async fn finished_run(q: &Queue, tenant: &TenantId, id: &str, timeout: Duration) -> RunRecord {
    wait_until(timeout, &format!("run {id} to finish"), || async {
        match q.run(tenant, id).await {
            Ok(Some(r)) if r.status != eddy_protocol::RunStatus::Running => Some(r),
            _ => None,
        }
    })
    .await
}
