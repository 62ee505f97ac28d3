//! The server roles: `eddy worker` and `eddy up` (every role in one process,
//! with a private `redis-server` child when no `REDIS_URL` is given).

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eddy_worker::{Worker, WorkerConfig};
use tokio::sync::watch;

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Redis to use, e.g. `redis://127.0.0.1:6379`.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Invocations running at once in this process.
    #[arg(long, env = "EDDY_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Lease of a delivery: after this long without a heartbeat another
    /// worker reclaims it.
    #[arg(long, env = "EDDY_LEASE_MS", default_value_t = 30_000)]
    lease_ms: u64,
    /// Deliveries after which an entry that never completes is dead-lettered.
    #[arg(long, env = "EDDY_MAX_DELIVERIES", default_value_t = 5)]
    max_deliveries: u64,
    /// Artifact cache directory.
    #[arg(long, env = "EDDY_CACHE_DIR", default_value = ".eddy/artifacts")]
    cache_dir: PathBuf,
    /// Consumer name (unique per process when absent).
    #[arg(long, env = "EDDY_CONSUMER")]
    consumer: Option<String>,
    /// How long invocation and run records are kept, in seconds.
    #[arg(long, env = "EDDY_RECORD_TTL_S", default_value_t = 86_400)]
    record_ttl_s: u64,
}

impl WorkerArgs {
    fn config(&self, redis_url: String) -> WorkerConfig {
        WorkerConfig {
            redis_url,
            concurrency: self.concurrency,
            lease: Duration::from_millis(self.lease_ms),
            max_deliveries: self.max_deliveries,
            cache_dir: self.cache_dir.clone(),
            max_instances: (self.concurrency as u32).max(16) * 2,
            consumer: self.consumer.clone(),
            record_ttl: Duration::from_secs(self.record_ttl_s),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Where `eddy up` keeps its private Redis data (AOF).
    #[arg(long, env = "EDDY_DATA_DIR", default_value = ".eddy")]
    data_dir: PathBuf,
    /// Port of the private Redis (a free one when absent).
    #[arg(long, env = "EDDY_REDIS_PORT")]
    redis_port: Option<u16>,
}

/// A watch that turns true on SIGTERM or SIGINT.
fn shutdown_signal() -> Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let Some(url) = args.redis_url.clone() else {
        bail!("set REDIS_URL (or --redis-url); `eddy up` starts a private Redis instead");
    };
    tokio_runtime()?.block_on(async {
        let shutdown = shutdown_signal()?;
        let worker = Worker::start(args.config(url))
            .await
            .context("starting the worker")?;
        worker.run(shutdown).await.context("running the worker")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// A `redis-server` child that is stopped (and flushes its AOF) on drop.
struct RedisChild {
    child: Child,
    url: String,
}

impl RedisChild {
    fn start(data_dir: &std::path::Path, port: Option<u16>) -> Result<Self> {
        let dir = data_dir.join("redis");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .context("finding a free port for redis")?,
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .args(["--logfile", "redis.log"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? `make setup` installs it)")?;
        let url = format!("redis://127.0.0.1:{port}");
        let redis = RedisChild { child, url };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("redis-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        // SIGTERM: redis finishes its AOF write and exits.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub fn up(args: UpArgs) -> Result<ExitCode> {
    let redis = match &args.worker.redis_url {
        Some(_) => None,
        None => Some(RedisChild::start(&args.data_dir, args.redis_port)?),
    };
    let url = match (&redis, &args.worker.redis_url) {
        (Some(r), _) => r.url.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => bail!("no redis"),
    };
    eprintln!("eddy up: redis at {url}");
    let result = tokio_runtime()?.block_on(async {
        let shutdown = shutdown_signal()?;
        let worker = Worker::start(args.worker.config(url))
            .await
            .context("starting the worker")?;
        eprintln!(
            "eddy up: worker {} running; Ctrl-C drains and stops",
            worker.consumer()
        );
        worker.run(shutdown).await.context("running the worker")?;
        anyhow::Ok(ExitCode::SUCCESS)
    });
    drop(redis);
    result
}
