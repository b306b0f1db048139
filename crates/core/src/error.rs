//! The one error type of fovea's library crates.

use std::fmt;

/// Everything a fovea operation can fail with. Messages name the op and the offending
/// shapes or values so that a user can find the bad call without a debugger.
#[derive(Debug)]
pub enum Error {
    /// An op was given shapes or parameters it cannot work with.
    Op {
        /// The op's name as the user called it (`conv2d`, `add`, …).
        op: &'static str,
        /// What was wrong, with the shapes and values involved.
        msg: String,
    },
    /// Autodiff was asked for something the graph cannot give.
    Autograd(String),
    /// Tensors on two different devices met in one op.
    DeviceMismatch {
        /// The op's name.
        op: &'static str,
        /// The two devices' names.
        devices: (String, String),
    },
    /// The backend (CPU or GPU) failed to run an op.
    Backend(String),
    /// Reading or writing a file failed.
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file was read but its contents are malformed.
    Format {
        /// The file involved.
        path: String,
        /// What is malformed.
        msg: String,
    },
    /// A layer of a model failed: where, and how.
    Layer {
        /// The layer's dotted name in the model (`layer2.0.conv1`).
        path: String,
        /// What failed inside it.
        source: Box<Error>,
    },
}

impl Error {
    /// Shorthand for an [`Error::Op`].
    pub fn op(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Op {
            op,
            msg: msg.into(),
        }
    }

    /// Names the op and its inputs' shapes on a backend failure (a buffer too large for the
    /// device, a dispatch too wide), which the backend reports about buffers, not tensors.
    /// Other errors already name their op and pass unchanged.
    pub(crate) fn in_op(self, op: &'static str, inputs: &[&[usize]]) -> Error {
        match self {
            Error::Backend(msg) => Error::op(op, format!("inputs of shapes {inputs:?}: {msg}")),
            e => e,
        }
    }

    /// Names the child layer `name` an error came from; a parent adds its own name in
    /// front as the error travels up, so the message gives the full dotted path.
    pub fn in_layer(self, name: &str) -> Error {
        match self {
            Error::Layer { path, source } => Error::Layer {
                path: format!("{name}.{path}"),
                source,
            },
            e => Error::Layer {
                path: name.to_string(),
                source: Box::new(e),
            },
        }
    }

    /// The error inside any [`Error::Layer`] wrapping: what actually failed.
    pub fn root(&self) -> &Error {
        match self {
            Error::Layer { source, .. } => source.root(),
            e => e,
        }
    }

    /// Like [`Error::in_op`], for a backward rule given an output gradient of `grad` shape.
    pub(crate) fn in_backward(self, op: &'static str, grad: &[usize]) -> Error {
        match self {
            Error::Backend(msg) => Error::Autograd(format!(
                "the backward of {op} (output gradient of shape {grad:?}) failed: {msg}"
            )),
            e => e,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Op { op, msg } => write!(f, "{op}: {msg}"),
            Error::Autograd(msg) => write!(f, "autograd: {msg}"),
            Error::DeviceMismatch { op, devices } => write!(
                f,
                "{op}: tensors live on different devices ({} and {}); move one with .to_device()",
                devices.0, devices.1
            ),
            Error::Backend(msg) => write!(f, "backend: {msg}"),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Format { path, msg } => write!(f, "{path}: {msg}"),
            Error::Layer { path, source } => write!(f, "layer {path}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Layer { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// fovea's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns `Err(Error::Op)` from the enclosing function when `cond` is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Error::op($op, format!($($fmt)+)));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn backend_failures_gain_their_op_and_shapes_and_op_errors_keep_theirs() {
        let e = Error::Backend("too big".into()).in_op("conv2d", &[&[1, 3], &[4]]);
        assert_eq!(
            e.to_string(),
            "conv2d: inputs of shapes [[1, 3], [4]]: too big"
        );
        let e = Error::Backend("too big".into()).in_backward("matmul", &[2, 5]);
        assert_eq!(
            e.to_string(),
            "autograd: the backward of matmul (output gradient of shape [2, 5]) failed: too big"
        );
        let e = Error::op("pad", "bad").in_op("conv2d", &[&[1]]);
        assert_eq!(e.to_string(), "pad: bad");
    }
}
