//! The `devstack` command: see `devstack --help`.
//!
//! Place in the data path: it starts the whole path on this machine (`devstack
//! up`), drives it end to end (`chat`, `bench`), and is the resolver inside
//! the Lambda stand-in's workers (`worker`).

fn main() -> std::process::ExitCode {
    devstack::cli::main()
}
