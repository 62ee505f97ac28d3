//! Host bindings generated from the processor worlds: `wit/processor.wit`
//! (`eddy:processor@0.2.0`, the current one) and `wit/0.1.0/` (still run:
//! a component built for it gets the same host, minus what 0.2.0 added).

/// `eddy:processor@0.2.0`.
pub mod v2 {
    wasmtime::component::bindgen!({
        world: "processor",
        path: "../wit",
        imports: { default: trappable },
        exports: { default: async },
    });
}

/// `eddy:processor@0.1.0`.
pub mod v1 {
    wasmtime::component::bindgen!({
        world: "processor",
        path: "../wit/0.1.0",
        imports: { default: trappable },
        exports: { default: async },
    });
}
