//! Tenants, their quotas and webhook secrets, and API keys (stored hashed).

use std::collections::HashMap;

use crate::{ApiKey, Quota, TenantInfo};
use base64::Engine as _;
use eddy_protocol::{TenantId, keys};
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use crate::{Error, Queue, Result};

/// Slots of the stored-bytes window per record TTL (as in `lua/stored.lua`).
const STORED_SLOTS: u64 = 24;

/// The stored-bytes window's sum from its hash (slot → bytes), as
/// `lua/stored.lua` counts it.
fn stored_window(slots: &HashMap<String, i64>, now_ms: u64, ttl_s: u64) -> u64 {
    let len = ttl_s.div_ceil(STORED_SLOTS).max(1);
    let cur = now_ms / 1000 / len;
    slots
        .iter()
        .filter_map(|(slot, bytes)| {
            let slot: u64 = slot.parse().ok()?;
            (slot + STORED_SLOTS >= cur).then_some((*bytes).max(0) as u64)
        })
        .sum()
}

/// How an API key is stored and looked up: its sha256, hex.
pub fn hash_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// `bytes` random bytes (a CSPRNG seeded by the OS), as hex.
pub fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

impl Queue {
    /// Creates a tenant with `quota`. Returns its info and its webhook signing
    /// secret (`whsec_…`, Standard Webhooks), or `None` if it already exists.
    pub async fn create_tenant(
        &self,
        id: &TenantId,
        quota: Quota,
    ) -> Result<Option<(TenantInfo, String)>> {
        let mut conn = self.conn();
        let key = keys::tenant(id);
        let secret_bytes: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(secret_bytes)
        );
        let now = eddy_protocol::now_ms();
        let created: bool = conn.hset_nx(&key, "created", now).await?;
        if !created {
            return Ok(None);
        }
        redis::pipe()
            .hset_multiple(
                &key,
                &[
                    ("secret", secret.clone()),
                    ("max_pending", quota.max_pending.to_string()),
                    ("max_concurrency", quota.max_concurrency.to_string()),
                    ("rate_per_sec", quota.rate_per_sec.to_string()),
                    ("max_stored_bytes", quota.max_stored_bytes.to_string()),
                ],
            )
            .hset_nx(&key, "pending", 0)
            .exec_async(&mut conn)
            .await?;
        // A global key (another slot on a cluster): its own command.
        let _: () = conn.sadd(keys::TENANTS, id.as_str()).await?;
        let info = TenantInfo {
            id: id.clone(),
            created_at_ms: now,
            quota,
            pending: 0,
            stored_bytes: 0,
        };
        Ok(Some((info, secret)))
    }

    /// A tenant's info, if it exists.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<TenantInfo>> {
        let (map, window): (HashMap<String, String>, HashMap<String, i64>) = redis::pipe()
            .hgetall(keys::tenant(id))
            .hgetall(keys::stored(id))
            .query_async(&mut self.conn())
            .await?;
        if !map.contains_key("created") {
            return Ok(None);
        }
        let what = format!("tenant {id}");
        let n = |k: &str| crate::fields::counter(&what, k, map.get(k));
        Ok(Some(TenantInfo {
            id: id.clone(),
            created_at_ms: n("created")?,
            quota: Quota {
                max_pending: n("max_pending")?,
                max_concurrency: n("max_concurrency")? as u32,
                rate_per_sec: n("rate_per_sec")?,
                max_stored_bytes: n("max_stored_bytes")?,
            },
            pending: n("pending")?,
            stored_bytes: n("mod_bytes")?
                + stored_window(&window, eddy_protocol::now_ms(), self.ttl_secs()),
        }))
    }

    /// Replaces a tenant's quota. False if the tenant does not exist.
    pub async fn set_quota(&self, id: &TenantId, quota: Quota) -> Result<bool> {
        let mut conn = self.conn();
        let key = keys::tenant(id);
        if !conn.exists::<_, bool>(&key).await? {
            return Ok(false);
        }
        let _: () = conn
            .hset_multiple(
                &key,
                &[
                    ("max_pending", quota.max_pending),
                    ("max_concurrency", u64::from(quota.max_concurrency)),
                    ("rate_per_sec", quota.rate_per_sec),
                    ("max_stored_bytes", quota.max_stored_bytes),
                ],
            )
            .await?;
        Ok(true)
    }

    /// The tenant's webhook signing secret.
    pub async fn webhook_secret(&self, id: &TenantId) -> Result<Option<String>> {
        Ok(self.conn().hget(keys::tenant(id), "secret").await?)
    }

    /// Creates an API key for `tenant`; the plaintext is returned once and
    /// only its sha256 is stored.
    pub async fn create_key(&self, tenant: &TenantId) -> Result<(ApiKey, String)> {
        let id = random_hex(6);
        let plaintext = format!("eddy_{id}_{}", random_hex(24));
        let key = ApiKey {
            id: id.clone(),
            tenant: tenant.clone(),
            created_at_ms: eddy_protocol::now_ms(),
            revoked: false,
        };
        let json = serde_json::to_string(&key).map_err(|e| Error::Corrupt(e.to_string()))?;
        let hash = hash_key(&plaintext);
        // Two slots on a cluster: listed under the tenant first, then made
        // valid, so that no valid key is ever unlisted (and revocable).
        let mut conn = self.conn();
        let _: () = conn.hset(keys::tenant_keys(tenant), &id, &hash).await?;
        let _: () = conn.hset(keys::API_KEYS, &hash, json).await?;
        Ok((key, plaintext))
    }

    /// Marks key `key_id` of `tenant` revoked. False if there is no such key.
    pub async fn revoke_key(&self, tenant: &TenantId, key_id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let Some(hash): Option<String> = conn.hget(keys::tenant_keys(tenant), key_id).await? else {
            return Ok(false);
        };
        let Some(json): Option<String> = conn.hget(keys::API_KEYS, &hash).await? else {
            return Ok(false);
        };
        let mut key: ApiKey =
            serde_json::from_str(&json).map_err(|e| Error::Corrupt(e.to_string()))?;
        key.revoked = true;
        let json = serde_json::to_string(&key).map_err(|e| Error::Corrupt(e.to_string()))?;
        let _: () = conn.hset(keys::API_KEYS, &hash, json).await?;
        // Gateways cache valid keys for a few seconds: tell them now. The
        // key is revoked either way; without the message, caches let go of
        // it within their TTL.
        let msg = eddy_protocol::messages::KeyRevoked(hash);
        if let Err(error) = self.publish(&msg).await {
            tracing::warn!(%error, "announcing a key revocation; gateway caches expire it within 5 s");
        }
        Ok(true)
    }

    /// Stores a dashboard session: `token_hash` (a hash of the cookie's
    /// token; the token itself is never stored) names `who` for `ttl_s`.
    pub async fn create_session(&self, token_hash: &str, who: &str, ttl_s: u64) -> Result<()> {
        let _: () = self
            .conn()
            .set_ex(keys::session(token_hash), who, ttl_s)
            .await?;
        Ok(())
    }

    /// Who a dashboard session names, while it lasts.
    pub async fn session(&self, token_hash: &str) -> Result<Option<String>> {
        Ok(self.conn().get(keys::session(token_hash)).await?)
    }

    /// Ends a dashboard session.
    pub async fn drop_session(&self, token_hash: &str) -> Result<()> {
        let _: i64 = self.conn().del(keys::session(token_hash)).await?;
        Ok(())
    }

    /// The key a plaintext bearer token names, if any (revoked keys included:
    /// the caller tells them apart).
    pub async fn lookup_key(&self, plaintext: &str) -> Result<Option<ApiKey>> {
        self.lookup_key_hash(&hash_key(plaintext)).await
    }

    /// The key whose [`hash_key`] is `hash`.
    pub async fn lookup_key_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let json: Option<String> = self.conn().hget(keys::API_KEYS, hash).await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| Error::Corrupt(e.to_string())))
            .transpose()
    }

    /// A tenant's keys (without secrets).
    pub async fn keys_of(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        let mut conn = self.conn();
        let hashes: HashMap<String, String> = conn.hgetall(keys::tenant_keys(tenant)).await?;
        let mut out = Vec::new();
        for hash in hashes.values() {
            if let Some(json) = conn
                .hget::<_, _, Option<String>>(keys::API_KEYS, hash)
                .await?
            {
                out.push(serde_json::from_str(&json).map_err(|e| Error::Corrupt(e.to_string()))?);
            }
        }
        out.sort_by_key(|k: &ApiKey| k.created_at_ms);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_window_counts_the_last_ttl_and_one_slot() {
        // A TTL of 240 s: slots of 10 s, the current one and the 24 before.
        let now_ms = 1_000_000;
        let cur = now_ms / 1000 / 10;
        let slots: HashMap<String, i64> = [
            (cur.to_string(), 5),
            ((cur - 24).to_string(), 7),
            ((cur - 25).to_string(), 1000),
            ("junk".to_string(), 1000),
        ]
        .into_iter()
        .collect();
        assert_eq!(stored_window(&slots, now_ms, 240), 12);
        assert_eq!(stored_window(&HashMap::new(), now_ms, 240), 0);
    }
}
