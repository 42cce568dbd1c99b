//! The formula IDs of `spec/formulas/*.md` (headings `### CE-1: title`), so that a test can
//! insist every ID is checked by some test.

use std::path::{Path, PathBuf};

/// The directory of the formula Markdown files.
pub fn formulas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("formulas")
}

/// Extracts the IDs of `### ID: title` headings from Markdown text, in order.
pub fn ids_in_markdown(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("### "))
        .filter_map(|rest| rest.split_once(':').map(|(id, _)| id.trim()))
        .filter(|id| is_formula_id(id))
        .map(String::from)
        .collect()
}

/// True for `PREFIX-NUMBER` with an upper-case prefix, e.g. `CE-4`, `BOX-12`.
pub fn is_formula_id(s: &str) -> bool {
    let Some((prefix, num)) = s.split_once('-') else {
        return false;
    };
    !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_uppercase())
        && !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit())
}

/// Every `(file name, id)` in the formulas directory.
pub fn all_ids() -> std::io::Result<Vec<(String, String)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(formulas_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend(
            ids_in_markdown(&text)
                .into_iter()
                .map(|id| (name.clone(), id)),
        );
    }
    Ok(out)
}
