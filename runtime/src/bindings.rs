//! Host bindings generated from `wit/processor.wit`.

wasmtime::component::bindgen!({
    world: "processor",
    path: "../wit",
    imports: { default: trappable },
    exports: { default: async },
});
