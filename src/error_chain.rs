//! One line for an error and every error under it, for `main` and the few logs that report a whole chain.

use std::error::Error;
use std::fmt::Write;

/// `outer: cause: root cause`. A cause whose text the error before it already ends with is printed once:
/// some errors name their source in their own message (for example a bind error naming the address and
/// the OS error), and the line must not say it twice.
pub fn chain(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            let _ = write!(line, ": {text}");
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind to 127.0.0.1:1: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_cause_is_printed_once() {
        let root = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        assert_eq!(
            chain(&Outer(Middle(root))),
            "cannot start: cannot bind to 127.0.0.1:1: address in use"
        );
    }
}
