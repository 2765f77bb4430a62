//! Per-strategy accounting: names interned to small ids so the hot path indexes
//! plain vectors instead of hashing strings.

use std::collections::HashMap;
use std::sync::Arc;

use super::pools::Pool;

/// Index of an interned strategy name. Ids are never reused.
pub(crate) type Sid = u32;

#[derive(Debug, Clone, Copy, Default)]
struct WindowCount {
    window_start: i64,
    used: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Strategies {
    ids: HashMap<Arc<str>, Sid>,
    names: Vec<Arc<str>>,
    total_weight: Vec<u64>,
    total_orders: Vec<u64>,
    /// `[sid * pool_count + pool]`: this strategy's use of the pool's current window.
    windows: Vec<WindowCount>,
    pool_count: usize,
}

impl Strategies {
    pub fn new(pool_count: usize) -> Self {
        Strategies {
            pool_count,
            ..Default::default()
        }
    }

    pub fn intern(&mut self, name: &str) -> Sid {
        if let Some(&sid) = self.ids.get(name) {
            return sid;
        }
        let sid = self.names.len() as Sid;
        let name: Arc<str> = Arc::from(name);
        self.ids.insert(name.clone(), sid);
        self.names.push(name);
        self.total_weight.push(0);
        self.total_orders.push(0);
        self.windows
            .extend(std::iter::repeat_n(WindowCount::default(), self.pool_count));
        sid
    }

    pub fn lookup(&self, name: &str) -> Option<Sid> {
        self.ids.get(name).copied()
    }

    /// Records a charge of `units` to pool `pool` (whose window is `pool_state`).
    #[inline]
    pub fn charge(&mut self, sid: Sid, pool: usize, pool_state: &Pool, units: u64) {
        let slot = &mut self.windows[sid as usize * self.pool_count + pool];
        if slot.window_start != pool_state.window_start {
            *slot = WindowCount {
                window_start: pool_state.window_start,
                used: 0,
            };
        }
        slot.used += units;
    }

    pub fn refund(&mut self, sid: Sid, pool: usize, pool_state: &Pool, units: u64) {
        let slot = &mut self.windows[sid as usize * self.pool_count + pool];
        if slot.window_start == pool_state.window_start {
            slot.used = slot.used.saturating_sub(units);
        }
    }

    #[inline]
    pub fn add_totals(&mut self, sid: Sid, weight: u64, orders: u64) {
        self.total_weight[sid as usize] += weight;
        self.total_orders[sid as usize] += orders;
    }

    pub fn refund_total_weight(&mut self, sid: Sid, weight: u64) {
        let total = &mut self.total_weight[sid as usize];
        *total = total.saturating_sub(weight);
    }

    /// Use of pool `pool` in its current window.
    pub fn used(&self, sid: Sid, pool: usize, pool_state: &Pool) -> u64 {
        let slot = self.windows[sid as usize * self.pool_count + pool];
        if slot.window_start == pool_state.window_start {
            slot.used
        } else {
            0
        }
    }

    pub fn totals(&self, sid: Sid) -> (u64, u64) {
        (self.total_weight[sid as usize], self.total_orders[sid as usize])
    }

    /// Re-indexes the per-window counts after the pools were replaced; `old_index[i]`
    /// is where new pool `i` used to be, if it existed.
    pub fn remap_pools(&mut self, old_index: &[Option<usize>]) {
        let old_count = self.pool_count;
        let new_count = old_index.len();
        let mut windows = Vec::with_capacity(self.names.len() * new_count);
        for sid in 0..self.names.len() {
            for old in old_index {
                windows.push(match old {
                    Some(o) => self.windows[sid * old_count + o],
                    None => WindowCount::default(),
                });
            }
        }
        self.windows = windows;
        self.pool_count = new_count;
    }
}
