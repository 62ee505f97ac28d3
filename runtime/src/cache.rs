//! Precompiled artifacts on disk, keyed by (module sha256, engine compatibility
//! hash), so that a cold function is a memory-mapped deserialize, not a compile.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// A directory of `<sha256>-<engine>.cwasm` files.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, LoadError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LoadError::Host(format!(
                "creating artifact cache dir {}: {e}",
                dir.display()
            ))
        })?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// Names this engine's configuration: artifacts of another key do not
    /// load here.
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// The artifact of `sha256` as stored, to share it.
    pub fn read(&self, sha256: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(sha256)).ok()
    }

    /// The file that holds (or would hold) the artifact of `sha256`.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Loads the artifact of `sha256`, if cached and usable.
    ///
    /// A file that fails to deserialize (truncated, other engine) is removed so
    /// that the next load recompiles it.
    pub(crate) fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: wasmtime requires that the file was produced by
        // `Engine::precompile_component` / `Component::serialize` of a
        // compatible engine and is not modified while mapped. Only this cache
        // writes into its directory, always through a rename of a complete
        // file, and the engine key in the name plus wasmtime's own header
        // check reject artifacts of another engine configuration.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "discarding unusable cached artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Deserializes an artifact from memory that the caller vouches for: one
    /// another process compiled and a key of the operator's signed (see
    /// [`crate::Runtime::load_artifact`]).
    pub(crate) fn deserialize_vouched(
        &self,
        engine: &Engine,
        artifact: &[u8],
    ) -> Result<Component, LoadError> {
        // SAFETY: wasmtime requires bytes produced by `Component::serialize`
        // of a compatible engine; its header check refuses another engine's
        // (an error, not UB), and the caller checked that a holder of the
        // operator's keys signed these bytes as this module's artifact for
        // this engine (`Keyring::verify_artifact`): Redis alone cannot supply
        // them.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, artifact) };
        component.map_err(|e| LoadError::Host(format!("deserializing a shared artifact: {e:#}")))
    }

    /// Removes the artifact of `sha256`; whether there was one. A component
    /// mapped from it stays valid (the file lives on until unmapped).
    pub fn remove(&self, sha256: &str) -> bool {
        std::fs::remove_file(self.path(sha256)).is_ok()
    }

    /// Stores a serialized artifact atomically (write to a temp file,
    /// rename). It is later mapped as native code: the caller vouches for
    /// the bytes (this process compiled them, or a key it holds signed
    /// them).
    pub fn put(&self, sha256: &str, artifact: &[u8]) -> Result<(), LoadError> {
        let path = self.path(sha256);
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1
            .write_all(artifact)
            .and_then(|()| tmp.1.sync_all())
            .map_err(|e| LoadError::Host(format!("writing artifact: {e}")))?;
        std::fs::rename(&tmp.0, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp.0);
            LoadError::Host(format!("storing artifact {}: {e}", path.display()))
        })
    }
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File), LoadError> {
    let name = format!(
        ".tmp-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let path = dir.join(name);
    let file = std::fs::File::create(&path)
        .map_err(|e| LoadError::Host(format!("creating {}: {e}", path.display())))?;
    Ok((path, file))
}
