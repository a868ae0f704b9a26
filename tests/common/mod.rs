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

/// The `function-url` binary of this build: the function behind the
/// devstack's function URL.
#[allow(dead_code, reason = "not every test crate uses it")]
pub(crate) fn url_function() -> FunctionCommand {
    FunctionCommand {
        program: env!("CARGO_BIN_EXE_function-url").into(),
        args: Vec::new(),
    }
}

/// The `websocket` and `websocket-authorizer` binaries of this build: the
/// functions behind the devstack's WebSocket API.
#[allow(dead_code, reason = "not every test crate uses it")]
pub(crate) fn websocket_functions() -> devstack::WebSocketFunctions {
    devstack::WebSocketFunctions {
        function: FunctionCommand {
            program: env!("CARGO_BIN_EXE_websocket").into(),
            args: Vec::new(),
        },
        authorizer: FunctionCommand {
            program: env!("CARGO_BIN_EXE_websocket-authorizer").into(),
            args: Vec::new(),
        },
    }
}
