use std::path::PathBuf;

/// Errors of the proxy crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A config file could not be read or is invalid; names the file and the key.
    #[error("{file}: {message}")]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A certificate or key file problem.
    #[error("{path}: {message}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Mint(String),
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// An I/O error with context. Its text says the cause once: the cause is not also chained
    /// as a source (`{:#}` would print it twice).
    #[error("{context}: {}", crate::wire::os(cause))]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl ProxyError {
    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ProxyError::Io {
            context: context.into(),
            cause: source,
        }
    }
}

/// Result with [`ProxyError`].
pub type Result<T, E = ProxyError> = std::result::Result<T, E>;
