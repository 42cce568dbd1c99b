//! Every formula ID in `spec/formulas/*.md` is checked by at least one test: this test fails
//! when an ID appears in the Markdown but in no test source (the spec crate's tests, the
//! conformance suite's checks, and the backends' tests).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// True when `text` contains `id` not followed by another digit (so `CE-1` is not `CE-10`).
fn mentions(text: &str, id: &str) -> bool {
    text.match_indices(id).any(|(i, _)| {
        let before_ok = i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = text.as_bytes().get(i + id.len());
        before_ok && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

#[test]
fn every_formula_id_is_checked_by_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut files = Vec::new();
    rust_files(&root.join("spec/tests"), &mut files);
    files.push(root.join("spec/src/conformance.rs"));
    for krate in ["core", "backend-cpu", "backend-cuda"] {
        rust_files(&root.join("crates").join(krate).join("tests"), &mut files);
    }
    let sources: String = files
        .iter()
        .filter(|p| !p.ends_with("formula_coverage.rs"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let ids = smoothloss_spec::formulas::all_ids().expect("spec/formulas is readable");
    assert!(
        ids.len() >= 30,
        "expected the formula files to define IDs, found {}",
        ids.len()
    );
    let unchecked: Vec<String> = ids
        .iter()
        .filter(|(_, id)| !mentions(&sources, id))
        .map(|(f, id)| format!("{f}: {id}"))
        .collect();
    assert!(
        unchecked.is_empty(),
        "formula IDs checked by no test:\n{}",
        unchecked.join("\n")
    );
}

#[test]
fn id_matching_is_exact() {
    assert!(mentions("checks CE-1 here", "CE-1"));
    assert!(!mentions("checks CE-10 here", "CE-1"));
    assert!(!mentions("XCE-1", "CE-1"));
    assert_eq!(
        smoothloss_spec::formulas::ids_in_markdown(
            "### CE-1: a\n### not an id\n## CE-2: b\n### BOX-13: c"
        ),
        vec!["CE-1".to_string(), "BOX-13".to_string()]
    );
}

#[test]
fn formula_ids_are_unique() {
    let ids = smoothloss_spec::formulas::all_ids().unwrap();
    let mut seen = std::collections::HashSet::new();
    for (f, id) in &ids {
        assert!(seen.insert(id.clone()), "{id} defined twice ({f})");
    }
}
