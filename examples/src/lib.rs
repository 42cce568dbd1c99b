//! Runnable examples of smoothloss (this library target is empty; the examples are the point):
//!
//! ```text
//! cargo run -p smoothloss-examples --example classifier_step --release
//! cargo run -p smoothloss-examples --example box_regression --release
//! cargo run -p smoothloss-examples --example new_backend_conformance --release
//! ```
//!
//! `data/seed_classification.csv` is the seed article's data set, used by
//! `cargo xtask experiment` (see `EXPERIMENT.md`).
