//! Which formula IDs the tests assert: the source scanner behind `tests/formula_coverage.rs`
//! (the rule is in `spec/formulas/README.md`, "Formula IDs").
//!
//! A formula ID counts as checked by a test when a [`covers!`](crate::covers) call naming it
//! stands in the body of a *counting* test: a `#[test]` function (a plain one or one inside
//! `proptest!`) that is neither `#[ignore]`d nor `#[should_panic]`, and whose body calls an
//! assertion (a macro or function whose name contains `assert`: `assert!`, `assert_eq!`,
//! `prop_assert!`, `kit::assert_close`, `insta::assert_snapshot!`, ...). Comments are removed
//! before scanning and string literals are opaque, so an ID in a comment, a doc line or a
//! string counts for nothing. A `covers!` anywhere else (a helper, a non-counting test) is
//! reported as stray, so that a reader never sees a `covers!` that does not count.

/// One `covers!` call inside a counting test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    /// The formula ID named.
    pub id: String,
    /// The test function's name.
    pub test: String,
}

/// What a source file contributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// IDs named by `covers!` in counting tests.
    pub covered: Vec<Covered>,
    /// `covers!` calls outside counting tests, as `line N: reason`.
    pub stray: Vec<String>,
}

/// Blanks comments (to spaces, newlines kept) and, in the second string, the contents of string
/// and character literals too; both have the byte length of `src`, so offsets agree.
pub fn strip(src: &str) -> (String, String) {
    let b = src.as_bytes();
    let mut text = b.to_vec(); // comments blanked
    let mut code = b.to_vec(); // comments and literal contents blanked
    let blank = |v: &mut Vec<u8>, from: usize, to: usize| {
        for x in &mut v[from..to] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut text, i, end);
            blank(&mut code, i, end);
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut text, i, j);
            blank(&mut code, i, j);
            i = j;
        } else if c == b'r'
            && (i == 0 || !ident(b[i - 1]) || b[i - 1] == b'b')
            && matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
        {
            // Raw string r"..." or r#"..."#.
            let hashes = b[i + 1..].iter().take_while(|&&x| x == b'#').count();
            let open = i + 1 + hashes;
            if b.get(open) != Some(&b'"') {
                i += 1;
                continue;
            }
            let mut closing = vec![b'"'];
            closing.extend(std::iter::repeat_n(b'#', hashes));
            let end = b[open + 1..]
                .windows(closing.len())
                .position(|w| w == closing.as_slice())
                .map_or(b.len(), |p| open + 1 + p);
            blank(&mut code, open + 1, end);
            i = (end + closing.len()).min(b.len());
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(b.len());
            blank(&mut code, i + 1, end);
            i = end + 1;
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}', a multi-byte char) or a lifetime.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else {
                let len = src[i + 1..].chars().next().map_or(0, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
            };
            match end {
                Some(e) => {
                    blank(&mut code, i + 1, e);
                    i = e + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    let s = |v: Vec<u8>| String::from_utf8(v).expect("only ASCII bytes were written");
    (s(text), s(code))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The offset just past the bracket matching the one at `open` (`(`/`)` or `{`/`}`).
fn matching(code: &[u8], open: usize) -> Option<usize> {
    let (o, c) = (code[open], if code[open] == b'(' { b')' } else { b'}' });
    let mut depth = 0usize;
    for (k, &x) in code.iter().enumerate().skip(open) {
        if x == o {
            depth += 1;
        } else if x == c {
            depth -= 1;
            if depth == 0 {
                return Some(k + 1);
            }
        }
    }
    None
}

/// Offsets of the word `word` (not part of a longer identifier) in `code`.
fn words<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let b = code.as_bytes();
    code.match_indices(word).map(|(i, _)| i).filter(move |&i| {
        (i == 0 || !is_ident(b[i - 1])) && b.get(i + word.len()).is_none_or(|&c| !is_ident(c))
    })
}

/// True when `body` calls an assertion: an identifier containing `assert` followed by `!` or `(`.
pub fn has_assertion(body: &str) -> bool {
    let b = body.as_bytes();
    body.match_indices("assert").any(|(i, _)| {
        let end = i + b[i..].iter().take_while(|&&c| is_ident(c)).count();
        let next = b[end..].iter().find(|c| !c.is_ascii_whitespace());
        matches!(next, Some(b'!') | Some(b'('))
    })
}

/// The test functions of `src`: `(name, body range, counts)`, where `counts` is false for an
/// ignored or `should_panic` test and for one whose body makes no assertion.
fn tests(code: &str) -> Vec<(String, std::ops::Range<usize>, bool)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in code.match_indices("#[test]").map(|(i, _)| i) {
        // Attributes of the item: back to the end of the previous item, forward to `fn`.
        let start = b[..at]
            .iter()
            .rposition(|&c| c == b'}' || c == b';' || c == b'{')
            .map_or(0, |p| p + 1);
        let Some(fn_at) = words(&code[at..], "fn").next().map(|p| at + p) else {
            continue;
        };
        let attrs = &code[start..fn_at];
        let excluded = attrs.contains("#[ignore") || attrs.contains("should_panic");
        let name: String = code[fn_at + 2..]
            .trim_start()
            .bytes()
            .take_while(|&c| is_ident(c))
            .map(char::from)
            .collect();
        let Some(paren) = code[fn_at..].find('(').map(|p| fn_at + p) else {
            continue;
        };
        let Some(after_params) = matching(b, paren) else {
            continue;
        };
        let Some(brace) = code[after_params..].find('{').map(|p| after_params + p) else {
            continue;
        };
        let Some(end) = matching(b, brace) else {
            continue;
        };
        let body = brace..end;
        let counts = !excluded && has_assertion(&code[body.clone()]);
        out.push((name, body, counts));
    }
    out
}

/// Scans one source file for `covers!` calls (see the module docs).
pub fn scan(src: &str) -> Scan {
    let (text, code) = strip(src);
    let b = code.as_bytes();
    let tests = tests(&code);
    let mut scan = Scan::default();
    for at in words(&code, "covers") {
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + "covers".len()..];
        let Some(bang) = rest.trim_start().strip_prefix('!') else {
            continue; // the function `kit::covers` or another use of the word
        };
        let args = bang.trim_start();
        if !args.starts_with('(') {
            continue;
        }
        let paren = code.len() - args.len();
        let Some(close) = matching(b, paren) else {
            scan.stray.push(format!("line {line}: unclosed covers!("));
            continue;
        };
        let ids: Vec<String> = text[paren + 1..close - 1]
            .split('"')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect();
        match tests.iter().find(|(_, body, _)| body.contains(&at)) {
            Some((name, _, true)) => scan.covered.extend(ids.into_iter().map(|id| Covered {
                id,
                test: name.clone(),
            })),
            Some((name, _, false)) => scan.stray.push(format!(
                "line {line}: covers! in test `{name}`, which is ignored, should_panic or asserts nothing"
            )),
            None => scan
                .stray
                .push(format!("line {line}: covers! outside a #[test] function")),
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(src: &str) -> Vec<String> {
        scan(src).covered.into_iter().map(|c| c.id).collect()
    }

    #[test]
    fn strip_removes_comments_and_literal_contents() {
        let src = "a // x \"q\n/* b /* c */ \"d\" */ \"e//f\" r#\"g\"# 'h' '\\'' 'i ";
        let (text, code) = strip(src);
        assert_eq!(text.len(), src.len());
        assert_eq!(code.len(), src.len());
        assert!(!text.contains('x') && !text.contains('b') && !text.contains('d'));
        assert!(text.contains("\"e//f\"") && text.contains("r#\"g\"#"));
        assert!(!code.contains('e') && !code.contains('g') && !code.contains('h'));
        assert!(
            code.contains("'i "),
            "a lifetime-like quote is left alone: {code:?}"
        );
    }

    #[test]
    fn a_covers_in_an_asserting_test_counts() {
        let src = r#"
            #[test]
            fn t() { covers!("CE-1", "CE-2"); let s = format!("{}", 1); assert_eq!(s, "1"); }
        "#;
        assert_eq!(ids(src), ["CE-1", "CE-2"]);
        assert_eq!(scan(src).covered[0].test, "t");
        let prop = r#"proptest! { #[test] fn p((a, b) in pair(1, 2), c in 0..3) {
            covers!("BOX-8"); prop_assert!(a < b); } }"#;
        assert_eq!(ids(prop), ["BOX-8"]);
        let helper = r#"#[test] fn t() { covers!("REG-1"); kit::assert_close(&a, &b, T); }"#;
        assert_eq!(ids(helper), ["REG-1"]);
    }

    #[test]
    fn comments_strings_and_non_counting_tests_do_not_count() {
        let cases = [
            // In a comment or a string.
            r#"#[test] fn t() { // covers!("CE-1")
               assert!(x > 0); }"#,
            r#"#[test] fn t() { let s = "covers!(\"CE-1\")"; assert!(s.len() > 0); }"#,
            // A test that asserts nothing.
            r#"#[test] fn t() { covers!("CE-1"); run(); }"#,
            // The word in a comment is not an assertion.
            r#"#[test] fn t() { covers!("CE-1"); run(); /* assert!(x) */ }"#,
            // Ignored or should_panic.
            r#"#[test] #[ignore] fn t() { covers!("CE-1"); assert!(x); }"#,
            r#"#[ignore = "slow"] #[test] fn t() { covers!("CE-1"); assert!(x); }"#,
            r#"#[test] #[should_panic] fn t() { covers!("CE-1"); assert!(x); }"#,
            // A helper, not a test.
            r#"fn helper() { covers!("CE-1"); assert!(x); }"#,
        ];
        for src in cases {
            assert!(ids(src).is_empty(), "{src}");
        }
        // Those with a real covers! call are reported as stray.
        for src in &cases[2..] {
            assert_eq!(scan(src).stray.len(), 1, "{src}");
        }
    }

    #[test]
    fn a_test_after_a_non_counting_one_is_scanned_on_its_own() {
        let src = r#"
            #[test] fn quiet() { covers!("CE-1"); run(); }
            #[test] fn loud() { covers!("CE-2"); assert!(ok()); }
        "#;
        let s = scan(src);
        assert_eq!(
            s.covered,
            [Covered {
                id: "CE-2".into(),
                test: "loud".into()
            }]
        );
        assert_eq!(s.stray.len(), 1);
        assert!(s.stray[0].contains("quiet"));
    }

    #[test]
    fn assertion_detection() {
        assert!(has_assertion("assert!(a)"));
        assert!(has_assertion("prop_assert_eq!(a, b)"));
        assert!(has_assertion("kit::assert_close (&a, &b, t)"));
        assert!(!has_assertion("let asserted = 1;"));
        assert!(!has_assertion("run()"));
    }
}
