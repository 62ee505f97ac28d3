//! The `eddy` binary; everything it does is in the library (`lib.rs`).
#![forbid(unsafe_code)]

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eddy_cli::main()
}
