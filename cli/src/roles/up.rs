//! `eddy up`: every role in one process, with a private `redis-server`
//! child when no `REDIS_URL` is given (the local environment runs what
//! production runs, in one command).

use super::*;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    controller: ControllerArgs,
    /// Where `eddy up` keeps its private Redis data (AOF).
    #[arg(long, env = "EDDY_DATA_DIR", default_value = ".eddy")]
    data_dir: PathBuf,
    /// Port of the private Redis (a free one when absent).
    #[arg(long, env = "EDDY_REDIS_PORT")]
    redis_port: Option<u16>,
}

/// `eddy up`'s private `redis-server`: bound to loopback, with a password
/// generated once and kept in `<data dir>/redis-password` (mode 0600; the
/// server reads it from a config file of the same mode, never from its
/// command line, which every local user can read), restarted from its AOF
/// if it exits, and stopped (its AOF flushed) on drop. It also dies with
/// `eddy up` killed without a chance to stop it (see [`spawn_redis`]).
struct RedisChild {
    child: Arc<parking_lot::Mutex<Child>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    url: String,
    /// `url` without the password, for messages.
    shown: String,
}

/// Starts `redis-server` with the config file `conf` in `dir`, under a
/// shell that stops it when its stdin (a pipe from this process) closes:
/// when `eddy up` exits, however it exits (SIGKILL included), the kernel
/// closes the pipe. The shell exits when the server does.
fn spawn_redis(dir: &std::path::Path, conf: &std::path::Path) -> Result<Child> {
    Command::new("sh")
        .args([
            "-c",
            // An asynchronous list's stdin is /dev/null: the pipe is read
            // through fd 3.
            r#"exec 3<&0; redis-server "$1" 3<&- & r=$!; (read _ <&3; kill -TERM "$r") & wait "$r""#,
            "eddy-redis",
        ])
        .arg(conf)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting redis-server (is it installed? `make setup` installs it)")
}

impl RedisChild {
    fn start(data_dir: &std::path::Path, port: Option<u16>) -> Result<Self> {
        let dir = data_dir.join("redis");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Absolute: the server runs in `dir` and is given its config file's
        // path, which a relative data dir (the default, `.eddy`) would make
        // wrong from there.
        let dir =
            std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))?;
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .context("finding a free port for redis")?,
        };
        let pw_path = data_dir.join("redis-password");
        let password = match std::fs::read_to_string(&pw_path) {
            Ok(p) => p.trim().to_string(),
            Err(_) => {
                let p = eddy_queue::random_hex(24);
                write_secret(&pw_path, &p)?;
                p
            }
        };
        let conf = dir.join("redis.conf");
        let _ = std::fs::remove_file(&conf);
        let settings = [
            format!("bind 127.0.0.1\nport {port}\n"),
            format!("requirepass {password}\n"),
            "dir .\nappendonly yes\nappendfsync everysec\nsave \"\"\nlogfile redis.log\n".into(),
            // Records keep their outcome and output in the hash: with values
            // up to 1 KiB it stays a listpack (Redis's default is 64 bytes,
            // past which it becomes a hashtable): 43% less memory per
            // finished invocation and cheaper writes (bench/RESULTS.md). The
            // `ziplist` name is the one Redis 6.2 knows too.
            "hash-max-ziplist-value 1024\n".into(),
            // Every invocation appends about 1.5 KB to the AOF; Redis's
            // default rewrites it from 64 MB on, which a burst reaches in
            // seconds, and each rewrite forks the server (a pause, then
            // copy-on-write faults and a child competing for the CPU) again
            // and again under load. Rewrite from 1 GiB, when it doubled.
            "auto-aof-rewrite-min-size 1gb\n".into(),
        ];
        write_secret(&conf, &settings.concat())?;
        let child = Arc::new(parking_lot::Mutex::new(spawn_redis(&dir, &conf)?));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let redis = RedisChild {
            child: child.clone(),
            stopping: stopping.clone(),
            url: format!("redis://:{password}@127.0.0.1:{port}"),
            shown: format!(
                "redis://127.0.0.1:{port} (password in {})",
                pw_path.display()
            ),
        };
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
        // The supervisor: a server that exits is started again, from its
        // AOF (the queue's connections reconnect by themselves).
        std::thread::Builder::new()
            .name("eddy-redis".into())
            .spawn(move || {
                let mut wait = Duration::from_millis(100);
                while !stopping.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(100));
                    let mut c = child.lock();
                    let Ok(Some(status)) = c.try_wait() else {
                        wait = Duration::from_millis(100);
                        continue;
                    };
                    if stopping.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    eprintln!("eddy up: redis-server exited ({status}); starting it again");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                    match spawn_redis(&dir, &conf) {
                        Ok(new) => *c = new,
                        Err(error) => eprintln!("eddy up: {error:#}"),
                    }
                }
            })
            .context("starting the redis supervisor")?;
        Ok(redis)
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        let mut c = self.child.lock();
        // Closing the pipe SIGTERMs the server: it finishes its AOF write
        // and exits, and so does its shell.
        drop(c.stdin.take());
        let _ = c.wait();
    }
}

/// The admin key of `eddy up`: `EDDY_ADMIN_KEY`, or one generated once and
/// kept in `<data dir>/admin-key` (mode 0600).
fn admin_key(args: &UpArgs) -> Result<String> {
    if let Some(k) = &args.gateway.admin_key {
        return Ok(k.clone());
    }
    let path = args.data_dir.join("admin-key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Ok(k.trim().to_string());
    }
    let key = format!("eddy_admin_{}", eddy_queue::random_hex(24));
    std::fs::create_dir_all(&args.data_dir)?;
    write_secret(&path, &key)?;
    eprintln!("eddy up: admin key written to {}", path.display());
    Ok(key)
}

/// The secrets keys of `eddy up`: `EDDY_SECRETS_KEYS`, or one key generated
/// once and kept in `<data dir>/secrets-keys` (mode 0600), so that a local
/// platform takes secrets as a production one does.
fn secrets_keys(args: &UpArgs) -> Result<String> {
    let given = &args.worker.common.secrets_keys.0;
    if !given.trim().is_empty() {
        return Ok(given.clone());
    }
    let path = args.data_dir.join("secrets-keys");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Ok(k.trim().to_string());
    }
    let keys = eddy_protocol::variables::Keyring::generate("local").map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.data_dir)?;
    write_secret(&path, &keys)?;
    Ok(keys)
}

/// Writes a secret to a new file created with mode 0600: it is never
/// readable by others, not even for a moment.
fn write_secret(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn up(mut args: UpArgs) -> Result<ExitCode> {
    args.worker.common.labels.apply();
    let process = &args.worker.common.process;
    let given = process.given();
    let redis = match &given {
        Some(_) => None,
        None => Some(RedisChild::start(&args.data_dir, args.redis_port)?),
    };
    let url = match (&redis, &given) {
        (Some(r), _) => r.url.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => bail!("no redis"),
    };
    match &redis {
        Some(r) => eprintln!("eddy up: redis at {}", r.shown),
        None => eprintln!("eddy up: redis at {url}"),
    }
    let admin_key = admin_key(&args)?;
    args.worker.common.secrets_keys = super::Hidden(secrets_keys(&args)?);
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(process.threads())
        .thread_name("eddy-gateway")
        .enable_all()
        .build()
        .context("starting the gateway's tokio runtime")?;
    let result =
        worker_runtime(process.threads(), args.worker.common.sync_first())?.block_on(async {
            let shutdown = shutdown_signal()?;
            let worker = Worker::start(args.worker.config(url.clone())?)
                .await
                .context("starting the worker")?;
            let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
            let url_for_controller = url.clone();
            let controller_key = Some(admin_key.clone());
            let config = args
                .gateway
                .config(url, &args.worker.common, Some(admin_key), listen)?;
            // The gateway gets a runtime of its own, as it has a process of its
            // own in production: its requests do not queue behind the worker's
            // tasks on the same threads.
            let validator = validator(&args.worker.common)?;
            let mut gateway_stop = shutdown.clone();
            let (addr, gateway) = gateway_rt
                .spawn(async move {
                    let state = AppState::connect(config, validator, metrics())
                        .await
                        .context("connecting the gateway")?;
                    eddy_gateway::bind(state, async move {
                        let _ = gateway_stop.wait_for(|s| *s).await;
                    })
                    .await
                    .context("binding the gateway")
                })
                .await
                .context("gateway start")??;
            eprintln!("eddy up: gateway on http://{addr}");
            let controller_config = args.controller.config(
                url_for_controller.clone(),
                SocketAddr::from(([127, 0, 0, 1], 0)),
                controller_key,
                &args.worker.common.records,
            )?;
            let controller =
                tokio::spawn(eddy_controller::serve(controller_config, shutdown.clone()));
            eprintln!(
                "eddy up: worker {} running; Ctrl-C drains and stops",
                worker.consumer()
            );
            eprintln!("eddy up: ready");
            worker.run(shutdown).await.context("running the worker")?;
            gateway
                .await
                .context("gateway task")?
                .context("serving HTTP")?;
            controller
                .await
                .context("controller task")?
                .context("running the controller")?;
            anyhow::Ok(ExitCode::SUCCESS)
        });
    drop(redis);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_created_private_and_random() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-key");
        let key = eddy_queue::random_hex(24);
        assert_eq!(key.len(), 48);
        assert_ne!(key, eddy_queue::random_hex(24));
        write_secret(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
        // Never over an existing file (whose mode it would not set).
        assert!(write_secret(&path, "other").is_err());
    }
}
