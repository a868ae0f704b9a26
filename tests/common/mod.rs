//! Place in the data path: the Lambda function of every root test, the
//! resolver's real `bootstrap` binary exactly as it would be deployed, and the
//! devstack's test helpers.

pub(crate) use devstack::testing::*;

use devstack::lambda::FunctionCommand;

/// The `bootstrap` binary of this build, run by the devstack's Lambda
/// stand-in as its function.
pub(crate) fn resolver() -> FunctionCommand {
    FunctionCommand {
        program: env!("CARGO_BIN_EXE_bootstrap").into(),
        args: Vec::new(),
    }
}
