//! Benchmarks the kernel runs after boot (`bench=...`), and the statistics
//! they report with.

pub mod stats;
