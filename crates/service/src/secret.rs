//! Secrets: usable, never printed.

use std::fmt;

/// A secret string (a password, a database URL with one, an S3 secret key, a token):
/// [`Secret::expose`] hands it to whoever needs it; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to a client. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// `err: its source: its source's source…` on one line, e.g. `dispatch failure: io
/// error: client error (Connect): tcp connect error: Connection refused (os error 111)`,
/// for logs and the one line a binary prints before exiting. (The AWS SDK's
/// `DisplayErrorContext` appends a `Debug` dump, too much for a log line.)
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some layers repeat their source's message; say it once.
        if !chain.ends_with(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_usable_but_never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(s.expose(), "hunter2");
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("redacted"),
            "{debug}"
        );
    }

    #[test]
    fn an_error_chain_reads_as_one_line_without_repeats() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let refused = Layer("connection refused", None);
        let repeated = Layer("connection refused", Some(Box::new(refused)));
        let top = Layer("dispatch failure", Some(Box::new(repeated)));
        assert_eq!(error_chain(&top), "dispatch failure: connection refused");
    }
}
