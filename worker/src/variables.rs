//! The worker's [`VariableSource`]: a function's variables as its guest
//! first asks for them. The worker keeps what it read (secrets still
//! sealed) under the tenant's variables version, so a guest's read costs one
//! `HGET` while nothing changed, and the whole read once after a change.
//! Secrets are opened per invocation with the operator's keys; one that does
//! not open is an error for that name only.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use eddy_protocol::variables::{Keyring, Scope, Stored, Unopened, Variable};
use eddy_protocol::{FunctionName, TenantId};
use eddy_queue::{FunctionVariables, Queue};
use eddy_runtime::{Entry, VariableSource};
use parking_lot::Mutex;

/// Functions whose variables a worker keeps, and their bytes (names and
/// stored forms): past either, it starts over, so a tenant with many big
/// scopes costs the worker at most this much memory (and its neighbours at
/// most a full read each after the start-over).
const CACHED: usize = 4096;
const CACHED_BYTES: usize = 64 << 20;

/// What this worker read lately, by tenant and function.
#[derive(Debug, Default)]
pub(crate) struct Cache(Mutex<Cached>);

#[derive(Debug, Default)]
pub(crate) struct Cached {
    map: HashMap<(TenantId, FunctionName), Arc<FunctionVariables>>,
    bytes: usize,
}

fn size(v: &FunctionVariables) -> usize {
    v.shared
        .iter()
        .chain(&v.own)
        .map(|(name, stored)| name.len() + stored.encode().len())
        .sum()
}

#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) queue: Queue,
    pub(crate) keyring: Option<Arc<Keyring>>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) tenant: TenantId,
    pub(crate) function: FunctionName,
}

impl VariableSource for Source {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<Entry>, String>> + Send + 'static>> {
        let queue = self.queue.clone();
        let keyring = self.keyring.clone();
        let cache = self.cache.clone();
        let key = (self.tenant.clone(), self.function.clone());
        Box::pin(async move {
            let failed = |e: eddy_queue::Error| format!("reading them failed: {e}");
            let cached = cache.0.lock().map.get(&key).cloned();
            let vars = match cached {
                Some(c) if queue.variables_version(&key.0).await.map_err(failed)? == c.version => c,
                _ => {
                    let read = Arc::new(
                        queue
                            .function_variables(&key.0, &key.1)
                            .await
                            .map_err(failed)?,
                    );
                    let bytes = size(&read);
                    let mut c = cache.0.lock();
                    if c.map.len() >= CACHED || c.bytes + bytes > CACHED_BYTES {
                        c.map.clear();
                        c.bytes = 0;
                    }
                    if let Some(old) = c.map.insert(key.clone(), read.clone()) {
                        c.bytes -= size(&old);
                    }
                    c.bytes += bytes;
                    read
                }
            };
            let (tenant, function) = &key;
            let mut out: Vec<Entry> = Vec::with_capacity(vars.shared.len() + vars.own.len());
            let scopes = [
                (Scope::Tenant, &vars.shared),
                (Scope::Function(function), &vars.own),
            ];
            for (scope, list) in scopes {
                for (name, stored) in list {
                    let entry = open(keyring.as_deref(), tenant, scope, name, stored);
                    let same = |e: &Entry| match e {
                        Ok(v) => v.name == *name,
                        Err(u) => u.name == *name,
                    };
                    match out.iter_mut().find(|e| same(e)) {
                        Some(shared) => *shared = entry,
                        None => out.push(entry),
                    }
                }
            }
            Ok(out)
        })
    }
}

fn open(
    keyring: Option<&Keyring>,
    tenant: &TenantId,
    scope: Scope<'_>,
    name: &str,
    stored: &Stored,
) -> Entry {
    let unopened = |reason: String| Unopened {
        name: name.to_string(),
        reason,
    };
    match stored {
        Stored::Plain(value) => Ok(Variable {
            name: name.to_string(),
            value: value.clone(),
            secret: false,
        }),
        Stored::Sealed { key_id, data } => {
            let Some(keyring) = keyring else {
                return Err(unopened(
                    "this worker has no keys (EDDY_SECRETS_KEYS)".into(),
                ));
            };
            let value = keyring
                .open(tenant, scope, name, key_id, data)
                .map_err(|e| unopened(e.to_string()))?;
            Ok(Variable {
                name: name.to_string(),
                value,
                secret: true,
            })
        }
    }
}
