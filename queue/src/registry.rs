//! The function registry: content-addressed modules, immutable versions, the
//! current-version pointer, and the tenant index.

use eddy_protocol::{FunctionConfig, FunctionName, FunctionSpec, TenantId, keys};
use redis::AsyncCommands;

use crate::{Error, Queue, Result};

fn parse_spec(json: &str) -> Result<FunctionSpec> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("function spec: {e}")))
}

impl Queue {
    /// Stores a new immutable version of `name` and makes it current. Creates
    /// the function's stream and consumer group. Module bytes are stored once
    /// per sha256, whoever deploys them.
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
        let fkey = keys::function(tenant, name);
        let _: bool = conn.set_nx(keys::module(sha256), module).await?;
        let version: u32 = conn.hincr(&fkey, "latest", 1).await?;
        let spec = FunctionSpec {
            tenant: tenant.clone(),
            name: name.clone(),
            version,
            sha256: sha256.to_string(),
            module_bytes: module.len() as u64,
            config,
            created_at_ms: eddy_protocol::now_ms(),
        };
        let json = serde_json::to_string(&spec)
            .map_err(|e| Error::Corrupt(format!("encoding spec: {e}")))?;
        self.ensure_group(&keys::stream(tenant, name)).await?;
        redis::pipe()
            .atomic()
            .hset(&fkey, format!("v:{version}"), &json)
            .hset(&fkey, "current", version)
            .sadd(keys::functions(tenant), name.as_str())
            .sadd(keys::TENANTS, tenant.as_str())
            .exec_async(&mut conn)
            .await?;
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
        let version = match version {
            Some(v) => v,
            None => match conn.hget::<_, _, Option<u32>>(&fkey, "current").await? {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        let json: Option<String> = conn.hget(&fkey, format!("v:{version}")).await?;
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

    /// Module bytes by sha256.
    pub async fn module(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.conn().get(keys::module(sha256)).await?)
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
