//! Variables and secrets in Redis: one hash per tenant and one per function
//! (name → `variables::Stored` form), counted in the tenant's stored bytes.
//! Secrets arrive here sealed; this crate never sees their plaintext except
//! while resealing.

use std::collections::HashMap;

use eddy_protocol::keys;
use eddy_protocol::variables::{Keyring, MAX_PER_SCOPE, Resealed, Scope, Stored};
use eddy_protocol::{FunctionName, TenantId};
use redis::AsyncCommands;

use crate::scripts::{DELETE_VARIABLE, RESEAL_VARIABLE, SET_VARIABLE};
use crate::{Error, Queue, Result};

fn hash(tenant: &TenantId, scope: Scope<'_>) -> String {
    match scope {
        Scope::Tenant => keys::variables(tenant),
        Scope::Function(f) => keys::function_variables(tenant, f),
    }
}

fn decode(all: HashMap<String, String>) -> Result<Vec<(String, Stored)>> {
    let mut out = Vec::with_capacity(all.len());
    for (name, stored) in all {
        let stored = Stored::parse(&stored)
            .ok_or_else(|| Error::Corrupt(format!("variable `{name}` has no known form")))?;
        out.push((name, stored));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A function's variables as stored (secrets sealed).
#[derive(Debug, Clone, Default)]
pub struct FunctionVariables {
    /// [`Queue::variables_version`] when they were read.
    pub version: u64,
    /// The tenant's.
    pub shared: Vec<(String, Stored)>,
    /// The function's own.
    pub own: Vec<(String, Stored)>,
}

impl Queue {
    /// Sets `name` in `scope`. `Ok(true)` when it is new. A function's
    /// variable needs the function (`Error::NoFunction`); a scope holds at
    /// most [`MAX_PER_SCOPE`] (`Error::TooManyVariables`); the bytes count
    /// in the tenant's stored bytes (`Error::StorageQuota`).
    pub async fn set_variable(
        &self,
        tenant: &TenantId,
        scope: Scope<'_>,
        name: &str,
        stored: &Stored,
    ) -> Result<bool> {
        let function_key = match scope {
            Scope::Tenant => keys::tenant(tenant),
            Scope::Function(f) => keys::function(tenant, f),
        };
        let reply: Vec<String> = SET_VARIABLE
            .key(hash(tenant, scope))
            .key(keys::tenant(tenant))
            .key(keys::stored(tenant))
            .key(function_key)
            .arg(name)
            .arg(stored.encode())
            .arg(MAX_PER_SCOPE)
            .arg(eddy_protocol::now_ms())
            .arg(self.ttl_secs())
            .arg(matches!(scope, Scope::Function(_)) as u8)
            .invoke_async(&mut self.conn())
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(reply.get(1).map(String::as_str) == Some("1")),
            Some("no_function") => Err(Error::NoFunction(match scope {
                Scope::Function(f) => f.to_string(),
                Scope::Tenant => String::new(),
            })),
            Some("full") => Err(Error::TooManyVariables(MAX_PER_SCOPE)),
            Some("quota") => Err(crate::invocations::quota_refusal(&reply)),
            other => Err(Error::Corrupt(format!(
                "set_variable script replied {other:?}"
            ))),
        }
    }

    /// Deletes `name` from `scope`; false when it was not there.
    pub async fn delete_variable(
        &self,
        tenant: &TenantId,
        scope: Scope<'_>,
        name: &str,
    ) -> Result<bool> {
        let n: i64 = DELETE_VARIABLE
            .key(hash(tenant, scope))
            .key(keys::tenant(tenant))
            .arg(name)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// The variables of one scope, by name.
    pub async fn variables(
        &self,
        tenant: &TenantId,
        scope: Scope<'_>,
    ) -> Result<Vec<(String, Stored)>> {
        let all: HashMap<String, String> = self.conn().hgetall(hash(tenant, scope)).await?;
        decode(all)
    }

    /// The version of a tenant's variables: every change to any of them
    /// (or to any of its functions') makes it another.
    pub async fn variables_version(&self, tenant: &TenantId) -> Result<u64> {
        let v: Option<u64> = self.conn().hget(keys::tenant(tenant), "vars_v").await?;
        Ok(v.unwrap_or(0))
    }

    /// What a function's guest sees, in one round trip: the version, the
    /// tenant's variables and the function's own (which override them by
    /// name). Read in that order, so what is read is at least as new as the
    /// version.
    pub async fn function_variables(
        &self,
        tenant: &TenantId,
        function: &FunctionName,
    ) -> Result<FunctionVariables> {
        let (version, shared, own): (
            Option<u64>,
            HashMap<String, String>,
            HashMap<String, String>,
        ) = redis::pipe()
            .hget(keys::tenant(tenant), "vars_v")
            .hgetall(keys::variables(tenant))
            .hgetall(keys::function_variables(tenant, function))
            .query_async(&mut self.conn())
            .await?;
        Ok(FunctionVariables {
            version: version.unwrap_or(0),
            shared: decode(shared)?,
            own: decode(own)?,
        })
    }

    /// Seals every secret of every tenant that is not under `keyring`'s
    /// current key again with it (the step between adding a new key first
    /// and dropping the old one). A secret set meanwhile is left to its
    /// setter.
    pub async fn reseal_secrets(&self, keyring: &Keyring) -> Result<Resealed> {
        let mut done = Resealed::default();
        for tenant in self.tenants().await? {
            let functions = self.function_names(&tenant).await?;
            let scopes =
                std::iter::once(Scope::Tenant).chain(functions.iter().map(Scope::Function));
            for scope in scopes {
                for (name, stored) in self.variables(&tenant, scope).await? {
                    let Stored::Sealed { key_id, data } = &stored else {
                        continue;
                    };
                    if key_id == keyring.current() {
                        done.current += 1;
                        continue;
                    }
                    let plain = match keyring.open(&tenant, scope, &name, key_id, data) {
                        Ok(plain) => plain,
                        Err(e) => {
                            tracing::warn!(%tenant, ?scope, name, "secret not resealed: {e}");
                            done.unopenable += 1;
                            continue;
                        }
                    };
                    let sealed = keyring
                        .seal(&tenant, scope, &name, &plain)
                        .map_err(Error::Corrupt)?;
                    let replaced: i64 = RESEAL_VARIABLE
                        .key(hash(&tenant, scope))
                        .key(keys::tenant(&tenant))
                        .arg(&name)
                        .arg(stored.encode())
                        .arg(sealed.encode())
                        .invoke_async(&mut self.conn())
                        .await?;
                    if replaced == 1 {
                        done.resealed += 1;
                    }
                }
            }
        }
        Ok(done)
    }
}
