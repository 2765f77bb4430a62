//! Every request the simulator saw, for assertions such as "nothing arrived during the wait".

use std::collections::VecDeque;
use std::net::IpAddr;

use parking_lot::Mutex;

use serde::Serialize;

pub struct RequestLog {
    cap: usize,
    entries: Mutex<VecDeque<RequestRecord>>,
}

impl RequestLog {
    pub fn new(cap: usize) -> Self {
        RequestLog {
            cap: cap.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    pub fn push(&self, record: RequestRecord) {
        let mut entries = self.entries.lock();
        if entries.len() >= self.cap {
            entries.pop_front();
        }
        entries.push_back(record);
    }

    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.entries.lock().iter().cloned().collect()
    }
}

/// One line of the request log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Arrival, exchange epoch ms.
    pub at_ms: i64,
    /// "REST", "WS_API" or "WS" (a WebSocket handshake).
    pub transport: &'static str,
    /// HTTP method, or the WebSocket API method.
    pub method: String,
    pub path: String,
    pub status: u16,
    pub weight: u64,
    /// The client address it came from (the peer of its connection), as the exchange counts it.
    pub ip: IpAddr,
}
