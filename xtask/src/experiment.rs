//! `cargo xtask experiment` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("`experiment` is not built yet".into())
}
