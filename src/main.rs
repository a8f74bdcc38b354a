//! The `tidemark` command; everything lives in the library.

/// mimalloc instead of the system allocator: a backup allocates and frees many short-lived
/// page-sized buffers (LIST responses, compressed chunks), which glibc's malloc serves with fresh
/// `mmap`ed, page-faulted memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tidemark::cli::main()
}
