//! The `tidemark` command; everything lives in the library.

fn main() -> std::process::ExitCode {
    tidemark::cli::main()
}
