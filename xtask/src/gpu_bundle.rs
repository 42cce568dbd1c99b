//! `cargo xtask gpu-bundle` (being written).

pub fn run(_args: &[String]) -> Result<(), String> {
    Err("`gpu-bundle` is not built yet".into())
}
