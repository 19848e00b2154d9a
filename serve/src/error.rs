//! The server's two error types: what stops it from starting, and what one request gets back
//! as an OpenAI-style JSON error with its HTTP status.

use std::fmt;

/// Why the server cannot start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be parsed or resolved.
    BadAddress(String),
    /// Binding beyond the loopback interface without an API key.
    OpenWithoutKey(String),
    /// Binding, accepting or starting the runtime failed.
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A limit of the configuration that cannot work (zero workers, zero queue, ...).
    BadConfig(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::BadAddress(s) => write!(f, "bad address {s}"),
            ServeError::OpenWithoutKey(a) => write!(
                f,
                "{a} is reachable from other machines: give --api-key KEY (or bind 127.0.0.1)"
            ),
            ServeError::Io { what, source } => write!(f, "{what}: {source}"),
            ServeError::BadConfig(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A request's failure as the client sees it: an HTTP status and
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// OpenAI's error type (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code (`context_length_exceeded`, `queue_full`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request cannot be honoured as given.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn field(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::invalid(message)
        }
    }

    /// Any status with its type and code.
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            message,
            param: None,
            code: Some(code),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}
