//! Counters in stripes: each thread adds to a stripe of its own (threads beyond
//! [`STRIPES`] share them), laid out on cache lines no other stripe uses, and a scrape sums
//! them. A counter every request writes, shared by all the server's threads, moves its
//! cache line from core to core on each request; in stripes it stays in the core that
//! writes it. The cost is memory, [`STRIPES`] times a counter's, and a scrape that adds
//! the stripes up.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// Stripes per counter.
pub(crate) const STRIPES: usize = 8;

/// A stripe's own cache lines: two, as processors fetch adjacent lines in pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// The next stripe a new thread gets.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// The current thread's stripe (the first while the thread is being torn down).
pub(crate) fn current() -> usize {
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

/// A gauge in stripes. A thread may take away what another added: only the sum means
/// anything.
#[derive(Debug, Default)]
pub(crate) struct Gauge([Padded<AtomicI64>; STRIPES]);

impl Gauge {
    pub(crate) fn add(&self, n: i64) {
        if let Some(stripe) = self.0.get(current()) {
            stripe.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_are_cache_lines_apart() {
        assert_eq!(std::mem::align_of::<Padded<AtomicI64>>(), 128);
        assert_eq!(std::mem::size_of::<Gauge>(), 128 * STRIPES);
    }

    #[test]
    fn a_gauge_sums_what_threads_added_and_took_away() {
        let gauge = Gauge::default();
        std::thread::scope(|scope| {
            for _ in 0..2 * STRIPES {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        gauge.add(2);
                    }
                });
            }
        });
        assert_eq!(gauge.get(), 2 * STRIPES as i64 * 2000);
        // Added on one thread, taken away on others: each stripe may go below zero, the
        // sum may not.
        std::thread::scope(|scope| {
            for _ in 0..2 * STRIPES {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        gauge.add(-2);
                    }
                });
            }
        });
        assert_eq!(gauge.get(), 0);
    }
}
