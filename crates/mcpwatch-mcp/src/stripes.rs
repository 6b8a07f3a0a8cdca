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
struct Padded<T>(T);

/// The next stripe a new thread gets.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// The current thread's stripe (the first while the thread is being torn down).
fn current() -> usize {
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

/// A `T` per stripe, each on cache lines of its own: what the histograms, the in-flight
/// gauges and [`Gauge`] keep their counters in.
#[derive(Debug, Default)]
pub(crate) struct Striped<T>([Padded<T>; STRIPES]);

impl<T> Striped<T> {
    /// The current thread's stripe.
    pub(crate) fn local(&self) -> Option<&T> {
        self.at(current())
    }

    /// The stripe of index `stripe`.
    pub(crate) fn at(&self, stripe: usize) -> Option<&T> {
        self.0.get(stripe).map(|p| &p.0)
    }

    /// Every stripe, for a scrape to sum.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

/// A gauge in stripes; see [`Gauge::add_at`].
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "rmcp"), allow(dead_code))]
pub(crate) struct Gauge(Striped<AtomicI64>);

#[cfg_attr(not(feature = "rmcp"), allow(dead_code))]
impl Gauge {
    /// Adds `n` in the current thread's stripe; the stripe, for [`Gauge::add_at`].
    pub(crate) fn add(&self, n: i64) -> usize {
        let stripe = current();
        self.add_at(stripe, n);
        stripe
    }

    /// Adds `n` in `stripe`. What one thread added, another takes away in the same
    /// stripe: then each stripe holds only what is live, never below zero, and a scrape
    /// that sums them while requests move from thread to thread can be off by the few
    /// that moved, never by all those ever counted.
    pub(crate) fn add_at(&self, stripe: usize, n: i64) {
        if let Some(gauge) = self.0.at(stripe) {
            gauge.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.iter().map(|g| g.load(Ordering::Relaxed)).sum()
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
    fn a_gauge_taken_away_on_other_threads_never_reads_below_zero() {
        // Requests come in on one thread and end on another, as a server's tasks move
        // between worker threads, while a scraper sums the stripes: every sum it reads is
        // at least zero, and the last is exactly zero.
        let gauge = &Gauge::default();
        let done = &std::sync::atomic::AtomicBool::new(false);
        let lowest = std::thread::scope(|scope| {
            let scraper = scope.spawn(move || {
                let mut lowest = i64::MAX;
                while !done.load(Ordering::Relaxed) {
                    lowest = lowest.min(gauge.get());
                }
                lowest
            });
            let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(64);
            let ender = scope.spawn(move || {
                for stripe in rx {
                    gauge.add_at(stripe, -1);
                }
            });
            let starters: Vec<_> = (0..STRIPES)
                .map(|_| {
                    let tx = tx.clone();
                    scope.spawn(move || {
                        for _ in 0..20_000 {
                            let stripe = gauge.add(1);
                            if tx.send(stripe).is_err() {
                                break;
                            }
                        }
                    })
                })
                .collect();
            drop(tx);
            for s in starters {
                s.join().expect("starter");
            }
            ender.join().expect("ender");
            done.store(true, Ordering::Relaxed);
            scraper.join().expect("scraper")
        });
        assert!(lowest >= 0, "a scrape read {lowest}");
        assert_eq!(gauge.get(), 0);
    }
}
