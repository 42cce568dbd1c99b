//! CUDA backend of smoothloss.
#![warn(missing_docs)]
