//! The function registry: content-addressed modules, immutable versions, the
//! current-version pointer, and the tenant index.

use eddy_protocol::{FunctionConfig, FunctionName, FunctionSpec, TenantId, keys};
use redis::AsyncCommands;

use crate::scripts::{DELETE_FUNCTION, DEPLOY, PUT_ARTIFACT};
use crate::{Backlog, Error, FunctionVersions, Queue, Result};

/// The function hash's copy of the current version's spec, written with the
/// `current` pointer: a gateway that has no cached spec reads it with one
/// HMGET.
const SPEC_FIELD: &str = "spec";
/// How long a shared artifact stays after it was last stored: a cold
/// worker after that compiles (and shares) it again.
const ARTIFACT_TTL_S: i64 = 7 * 24 * 3600;
/// Most chunks of a shared artifact (an artifact of a module at the largest
/// admitted size fits).
const MAX_ARTIFACT_CHUNKS: usize = 64;

/// Artifact bytes per hash field of a shared artifact (before compression).
pub const ARTIFACT_CHUNK: usize = 4 << 20;

/// A compiled artifact ready to share: its engine key, its pieces (each
/// [`ARTIFACT_CHUNK`] bytes of it, LZ4-compressed with the size first) and
/// their signature by the operator's keys (`Keyring::sign_artifact`).
#[derive(Debug)]
pub struct SharedArtifact {
    pub engine: String,
    pub signature: Vec<u8>,
    pub chunks: Vec<Vec<u8>>,
}

impl SharedArtifact {
    /// Compresses and signs `bytes`, the artifact of module `sha256` for
    /// `engine`.
    pub fn sign(
        keys: &eddy_protocol::variables::Keyring,
        sha256: &str,
        engine: String,
        bytes: &[u8],
    ) -> Self {
        let chunks: Vec<Vec<u8>> = bytes
            .chunks(ARTIFACT_CHUNK)
            .map(lz4_flex::compress_prepend_size)
            .collect();
        let pieces: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let signature = keys.sign_artifact(sha256, &engine, &pieces);
        SharedArtifact {
            engine,
            signature,
            chunks,
        }
    }
}

/// The artifact in `chunks` (verified first: see `Keyring::verify_artifact`),
/// decompressed into one buffer on every core.
pub fn unpack_artifact(chunks: &[Vec<u8>]) -> std::result::Result<Vec<u8>, String> {
    let mut sizes = Vec::with_capacity(chunks.len());
    for c in chunks {
        let n: [u8; 4] = c
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or("a piece is shorter than its size")?;
        let n = u32::from_le_bytes(n) as usize;
        if n > ARTIFACT_CHUNK {
            return Err(format!(
                "a piece says {n} bytes, more than {ARTIFACT_CHUNK}"
            ));
        }
        sizes.push(n);
    }
    let mut out = vec![0u8; sizes.iter().sum()];
    let mut slices = Vec::with_capacity(chunks.len());
    let mut rest = out.as_mut_slice();
    for &n in &sizes {
        let (head, tail) = rest.split_at_mut(n);
        slices.push(head);
        rest = tail;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len().max(1));
    let per = chunks.len().div_ceil(threads).max(1);
    let mut jobs: Vec<Vec<(&Vec<u8>, &mut [u8])>> = Vec::new();
    for (i, pair) in chunks.iter().zip(slices).enumerate() {
        if i % per == 0 {
            jobs.push(Vec::new());
        }
        if let Some(job) = jobs.last_mut() {
            job.push(pair);
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                s.spawn(move || {
                    for (chunk, into) in job {
                        let want = into.len();
                        let got = lz4_flex::decompress_into(&chunk[4..], into)
                            .map_err(|e| format!("decompressing a piece: {e}"))?;
                        if got != want {
                            return Err(format!("a piece held {got} bytes, not {want}"));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err("a decompressing thread panicked".into()))
        })
    })?;
    Ok(out)
}

/// The spec JSON of a function's current version, or nil (for a function
/// deployed before the `spec` copy existed).
static CURRENT_SPEC: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local v = redis.call('HGET', KEYS[1], 'current') \
         if not v then return false end \
         return redis.call('HGET', KEYS[1], 'v:' .. v)",
    )
});

fn parse_spec(json: &str) -> Result<FunctionSpec> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("function spec: {e}")))
}

impl Queue {
    /// Tells gateways that a function's current spec changed (they cache it:
    /// see the gateway's `specs.rs`). The change has happened either way;
    /// without the message, caches let go of the old spec within their TTL.
    async fn announce_change(&self, tenant: &TenantId, name: &FunctionName) {
        let msg = eddy_protocol::messages::FunctionChanged {
            tenant: tenant.clone(),
            function: name.clone(),
        };
        if let Err(error) = self.publish(&msg).await {
            tracing::warn!(%error, %tenant, function = %name, "announcing a function change; gateway caches expire it within 1 s");
        }
    }

    /// Stores a new immutable version of `name` and makes it current. Creates
    /// the function's stream and consumer group. Module bytes are stored once
    /// per tenant and sha256, counted in the tenant's stored bytes:
    /// `Error::StorageQuota` when a new module does not fit.
    ///
    /// The caller validates the module first (the gateway and `eddy` do).
    pub async fn deploy(
        &self,
        tenant: &TenantId,
        name: &FunctionName,
        module: &[u8],
        sha256: &str,
        config: FunctionConfig,
    ) -> Result<FunctionSpec> {
        let mut conn = self.conn();
        let mut spec = FunctionSpec {
            tenant: tenant.clone(),
            name: name.clone(),
            // The script numbers the version (see `lua/deploy.lua`).
            version: u32::MAX,
            sha256: sha256.to_string(),
            module_bytes: module.len() as u64,
            config,
            created_at_ms: eddy_protocol::now_ms(),
        };
        let json = serde_json::to_string(&spec)
            .map_err(|e| Error::Corrupt(format!("encoding spec: {e}")))?;
        self.ensure_group(&keys::stream(tenant, name)).await?;
        // The tenant registry first (a global key, another slot on a
        // cluster; listing a tenant early is harmless), then the function
        // atomically on the tenant's slot.
        let _: () = conn.sadd(keys::TENANTS, tenant.as_str()).await?;
        let reply: Vec<String> = DEPLOY
            .key(keys::module(tenant, sha256))
            .key(keys::module_refs(tenant))
            .key(keys::function(tenant, name))
            .key(keys::functions(tenant))
            .key(keys::tenant(tenant))
            .key(keys::stored(tenant))
            .arg(module)
            .arg(sha256)
            .arg(&json)
            .arg(name.as_str())
            .arg(spec.created_at_ms)
            .arg(self.ttl_secs())
            .invoke_async(&mut conn)
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {}
            Some("quota") => return Err(crate::invocations::quota_refusal(&reply)),
            other => return Err(Error::Corrupt(format!("deploy script replied {other:?}"))),
        }
        spec.version = reply
            .get(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Corrupt(format!("deploy script replied {reply:?}")))?;
        // A deploy is activity: a worker without a controller reads only
        // streams marked active.
        self.mark_active(&[(keys::stream(tenant, name), spec.created_at_ms)])
            .await?;
        self.announce_change(tenant, name).await;
        Ok(spec)
    }

    /// Creates `stream` and its consumer group if missing.
    pub async fn ensure_group(&self, stream: &str) -> Result<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(keys::GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The spec of `version`, or of the current version when `None`.
    pub async fn function(
        &self,
        tenant: &TenantId,
        name: &FunctionName,
        version: Option<u32>,
    ) -> Result<Option<FunctionSpec>> {
        let mut conn = self.conn();
        let fkey = keys::function(tenant, name);
        // The current version in one HMGET (the gateway asks on every
        // invocation): deploy and rollback keep a copy of its spec beside
        // the pointer. Without a copy that matches the pointer, the pointer
        // and the version are read in one script.
        if let Some(v) = version {
            let json: Option<String> = conn.hget(&fkey, format!("v:{v}")).await?;
            return json.as_deref().map(parse_spec).transpose();
        }
        let (current, copy): (Option<u32>, Option<String>) = redis::cmd("HMGET")
            .arg(&fkey)
            .arg("current")
            .arg(SPEC_FIELD)
            .query_async(&mut conn)
            .await?;
        if let Some(spec) = copy.as_deref().map(parse_spec).transpose()?
            && Some(spec.version) == current
        {
            return Ok(Some(spec));
        }
        // No copy, or a stale one (a binary without it moved the pointer).
        let json: Option<String> = CURRENT_SPEC.key(&fkey).invoke_async(&mut conn).await?;
        json.as_deref().map(parse_spec).transpose()
    }

    /// The current version number of `name`.
    pub async fn current_version(
        &self,
        tenant: &TenantId,
        name: &FunctionName,
    ) -> Result<Option<u32>> {
        Ok(self
            .conn()
            .hget(keys::function(tenant, name), "current")
            .await?)
    }

    /// A tenant's module bytes by sha256.
    pub async fn module(&self, tenant: &TenantId, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.conn().get(keys::module(tenant, sha256)).await?)
    }

    /// Shares a signed compiled artifact of a tenant's module (see
    /// [`keys::artifact`]): one hash field holds the signature, one field
    /// per piece. Only while the module exists; one already there stays
    /// unless `replace` (a worker whose check of it failed). Whether it
    /// was stored.
    pub async fn put_artifact(
        &self,
        tenant: &TenantId,
        sha256: &str,
        artifact: &SharedArtifact,
        replace: bool,
    ) -> Result<bool> {
        if artifact.chunks.is_empty() || artifact.chunks.len() > MAX_ARTIFACT_CHUNKS {
            return Ok(false);
        }
        let mut script = PUT_ARTIFACT.prepare_invoke();
        script
            .key(keys::artifact(tenant, sha256))
            .key(keys::module(tenant, sha256))
            .arg(&artifact.engine)
            .arg(ARTIFACT_TTL_S)
            .arg(if replace { "1" } else { "0" })
            .arg(&artifact.signature);
        for chunk in &artifact.chunks {
            script.arg(chunk.as_slice());
        }
        let stored: i64 = script.invoke_async(&mut self.conn()).await?;
        Ok(stored == 1)
    }

    /// The signature and chunks of a tenant's module's artifact for engine
    /// `engine`, if one was shared (unchecked: see
    /// `Keyring::verify_artifact`).
    pub async fn artifact(
        &self,
        tenant: &TenantId,
        sha256: &str,
        engine: &str,
    ) -> Result<Option<(Vec<u8>, Vec<Vec<u8>>)>> {
        let key = keys::artifact(tenant, sha256);
        let signature: Option<Vec<u8>> = self.conn().hget(&key, engine).await?;
        let Some(signature) = signature else {
            return Ok(None);
        };
        let n = match eddy_protocol::variables::Keyring::artifact_chunks(&signature) {
            Some(n) if (1..=MAX_ARTIFACT_CHUNKS).contains(&n) => n,
            _ => return Ok(None),
        };
        // Sizes before bytes: nothing larger than a compressed piece can be
        // is read (the signature is checked only after the read).
        let mut sizes = redis::pipe();
        for i in 0..n {
            sizes.cmd("HSTRLEN").arg(&key).arg(format!("{engine}.{i}"));
        }
        let sizes: Vec<usize> = sizes.query_async(&mut self.conn()).await?;
        let most = lz4_flex::block::get_maximum_output_size(ARTIFACT_CHUNK) + 4;
        if sizes.iter().any(|&s| s == 0 || s > most) {
            return Ok(None);
        }
        // Pieces in one pipelined reply: several times faster to read than
        // one value of the same size.
        let mut pipe = redis::pipe();
        for i in 0..n {
            pipe.hget(&key, format!("{engine}.{i}"));
        }
        let chunks: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.conn()).await?;
        Ok(chunks
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .map(|chunks| (signature, chunks)))
    }

    /// All tenants that ever deployed.
    pub async fn tenants(&self) -> Result<Vec<TenantId>> {
        let names: Vec<String> = self.conn().smembers(keys::TENANTS).await?;
        Ok(names
            .into_iter()
            .filter_map(|n| TenantId::new(n).ok())
            .collect())
    }

    /// A tenant's function names.
    pub async fn function_names(&self, tenant: &TenantId) -> Result<Vec<FunctionName>> {
        let names: Vec<String> = self.conn().smembers(keys::functions(tenant)).await?;
        let mut names: Vec<FunctionName> = names
            .into_iter()
            .filter_map(|n| FunctionName::new(n).ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

impl Queue {
    /// Every version of `name` and which one is current.
    pub async fn versions(
        &self,
        tenant: &TenantId,
        name: &FunctionName,
    ) -> Result<Option<FunctionVersions>> {
        let map: std::collections::HashMap<String, String> =
            self.conn().hgetall(keys::function(tenant, name)).await?;
        if map.is_empty() {
            return Ok(None);
        }
        let mut versions = Vec::new();
        for (k, v) in &map {
            if k.starts_with("v:") {
                versions.push(parse_spec(v)?);
            }
        }
        versions.sort_by_key(|s| s.version);
        Ok(Some(FunctionVersions {
            current: map.get("current").and_then(|c| c.parse().ok()),
            versions,
        }))
    }

    /// Makes `version` current. False if there is no such version.
    pub async fn set_current(
        &self,
        tenant: &TenantId,
        name: &FunctionName,
        version: u32,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let fkey = keys::function(tenant, name);
        let Some(json): Option<String> = conn.hget(&fkey, format!("v:{version}")).await? else {
            return Ok(false);
        };
        // The pointer and the copy of its spec change together.
        redis::pipe()
            .atomic()
            .hset(&fkey, "current", version)
            .hset(&fkey, SPEC_FIELD, &json)
            .exec_async(&mut conn)
            .await?;
        self.announce_change(tenant, name).await;
        Ok(true)
    }

    /// Lag and pending of a stream (0 when it does not exist).
    ///
    /// Redis's own `lag` is not trusted alone: after an AOF reload it can
    /// count entries that were read long ago. An entry is undelivered only if
    /// its id is past the group's last-delivered id, so when that equals the
    /// stream's last id the lag is 0; otherwise Redis's figure stands, or, when
    /// Redis cannot tell (nil, after trimming), XLEN − pending as an upper
    /// bound.
    pub async fn backlog(&self, stream: &str) -> Result<Backlog> {
        let mut conn = self.conn();
        let groups: redis::RedisResult<Vec<std::collections::HashMap<String, redis::Value>>> =
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(&mut conn)
                .await;
        let groups = match groups {
            Ok(g) => g,
            Err(e) if e.code() == Some("ERR") => return Ok(Backlog::default()),
            Err(e) => return Err(e.into()),
        };
        let text = |g: &std::collections::HashMap<String, redis::Value>, k: &str| {
            g.get(k)
                .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        };
        let Some(g) = groups
            .iter()
            .find(|g| text(g, "name").as_deref() == Some(keys::GROUP))
        else {
            return Ok(Backlog::default());
        };
        let int = |k: &str| {
            g.get(k)
                .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
                .map(|n| n.max(0) as u64)
        };
        let pending = int("pending").unwrap_or(0);
        let delivered = text(g, "last-delivered-id").unwrap_or_else(|| "0-0".into());
        let last: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let lag = match last.first() {
            None => 0,
            Some((id, _)) if *id == delivered => 0,
            Some(_) => match int("lag") {
                Some(lag) => lag,
                None => {
                    // Redis cannot tell after deletions (trimming). XLEN minus
                    // pending is an upper bound that costs O(1): it also
                    // counts acknowledged entries not trimmed yet (at most
                    // one trim interval's worth). Counting the entries past
                    // the group's cursor would cost O(backlog) per call.
                    let len: u64 = redis::cmd("XLEN")
                        .arg(stream)
                        .query_async(&mut conn)
                        .await?;
                    len.saturating_sub(pending)
                }
            },
        };
        Ok(Backlog { lag, pending })
    }

    /// Deletes a function whose stream is empty: its versions, its stream.
    /// Returns the backlog instead when work is still queued or running
    /// (deleting it would lose accepted invocations).
    pub async fn delete_function(
        &self,
        tenant: &TenantId,
        name: &FunctionName,
    ) -> Result<Result<bool, Backlog>> {
        let stream = keys::stream(tenant, name);
        let backlog = self.backlog(&stream).await?;
        if backlog.lag > 0 || backlog.pending > 0 {
            return Ok(Err(backlog));
        }
        // The versions' modules, then the delete, which frees the modules no
        // other version uses; again if a deploy added a version meanwhile.
        let (removed, freed) = loop {
            let versions = self
                .versions(tenant, name)
                .await?
                .map(|v| v.versions)
                .unwrap_or_default();
            let mut script = DELETE_FUNCTION.prepare_invoke();
            script
                .key(keys::function(tenant, name))
                .key(keys::functions(tenant))
                .key(&stream)
                .key(keys::module_refs(tenant))
                .key(keys::tenant(tenant))
                .key(keys::function_variables(tenant, name))
                .arg(name.as_str());
            for v in &versions {
                script
                    .key(keys::module(tenant, &v.sha256))
                    .arg(v.version)
                    .arg(&v.sha256);
            }
            let reply: Vec<String> = script.invoke_async(&mut self.conn()).await?;
            if reply.first().map(String::as_str) != Some("changed") {
                break (
                    reply.first().map(String::as_str) == Some("1"),
                    reply[1..].to_vec(),
                );
            }
        };
        if !freed.is_empty() {
            // The shared artifacts go with their modules (on the tenant's
            // slot, so one command).
            let artifacts: Vec<String> = freed
                .iter()
                .map(|sha| keys::artifact(tenant, sha))
                .collect();
            if let Err(error) = self.conn().del::<_, ()>(&artifacts).await {
                tracing::warn!(%error, "deleting freed modules' artifacts");
            }
            // Workers drop these modules' compiled artifacts. A worker that
            // misses the message keeps them until its cache is cleared.
            let msg = eddy_protocol::messages::ModulesFreed {
                tenant: tenant.clone(),
                shas: freed,
            };
            if let Err(error) = self.publish(&msg).await {
                tracing::warn!(%error, "announcing freed modules");
            }
        }
        // Out of the activity marks too: nothing reads or probes it again
        // (another slot on a cluster, so a command of its own).
        let _: i64 = self.conn().zrem(keys::ACTIVE, &stream).await?;
        self.announce_change(tenant, name).await;
        Ok(Ok(removed))
    }
}
