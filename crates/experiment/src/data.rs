//! The article's data set: the CSV loader and the check of its train/test split.

use nalgebra::DMatrix;

use crate::{CLASSES, DATA_FILE, FEATURES, TEST_FRACTION};

/// The article's data set, split by the CSV's `split` column. Inputs are stored one sample per
/// column (`FEATURES x N`), so that the logits `CLASSES x N` in nalgebra's column-major storage
/// are exactly the row-major `[N, CLASSES]` buffer the loss backends take.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Training inputs, `FEATURES x n_train`.
    pub x_train: DMatrix<f32>,
    /// Training labels in `0..CLASSES`.
    pub y_train: Vec<i64>,
    /// Test inputs, `FEATURES x n_test`.
    pub x_test: DMatrix<f32>,
    /// Test labels in `0..CLASSES`.
    pub y_test: Vec<i64>,
}

/// Parses the CSV `x0,..,x9,label,split` (header required; `split` is `train` or `test`).
/// Every malformed line is an error naming the line; nothing is skipped silently.
pub fn parse_csv(text: &str) -> Result<Dataset, String> {
    let mut lines = text.lines().enumerate();
    let expected: Vec<String> = (0..FEATURES)
        .map(|j| format!("x{j}"))
        .chain(["label".to_string(), "split".to_string()])
        .collect();
    let (_, header) = lines.next().ok_or("empty CSV: no header line")?;
    let header: Vec<&str> = header
        .trim_end_matches('\r')
        .split(',')
        .map(str::trim)
        .collect();
    if header != expected {
        return Err(format!(
            "bad CSV header `{}`; expected `{}`",
            header.join(","),
            expected.join(",")
        ));
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let (mut y_train, mut y_test) = (Vec::new(), Vec::new());
    for (idx, line) in lines {
        let lineno = idx + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != FEATURES + 2 {
            return Err(format!(
                "line {lineno}: {} fields, expected {}",
                fields.len(),
                FEATURES + 2
            ));
        }
        let mut x = [0.0_f32; FEATURES];
        for (j, f) in fields[..FEATURES].iter().enumerate() {
            let v: f64 = f
                .parse()
                .map_err(|_| format!("line {lineno}: x{j} = `{f}` is not a number"))?;
            if !v.is_finite() {
                return Err(format!("line {lineno}: x{j} = `{f}` is not finite"));
            }
            x[j] = v as f32;
        }
        let label_text = fields[FEATURES];
        let label: i64 = label_text
            .parse()
            .map_err(|_| format!("line {lineno}: label `{label_text}` is not an integer"))?;
        if !(0..CLASSES as i64).contains(&label) {
            return Err(format!("line {lineno}: label {label} outside 0..{CLASSES}"));
        }
        match fields[FEATURES + 1] {
            "train" => {
                train.extend_from_slice(&x);
                y_train.push(label);
            }
            "test" => {
                test.extend_from_slice(&x);
                y_test.push(label);
            }
            other => {
                return Err(format!(
                    "line {lineno}: split `{other}` is neither `train` nor `test`"
                ));
            }
        }
    }
    if y_train.is_empty() || y_test.is_empty() {
        return Err(format!(
            "need both splits: {} train rows, {} test rows",
            y_train.len(),
            y_test.len()
        ));
    }
    Ok(Dataset {
        x_train: DMatrix::from_column_slice(FEATURES, y_train.len(), &train),
        y_train,
        x_test: DMatrix::from_column_slice(FEATURES, y_test.len(), &test),
        y_test,
    })
}

/// Checks that the split is the article's `train_test_split(test_size=0.2)`: scikit-learn puts
/// `ceil(0.2 * n)` rows in the test set.
pub fn check_article_split(d: &Dataset) -> Result<(), String> {
    let n = d.y_train.len() + d.y_test.len();
    let want_test = (TEST_FRACTION * n as f64).ceil() as usize;
    if d.y_test.len() != want_test {
        return Err(format!(
            "the split column gives {} test rows of {n}; the article's test_size=0.2 gives {want_test}",
            d.y_test.len()
        ));
    }
    Ok(())
}

/// Samples per class.
pub(crate) fn class_counts(y: &[i64]) -> [usize; CLASSES] {
    let mut c = [0; CLASSES];
    for &v in y {
        c[v as usize] += 1;
    }
    c
}

/// Loads the article's data from the repository and checks its split.
pub fn load_article_data() -> Result<Dataset, String> {
    let path = crate::project_root().join(DATA_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let data = parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    check_article_split(&data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_of(rows: &[&str]) -> String {
        let mut s = String::from("x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,label,split\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    #[test]
    fn csv_loader_reads_good_input() {
        let d = parse_csv(&csv_of(&[
            "1,2,3,4,5,6,7,8,9,10,4,train",
            "0,0,0,0,0,0,0,0,0,-1.5e-1,0,test",
            "",
        ]))
        .unwrap();
        assert_eq!(d.y_train, vec![4]);
        assert_eq!(d.y_test, vec![0]);
        assert_eq!(d.x_train.column(0).as_slice()[9], 10.0);
        assert_eq!(d.x_test[(9, 0)], -0.15);
    }

    #[test]
    fn csv_loader_rejects_malformed_input() {
        let good = "1,2,3,4,5,6,7,8,9,10,1,train";
        let test = "1,2,3,4,5,6,7,8,9,10,1,test";
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("a,b\n".to_string() + good, "header"),
            (csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,1,train"]), "fields"),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,1,train,x"]),
                "fields",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,five,6,7,8,9,10,1,train"]),
                "not a number",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,NaN,6,7,8,9,10,1,train"]),
                "not finite",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,5,train"]),
                "outside",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,-1,train"]),
                "outside",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,1.5,train"]),
                "not an integer",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,1,valid"]),
                "split",
            ),
            (csv_of(&[good]), "both splits"),
        ];
        for (text, want) in cases {
            let e = parse_csv(&text).unwrap_err();
            assert!(e.contains(want), "expected `{want}` in error `{e}`");
        }
    }

    #[test]
    fn reads_the_articles_split() {
        let d = load_article_data().unwrap();
        assert_eq!((d.y_train.len(), d.y_test.len()), (800, 200));
        assert_eq!(d.x_train.nrows(), FEATURES);
        // Every class appears in both splits (so the article's formula weights all classes).
        assert!(class_counts(&d.y_train).iter().all(|&c| c > 0));
        assert!(class_counts(&d.y_test).iter().all(|&c| c > 0));
        let mut bad = d.clone();
        bad.y_test.pop();
        assert!(check_article_split(&bad).is_err());
    }
}
