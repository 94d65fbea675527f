//! walb-benches: criterion benches (`benches/`) and end-to-end throughput runs.
//! Benches measure and print MB/s next to the physical limit; they never assert speed.
