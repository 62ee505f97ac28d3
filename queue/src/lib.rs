//! All Redis access: streams, Lua scripts, registry, results, tenants, runs.
//! (Built in issue 3.)
#![forbid(unsafe_code)]
