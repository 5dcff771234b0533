//! Capped exponential backoff with jitter, for reconnecting.

use std::time::Duration;

use crate::config::BackoffConfig;

/// Waits that double from `min` up to `max`, each drawn at random from the upper half of the
/// current step ("equal jitter"), so many clients that lost the same server do not all come back
/// at the same instant.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff at its first step.
    pub fn new(config: BackoffConfig) -> Self {
        let mut seed = [0u8; 8];
        // Jitter only needs to differ between clients; a failing random source falls back to the
        // clock.
        if getrandom::fill(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            seed = u64::from(nanos).to_le_bytes();
        }
        Self::with_seed(config, u64::from_le_bytes(seed))
    }

    /// A backoff with a fixed seed (tests).
    pub fn with_seed(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The ceiling of the current step: `min · 2^attempt`, capped at `max`.
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.config
            .min
            .checked_mul(factor)
            .map_or(self.config.max, |d| d.min(self.config.max))
    }

    /// The next wait, in `[step/2, step]`, and moves to the next step.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.step();
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let spread = u64::try_from((step - half).as_micros()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            self.random() % (spread + 1)
        };
        half + Duration::from_micros(jitter)
    }

    /// Back to the first step (after a successful login).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// xorshift64: plenty for jitter.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BackoffConfig {
        BackoffConfig {
            min: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }

    #[test]
    fn waits_stay_within_bounds_and_grow_to_the_cap() {
        for seed in [1, 2, 42, u64::MAX] {
            let mut b = Backoff::with_seed(config(), seed);
            let mut prev_step = Duration::ZERO;
            for _ in 0..100 {
                let step = b.step();
                assert!(step >= prev_step, "steps never shrink");
                assert!(step <= Duration::from_secs(10));
                let wait = b.next_wait();
                assert!(
                    wait >= step / 2 && wait <= step,
                    "{wait:?} outside {step:?}"
                );
                assert!(wait >= Duration::from_millis(100));
                prev_step = step;
            }
            assert_eq!(b.step(), Duration::from_secs(10), "capped");
        }
    }

    #[test]
    fn first_steps_double_and_reset_starts_over() {
        let mut b = Backoff::with_seed(config(), 7);
        let steps: Vec<_> = (0..4)
            .map(|_| {
                let s = b.step();
                b.next_wait();
                s.as_millis()
            })
            .collect();
        assert_eq!(steps, [200, 400, 800, 1600]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(200));
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::with_seed(config(), 99);
        for _ in 0..10 {
            b.next_wait();
        }
        let waits: std::collections::HashSet<_> = (0..20).map(|_| b.next_wait()).collect();
        assert!(waits.len() > 10, "jitter should spread waits: {waits:?}");
    }
}
