//! Every formula ID of `spec/formulas/*.md` is asserted by at least one test: some counting
//! `#[test]` function (one that makes an assertion, is not ignored and not `should_panic`)
//! calls `covers!("ID")` in its body. Mentions in comments, docs or strings count for nothing.
//! The rule and the scanner are in `smoothloss_spec::coverage` and `spec/formulas/README.md`.
//! Scanned: the spec crate's tests and the workspace crates' tests (`crates/*/tests`).

use smoothloss_spec::coverage::{self, Covered};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// IDs that no test can assert yet, each with the reason. An entry that is covered after all,
/// or that is not a formula ID, fails the test, so this list cannot go stale silently.
const NOT_YET_ASSERTED: &[(&str, &str)] = &[];

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

fn test_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("spec/tests"), &mut files);
    if let Ok(crates) = std::fs::read_dir(root.join("crates")) {
        for c in crates.flatten() {
            rust_files(&c.path().join("tests"), &mut files);
        }
    }
    files.sort();
    files
}

#[test]
fn every_formula_id_is_asserted_by_a_test() {
    let ids = smoothloss_spec::formulas::all_ids().expect("spec/formulas is readable");
    assert!(
        ids.len() >= 30,
        "expected the formula files to define IDs, found {}",
        ids.len()
    );
    let files = test_sources();
    assert!(files.iter().any(|f| f.ends_with("spec/tests/snapshots.rs")));
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let scan = coverage::scan(&src);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let name = f.strip_prefix(root).unwrap_or(f).display().to_string();
        for s in scan.stray {
            problems.push(format!("{name}: {s}"));
        }
        for Covered { id, test } in scan.covered {
            if !ids.iter().any(|(_, known)| *known == id) {
                problems.push(format!("{name}: `{test}` covers unknown ID {id}"));
            }
            by_id.entry(id).or_default().push(format!("{name}::{test}"));
        }
    }
    for (id, why) in NOT_YET_ASSERTED {
        if !ids.iter().any(|(_, known)| known == id) {
            problems.push(format!("allow-list: {id} is not a formula ID"));
        }
        if by_id.contains_key(*id) {
            problems.push(format!(
                "allow-list: {id} is asserted now; remove it ({why})"
            ));
        }
    }
    for (file, id) in &ids {
        if !by_id.contains_key(id) && !NOT_YET_ASSERTED.iter().any(|(a, _)| a == id) {
            problems.push(format!("{file}: {id} is asserted by no test"));
        }
    }
    for (id, tests) in &by_id {
        eprintln!("{id}: {}", tests.join(", "));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn formula_ids_are_parsed_from_level_3_headings_only() {
    assert_eq!(
        smoothloss_spec::formulas::ids_in_markdown(
            "### CE-1: a\n### not an id\n## CE-2: b\n### BOX-13: c\n#### REG-1: d"
        ),
        vec!["CE-1".to_string(), "BOX-13".to_string()]
    );
    assert!(!smoothloss_spec::formulas::is_formula_id("ce-1"));
    assert!(!smoothloss_spec::formulas::is_formula_id("CE-"));
}

#[test]
fn formula_ids_are_unique() {
    let ids = smoothloss_spec::formulas::all_ids().unwrap();
    let mut seen = std::collections::HashSet::new();
    for (f, id) in &ids {
        assert!(seen.insert(id.clone()), "{id} defined twice ({f})");
    }
}

/// The scanner reads a real test file as intended: the snapshot tests are counting tests.
#[test]
fn the_scanner_reads_the_snapshot_tests() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots.rs");
    let scan = coverage::scan(&std::fs::read_to_string(path).unwrap());
    assert!(scan.stray.is_empty(), "{:?}", scan.stray);
    assert!(scan.covered.contains(&Covered {
        id: "CE-2".into(),
        test: "snapshot_cross_entropy".into()
    }));
    assert!(scan.covered.contains(&Covered {
        id: "BOX-13".into(),
        test: "snapshot_box_losses".into()
    }));
}
