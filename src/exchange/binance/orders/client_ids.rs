//! Client order ids this process mints: a prefix unique to the run, then a counter.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::exchange::types::ClientOrderId;

/// Mints client order ids that never repeat those of an earlier run.
pub struct ClientIds {
    prefix: String,
    counter: AtomicU64,
}

impl ClientIds {
    /// `start_ms` and a random salt make the prefix: two runs (or two processes started in the
    /// same millisecond) do not share it.
    pub fn new(start_ms: i64) -> ClientIds {
        let salt: u16 = rand::random();
        ClientIds {
            prefix: format!("r{}{}", base36(start_ms.max(0) as u64), base36(u64::from(salt))),
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh id: the prefix plus a counter (at most 1 + 13 + 4 + 1 + 13 = 32 characters).
    pub fn mint(&self) -> ClientOrderId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{}", self.prefix, base36(n));
        // Base-36 digits and '-' only, well under 36 characters: always valid.
        ClientOrderId::new(id).unwrap_or_else(|invalid| unreachable!("minted {invalid}"))
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_valid_and_unique() {
        let a = ClientIds::new(1_700_000_000_000);
        let b = ClientIds::new(1_700_000_000_001);
        let ids: Vec<ClientOrderId> = (0..1000).map(|_| a.mint()).chain([b.mint()]).collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().all(|id| id.as_str().len() <= 36));
        assert!(ClientOrderId::new("has space").is_err());
        assert!(ClientOrderId::new("x".repeat(37)).is_err());
        assert!(ClientOrderId::new("").is_err());
        assert!(ClientOrderId::new("a.b:c/d_e-F9").is_ok());
    }
}
