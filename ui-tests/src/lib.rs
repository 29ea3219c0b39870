//! Compile-fail and compile-pass tests of `#[cluster_message]` and `#[distributed_actor]`.
//!
//! The cases live in `tests/fail` (each with the exact compiler output in a `.stderr` file)
//! and `tests/pass`. This crate depends on `actix-cluster` alone, so the pass cases also
//! prove that a user crate needs no direct actix, serde or inventory dependency.
