//! `cargo xtask bench` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("`bench` is not built yet".into())
}
