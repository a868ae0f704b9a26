//! The `devstack` command: see `devstack --help`.

fn main() -> std::process::ExitCode {
    devstack::cli::main()
}
