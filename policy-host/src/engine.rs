//! The wasmtime engine shared by every policy: pooling allocator, epoch interruption driven by a
//! ticker thread, a mandatory memory limiter per store, and a `.cwasm` cache of compiled code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
};

use super::PolicyKind;

/// Limits and deadlines of policy calls.
#[derive(Debug, Clone)]
pub struct PolicyLimits {
    /// Linear memory a policy instance may use, bytes (the ResourceLimiter enforces it).
    pub memory_bytes: usize,
    /// Deadline of one batcher call.
    pub batcher_deadline: Duration,
    /// Deadline of one predictor call.
    pub predictor_deadline: Duration,
    /// Deadline of one provisioner call.
    pub provisioner_deadline: Duration,
    /// Epoch tick; deadlines are rounded up to whole ticks, at least 2.
    pub tick: Duration,
    /// Consecutive failed calls of a loaded policy that roll its slot back.
    pub rollback_after: u32,
    /// Largest component accepted, bytes.
    pub max_component_bytes: usize,
    /// Directory for compiled-code cache files (None: no cache).
    pub cache_dir: Option<PathBuf>,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            memory_bytes: 64 << 20,
            // 10 ms, not 2: on an oversubscribed host the OS can deschedule a 2 µs call for
            // milliseconds, and a deadline hit discards the instance and its state.
            batcher_deadline: Duration::from_millis(10),
            predictor_deadline: Duration::from_millis(500),
            provisioner_deadline: Duration::from_millis(500),
            tick: Duration::from_millis(1),
            rollback_after: 5,
            max_component_bytes: 16 << 20,
            cache_dir: None,
        }
    }
}

impl PolicyLimits {
    /// Deadline for `kind` in epoch ticks (at least 2: a deadline counts from the current tick).
    pub fn ticks(&self, kind: PolicyKind) -> u64 {
        let d = match kind {
            PolicyKind::Batcher => self.batcher_deadline,
            PolicyKind::Predictor => self.predictor_deadline,
            PolicyKind::Provisioner => self.provisioner_deadline,
        };
        (d.as_nanos().div_ceil(self.tick.as_nanos().max(1)) as u64).max(2)
    }
}

/// Per-store host state: only the memory limiter (policies import nothing).
pub struct HostState {
    memory_limit: usize,
    /// Largest memory size a guest asked for and was refused, bytes.
    pub refused_memory: Option<usize>,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.refused_memory = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        16
    }
    fn tables(&self) -> usize {
        16
    }
    fn memories(&self) -> usize {
        4
    }
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("wasmtime engine: {0}")]
    Wasmtime(String),
    /// The types-only interface could not be linked.
    #[error("linker: {0}")]
    Linker(String),
    /// The epoch ticker thread could not start.
    #[error("epoch ticker thread: {0}")]
    Ticker(#[from] std::io::Error),
}

/// The shared engine.
pub struct PolicyEngine {
    /// wasmtime engine.
    pub engine: Engine,
    /// Linker with nothing but the types-only interface of our own package.
    pub linker: Linker<HostState>,
    /// Limits and deadlines.
    pub limits: PolicyLimits,
    cache: Option<super::code_cache::CodeCache>,
}

impl PolicyEngine {
    /// Builds the engine and starts its epoch ticker thread.
    pub fn new(limits: PolicyLimits) -> Result<Arc<Self>, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(512)
            .total_core_instances(512)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size(limits.memory_bytes);
        let mut cfg = Config::new();
        cfg.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .wasm_component_model(true);
        let engine = Engine::new(&cfg).map_err(|e| EngineError::Wasmtime(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        // The WIT's `types` interface holds only types; it is "imported" as an empty instance.
        for v in std::iter::once(super::WIT_VERSION).chain(super::OLDER_WIT_VERSIONS) {
            linker
                .instance(&format!("mark:policy/types@{v}"))
                .map_err(|e| EngineError::Linker(format!("{e:#}")))?;
        }
        let weak = engine.weak();
        let tick = limits.tick;
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(e) = weak.upgrade() {
                    e.increment_epoch();
                    drop(e);
                    std::thread::sleep(tick);
                }
            })?;
        let cache = limits.cache_dir.as_deref().and_then(|d| {
            super::code_cache::CodeCache::open(d)
                .map_err(|e| tracing::warn!(cause = %e, "policy code cache off"))
                .ok()
        });
        Ok(Arc::new(PolicyEngine {
            engine,
            linker,
            limits,
            cache,
        }))
    }

    /// A new store with the memory limiter installed.
    pub fn store(&self) -> Store<HostState> {
        let mut store = Store::new(
            &self.engine,
            HostState {
                memory_limit: self.limits.memory_bytes,
                refused_memory: None,
            },
        );
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.epoch_deadline_trap();
        store
    }

    /// Compiles `bytes`, through the code cache when one is configured (see `code_cache`: only
    /// files this gateway wrote and authenticated are loaded as native code).
    pub fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        let Some(cache) = self.cache.as_ref() else {
            return Component::new(&self.engine, bytes);
        };
        let mut h = Sha256::new();
        h.update(bytes);
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut compat);
        h.update(std::hash::Hasher::finish(&compat).to_le_bytes());
        let id = format!("{:x}", h.finalize());
        if let Some(ser) = cache.get(&id) {
            // SAFETY: `get` returns only bytes this gateway serialized itself for exactly these
            // source bytes and engine: their HMAC under the cache's private key is checked.
            #[allow(unsafe_code)]
            let c = unsafe { Component::deserialize(&self.engine, &ser) };
            if let Ok(c) = c {
                return Ok(c);
            }
        }
        let c = Component::new(&self.engine, bytes)?;
        if let Ok(ser) = c.serialize() {
            cache.put(&id, &ser);
        }
        Ok(c)
    }
}
