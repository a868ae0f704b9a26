//! Place in the data path: the Lambda function of the devstack's own tests,
//! the resolver run by `devstack worker` (the same code as the deployed
//! `bootstrap`), and the shared test helpers.

#[allow(
    unused_imports,
    reason = "each test crate includes this module; not every one uses the stack helpers"
)]
pub(crate) use devstack::testing::*;

use devstack::lambda::FunctionCommand;

/// This build's `devstack worker`, run by the Lambda stand-in as its function.
pub(crate) fn resolver() -> FunctionCommand {
    FunctionCommand {
        program: env!("CARGO_BIN_EXE_devstack").into(),
        args: vec!["worker".into()],
    }
}
