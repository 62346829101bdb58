//! `bench=threadspawn`: will-it-scale's `threadspawn1` inside the kernel,
//! run as Linux runs it.
//!
//! Workers are processes, one per CPU, in the innermost namespace of an
//! `ns_depth` chain; each loops create-a-thread + join (see [`worker`]).
//! Two things follow Linux: each new thread runs where `placement=` puts it
//! (by default on its creator's CPU, as will-it-scale's bound processes
//! have it), and the join returns at the thread's `mm_release`, so its
//! release overlaps the next fork. A sample runs every worker for
//! `sample_ms`; the strategy pairs are interleaved in rounds, each round
//! mirrored: a fresh random order, then the same order reversed, each run
//! for half of `sample_ms` (C A D B B D A C ...). Every version's mean
//! position in a round is then the same, so a drift that is linear over
//! the round cancels out of each round's ratios, which the report pairs.
//!
//! Each sample also measures host steal; a sample over `max_steal` is run
//! again, at most twice, the attempt with the least steal is kept, and
//! every attempt is reported. The report itself is in [`report`].

#[cfg(target_os = "none")]
mod linux;
mod params;
pub(crate) mod placement;
#[cfg(target_os = "none")]
mod report;
#[cfg(target_os = "none")]
mod run;
#[cfg(target_os = "none")]
mod worker;

#[cfg(test)]
pub(crate) use params::MAX_WORKER_COUNTS;
pub(crate) use params::ThreadspawnParams;
#[cfg(target_os = "none")]
pub(crate) use run::run;
