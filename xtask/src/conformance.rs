//! `cargo xtask conformance` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("`conformance` is not built yet".into())
}
