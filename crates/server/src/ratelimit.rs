//! Failed-login limiting per client IP: after N failures within a minute, further attempts get
//! 429 with `Retry-After` until the oldest failure ages out. Only failures count, so people who
//! type their password right are never slowed down; guessing is.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Bound on tracked addresses; beyond it stale entries are swept.
const MAX_TRACKED: usize = 10_000;

pub struct LoginLimiter {
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32) -> Self {
        Self {
            max_failures,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when this address has used up its failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limiter lock");
        let Some(list) = failures.get_mut(&ip) else {
            return Ok(());
        };
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            list.pop_front();
        }
        if list.len() >= self.max_failures as usize {
            let oldest = *list.front().expect("non-empty");
            let wait = WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, list| list.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        failures.entry(ip).or_default().push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_allowed_failures_only_for_that_address() {
        let limiter = LoginLimiter::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.record_failure(a);
        }
        let wait = limiter.check(a).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn zero_disables() {
        let limiter = LoginLimiter::new(0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            limiter.record_failure(a);
        }
        assert!(limiter.check(a).is_ok());
    }
}
