//! The operator's ceilings: the most any function may ask for.
//!
//! A tenant sets its functions' limits (`FunctionConfig`); the operator sets
//! how high they may go. The gateway refuses a deploy or `PATCH` above a
//! ceiling (`limit_above_maximum`), and the worker clamps every limit it
//! applies to the ceilings it was started with, so a spec written before a
//! ceiling was lowered cannot lift it either. The shape ceilings bound what
//! one instance of a component may hold, whatever toolchain built it; the
//! runtime sizes its instance pool from them.
//!
//! Set with `--ceiling key=value` (repeatable) or `EDDY_CEILINGS` (the same
//! pairs, comma-separated); every key not given keeps its default.

use std::fmt;

use crate::function::FunctionConfig;

/// The operator's maxima. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    /// `timeout_ms`: wall-clock limit of one invocation.
    pub timeout_ms: u64,
    /// `memory_mb`: every linear memory and table of one invocation together.
    pub memory_mb: u64,
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub max_concurrency: u32,
    pub idle_timeout_ms: u64,
    pub max_output_bytes: u64,
    /// Follow-ups of one invocation. With `max_emit_bytes` it bounds how
    /// long one completion script holds Redis (about 5 µs per follow-up
    /// and 2.5 ms per MiB here: bench/RESULTS.md).
    pub max_emits: u32,
    pub max_emit_bytes: u64,
    pub max_log_bytes: u64,
    /// Outbound requests of one invocation.
    pub max_outbound_requests: u32,
    /// Outbound body bytes (sent and received) of one invocation.
    pub max_outbound_bytes: u64,
    /// `run.max_depth`.
    pub max_depth: u32,
    /// `run.max_invocations`.
    pub max_invocations: u64,
    /// Core module instances one component may create.
    pub core_instances: u32,
    /// Linear memories one component may define (all its modules together).
    pub memories: u32,
    /// Tables one component may define (all its modules together).
    pub tables: u32,
    /// Elements one table may hold.
    pub table_elements: u32,
    /// Output, logs and follow-ups of one invocation together, as written to
    /// Redis by its completion: below the sum of their own ceilings, so
    /// that an invocation at every maximum at once is refused.
    pub completion_bytes: u64,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            timeout_ms: 900_000,
            memory_mb: 512,
            max_retries: 10,
            backoff_base_ms: 60_000,
            backoff_max_ms: 3_600_000,
            max_concurrency: 1_000,
            idle_timeout_ms: 3_600_000,
            max_output_bytes: 4 << 20,
            max_emits: 1_000,
            max_emit_bytes: 1 << 20,
            max_log_bytes: 1 << 20,
            max_outbound_requests: 1_000,
            max_outbound_bytes: 256 << 20,
            max_depth: 64,
            max_invocations: 10_000_000,
            // A componentize-py processor has 14 core modules, 1 memory and
            // a 5,672-entry table; a Rust wasip2 one 4 instances, 1 memory.
            core_instances: 50,
            memories: 4,
            tables: 16,
            table_elements: 20_000,
            completion_bytes: 6 << 20,
        }
    }
}

/// A value above its ceiling, or a ceiling that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeilingError {
    /// A function setting above the operator's maximum.
    #[error("`{field}` is {value}, above this platform's maximum of {maximum}")]
    Above {
        field: &'static str,
        value: u64,
        maximum: u64,
    },
    /// `--ceiling` / `EDDY_CEILINGS` could not be parsed.
    #[error("{0}")]
    Parse(String),
}

/// Applies `$m!(name, field path, ceiling)` to every per-function setting.
macro_rules! for_each_setting {
    ($m:ident, $c:expr, $ceil:expr) => {
        $m!("timeout_ms", $c.timeout_ms, $ceil.timeout_ms);
        $m!("memory_mb", $c.memory_mb, $ceil.memory_mb);
        $m!("max_retries", $c.max_retries, $ceil.max_retries);
        $m!("backoff_base_ms", $c.backoff_base_ms, $ceil.backoff_base_ms);
        $m!("backoff_max_ms", $c.backoff_max_ms, $ceil.backoff_max_ms);
        $m!("max_concurrency", $c.max_concurrency, $ceil.max_concurrency);
        $m!("idle_timeout_ms", $c.idle_timeout_ms, $ceil.idle_timeout_ms);
        $m!(
            "max_output_bytes",
            $c.max_output_bytes,
            $ceil.max_output_bytes
        );
        $m!("max_emits", $c.max_emits, $ceil.max_emits);
        $m!("max_emit_bytes", $c.max_emit_bytes, $ceil.max_emit_bytes);
        $m!("max_log_bytes", $c.max_log_bytes, $ceil.max_log_bytes);
        $m!(
            "max_outbound_requests",
            $c.max_outbound_requests,
            $ceil.max_outbound_requests
        );
        $m!(
            "max_outbound_bytes",
            $c.max_outbound_bytes,
            $ceil.max_outbound_bytes
        );
        $m!("max_depth", $c.run.max_depth, $ceil.max_depth);
        $m!(
            "max_invocations",
            $c.run.max_invocations,
            $ceil.max_invocations
        );
    };
}

impl Ceilings {
    /// Every ceiling by its key, in the order `--help` lists them: the one
    /// list that parsing and printing go by.
    fn slots(&mut self) -> [(&'static str, Slot<'_>); 20] {
        use Slot::{Narrow, Wide};
        [
            ("timeout_ms", Wide(&mut self.timeout_ms)),
            ("memory_mb", Wide(&mut self.memory_mb)),
            ("max_retries", Narrow(&mut self.max_retries)),
            ("backoff_base_ms", Wide(&mut self.backoff_base_ms)),
            ("backoff_max_ms", Wide(&mut self.backoff_max_ms)),
            ("max_concurrency", Narrow(&mut self.max_concurrency)),
            ("idle_timeout_ms", Wide(&mut self.idle_timeout_ms)),
            ("max_output_bytes", Wide(&mut self.max_output_bytes)),
            ("max_emits", Narrow(&mut self.max_emits)),
            ("max_emit_bytes", Wide(&mut self.max_emit_bytes)),
            ("max_log_bytes", Wide(&mut self.max_log_bytes)),
            (
                "max_outbound_requests",
                Narrow(&mut self.max_outbound_requests),
            ),
            ("max_outbound_bytes", Wide(&mut self.max_outbound_bytes)),
            ("max_depth", Narrow(&mut self.max_depth)),
            ("max_invocations", Wide(&mut self.max_invocations)),
            ("core_instances", Narrow(&mut self.core_instances)),
            ("memories", Narrow(&mut self.memories)),
            ("tables", Narrow(&mut self.tables)),
            ("table_elements", Narrow(&mut self.table_elements)),
            ("completion_bytes", Wide(&mut self.completion_bytes)),
        ]
    }

    /// The defaults with `key=value` pairs (comma-separated) applied.
    pub fn parse(spec: &str) -> Result<Self, CeilingError> {
        let mut c = Ceilings::default();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| CeilingError::Parse(format!("`{pair}`: expected key=value")))?;
            let key = key.trim();
            let value: u64 = value.trim().parse().map_err(|_| {
                CeilingError::Parse(format!("`{pair}`: the value must be a whole number"))
            })?;
            c.set(key, value)?;
        }
        if c.backoff_base_ms > c.backoff_max_ms {
            return Err(CeilingError::Parse(
                "backoff_base_ms must not be above backoff_max_ms".into(),
            ));
        }
        Ok(c)
    }

    fn set(&mut self, key: &str, value: u64) -> Result<(), CeilingError> {
        // 0 turns outbound HTTP off for every function; every other
        // ceiling of 0 would make every function useless.
        if value == 0 && !key.starts_with("max_outbound_") {
            return Err(CeilingError::Parse(format!("`{key}` must be at least 1")));
        }
        let mut keys = Vec::new();
        for (name, slot) in self.slots() {
            if name != key {
                keys.push(name);
                continue;
            }
            match slot {
                Slot::Wide(v) => *v = value,
                Slot::Narrow(v) => {
                    *v = u32::try_from(value).map_err(|_| {
                        CeilingError::Parse(format!("`{key}`: {value} is out of range"))
                    })?;
                }
            }
            return Ok(());
        }
        Err(CeilingError::Parse(format!(
            "unknown ceiling `{key}` (one of: {})",
            keys.join(", ")
        )))
    }

    /// The first setting of `config` above its ceiling, if any.
    pub fn check(&self, config: &FunctionConfig) -> Result<(), CeilingError> {
        macro_rules! check {
            ($name:expr, $value:expr, $max:expr) => {
                if u64::from($value) > u64::from($max) {
                    return Err(CeilingError::Above {
                        field: $name,
                        value: u64::from($value),
                        maximum: u64::from($max),
                    });
                }
            };
        }
        for_each_setting!(check, config, self);
        Ok(())
    }

    /// A run's limits lowered to their ceilings.
    pub fn clamp_run(&self, run: crate::RunLimits) -> crate::RunLimits {
        crate::RunLimits {
            max_depth: run.max_depth.min(self.max_depth),
            max_invocations: run.max_invocations.min(self.max_invocations),
        }
    }

    /// `config` with every setting lowered to its ceiling.
    pub fn clamp(&self, mut config: FunctionConfig) -> FunctionConfig {
        macro_rules! clamp {
            ($name:expr, $value:expr, $max:expr) => {
                if $value > $max {
                    $value = $max;
                }
            };
        }
        for_each_setting!(clamp, config, self);
        config
    }
}

impl fmt::Display for Ceilings {
    /// The `key=value,...` form `parse` reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut c = *self;
        for (i, (key, slot)) in c.slots().into_iter().enumerate() {
            let value = match slot {
                Slot::Wide(v) => *v,
                Slot::Narrow(v) => u64::from(*v),
            };
            write!(f, "{}{key}={value}", if i > 0 { "," } else { "" })?;
        }
        Ok(())
    }
}

/// Where a ceiling lives in [`Ceilings`], by width.
enum Slot<'a> {
    Wide(&'a mut u64),
    Narrow(&'a mut u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_admit_the_default_config_and_round_trip() {
        let c = Ceilings::default();
        assert_eq!(c.check(&FunctionConfig::default()), Ok(()));
        assert_eq!(Ceilings::parse(&c.to_string()), Ok(c));
        assert_eq!(Ceilings::parse(""), Ok(c));
    }

    #[test]
    fn parse_sets_keys_and_refuses_nonsense() {
        let c = Ceilings::parse("memory_mb=128, timeout_ms=5000").unwrap();
        assert_eq!((c.memory_mb, c.timeout_ms), (128, 5000));
        // Outbound HTTP can be turned off; a clamped default then asks for
        // none.
        let off = Ceilings::parse("max_outbound_requests=0").unwrap();
        assert_eq!(
            off.clamp(FunctionConfig::default()).max_outbound_requests,
            0
        );
        for (spec, want) in [
            ("memory=1", "unknown ceiling `memory` (one of: timeout_ms,"),
            ("memory_mb", "`memory_mb`: expected key=value"),
            (
                "memory_mb=x",
                "`memory_mb=x`: the value must be a whole number",
            ),
            ("memory_mb=0", "`memory_mb` must be at least 1"),
            (
                "max_emits=5000000000",
                "`max_emits`: 5000000000 is out of range",
            ),
            (
                "backoff_base_ms=10,backoff_max_ms=5",
                "backoff_base_ms must not be above backoff_max_ms",
            ),
        ] {
            let e = Ceilings::parse(spec).unwrap_err().to_string();
            assert!(e.starts_with(want), "{spec}: {e}");
        }
    }

    #[test]
    fn every_setting_is_checked_and_clamped() {
        let c = Ceilings::default();
        type Raise = fn(&mut FunctionConfig);
        let cases: Vec<(&str, Raise)> = vec![
            ("timeout_ms", |f| f.timeout_ms = 86_400_000),
            ("memory_mb", |f| f.memory_mb = 100_000),
            ("max_retries", |f| f.max_retries = 1_000_000),
            ("backoff_base_ms", |f| f.backoff_base_ms = u64::MAX),
            ("backoff_max_ms", |f| f.backoff_max_ms = u64::MAX),
            ("max_concurrency", |f| f.max_concurrency = u32::MAX),
            ("idle_timeout_ms", |f| f.idle_timeout_ms = u64::MAX),
            ("max_output_bytes", |f| f.max_output_bytes = 1 << 40),
            ("max_emits", |f| f.max_emits = 100_000_000),
            ("max_emit_bytes", |f| f.max_emit_bytes = 1 << 40),
            ("max_log_bytes", |f| f.max_log_bytes = 1 << 40),
            ("max_outbound_requests", |f| {
                f.max_outbound_requests = u32::MAX
            }),
            ("max_outbound_bytes", |f| f.max_outbound_bytes = 1 << 40),
            ("max_depth", |f| f.run.max_depth = u32::MAX),
            ("max_invocations", |f| f.run.max_invocations = u64::MAX),
        ];
        for (field, raise) in cases {
            let mut config = FunctionConfig::default();
            raise(&mut config);
            match c.check(&config) {
                Err(CeilingError::Above { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
            assert_eq!(c.check(&c.clamp(config)), Ok(()), "{field}");
        }
        let config = FunctionConfig {
            max_emits: 100_000_000,
            ..FunctionConfig::default()
        };
        assert_eq!(
            c.check(&config).unwrap_err().to_string(),
            "`max_emits` is 100000000, above this platform's maximum of 1000"
        );
    }
}
