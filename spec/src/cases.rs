//! The case-file format `smoothloss-cases/1` (see `spec/cases/README.md`) and its decoder.
//!
//! A case names a loss, its parameters, its inputs and the expected loss values and
//! gradients. Decoding turns it into a typed [`LossCall`]; an unknown loss or parameter is
//! reported as [`CaseError::Unsupported`], never skipped silently.

use serde_json::Value;
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Huber, Reduction, SigmoidFocal,
    SmoothL1, ThresholdWeight,
};
use thiserror::Error;

pub mod linear_ce;

/// The only format this reader accepts.
pub const FORMAT: &str = "smoothloss-cases/1";

/// Why a case file or case could not be used.
#[derive(Debug, Error)]
pub enum CaseError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The `format` field is missing or unknown.
    #[error("unknown case-file format {0:?} (expected \"{FORMAT}\")")]
    UnknownFormat(String),
    /// A case is malformed.
    #[error("case {id}: malformed: {what}")]
    Malformed {
        /// Case id.
        id: String,
        /// What is wrong.
        what: String,
    },
    /// A case asks for a loss or parameter this reader does not know.
    #[error("case {id}: unsupported: {what}")]
    Unsupported {
        /// Case id.
        id: String,
        /// What is unsupported.
        what: String,
    },
}

/// A parsed case file.
#[derive(Debug, Clone)]
pub struct CaseFile {
    /// Who generated the expected values.
    pub generator: String,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One case, still in JSON form (decode with [`Case::decode`]).
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique id.
    pub id: String,
    /// Loss name.
    pub loss: String,
    /// Parameters.
    pub params: Value,
    /// Inputs.
    pub inputs: Value,
    /// Expected results.
    pub expected: Value,
}

/// A dense tensor: shape and row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f64>,
}

/// Owned cross-entropy targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices (or the ignore index).
    Classes(Vec<i64>),
    /// Probabilities `[N, C]`.
    Probs(Vec<f64>),
}

/// A decoded loss call: configuration plus inputs, all in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum LossCall {
    /// Cross-entropy.
    CrossEntropy {
        /// Configuration.
        cfg: CrossEntropy,
        /// Logits `[rows, classes]`.
        logits: Vec<f64>,
        /// Rows N.
        rows: usize,
        /// Classes C.
        classes: usize,
        /// Targets.
        targets: Targets,
    },
    /// Box loss on aligned pairs.
    BoxLoss {
        /// Configuration.
        cfg: BoxLoss,
        /// Predicted boxes `[N, 4]`.
        pred: Vec<f64>,
        /// Target boxes `[N, 4]`.
        target: Vec<f64>,
    },
    /// Pairwise IoU.
    BoxIou {
        /// Box layout.
        format: BoxFormat,
        /// `[N, 4]`.
        boxes1: Vec<f64>,
        /// `[M, 4]`.
        boxes2: Vec<f64>,
    },
    /// Smooth L1.
    SmoothL1 {
        /// Configuration.
        cfg: SmoothL1,
        /// Predictions.
        pred: Vec<f64>,
        /// Targets.
        target: Vec<f64>,
    },
    /// Huber.
    Huber {
        /// Configuration.
        cfg: Huber,
        /// Predictions.
        pred: Vec<f64>,
        /// Targets.
        target: Vec<f64>,
    },
    /// BCE with logits.
    Bce {
        /// Configuration.
        cfg: BceWithLogits,
        /// Logits.
        logits: Vec<f64>,
        /// Targets in [0, 1].
        targets: Vec<f64>,
    },
    /// Sigmoid focal loss.
    Focal {
        /// Configuration.
        cfg: SigmoidFocal,
        /// Logits.
        logits: Vec<f64>,
        /// Targets in [0, 1].
        targets: Vec<f64>,
    },
}

/// Expected results of a case.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expected {
    /// Loss values (one for mean/sum; per item for none), or the pairwise IoU for `box_iou`.
    pub loss: Vec<f64>,
    /// Gradient of the sum of the returned losses with respect to the differentiated input.
    pub grad: Option<Vec<f64>>,
}

impl CaseFile {
    /// Reads and parses a case file.
    pub fn load(path: &std::path::Path) -> Result<Self, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| CaseError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses a case file; rejects an unknown `format`.
    pub fn parse(text: &str) -> Result<Self, CaseError> {
        let v: Value = serde_json::from_str(text)?;
        let format = v.get("format").and_then(Value::as_str).unwrap_or("");
        if format != FORMAT {
            return Err(CaseError::UnknownFormat(format.to_string()));
        }
        let generator = v
            .get("generator")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let raw = v
            .get("cases")
            .and_then(Value::as_array)
            .ok_or_else(|| CaseError::Malformed {
                id: "<file>".into(),
                what: "missing `cases` array".into(),
            })?;
        let mut cases = Vec::with_capacity(raw.len());
        for (i, c) in raw.iter().enumerate() {
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("<case #{i}>"));
            let field = |name: &str| {
                c.get(name).cloned().ok_or_else(|| CaseError::Malformed {
                    id: id.clone(),
                    what: format!("missing `{name}`"),
                })
            };
            let loss =
                field("loss")?
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| CaseError::Malformed {
                        id: id.clone(),
                        what: "`loss` must be a string".into(),
                    })?;
            cases.push(Case {
                loss,
                params: field("params")?,
                inputs: field("inputs")?,
                expected: field("expected")?,
                id,
            });
        }
        Ok(Self { generator, cases })
    }

    /// The cases whose id contains `filter` (all when `None`).
    pub fn filtered(&self, filter: Option<&str>) -> Vec<&Case> {
        self.cases
            .iter()
            .filter(|c| filter.is_none_or(|f| c.id.contains(f)))
            .collect()
    }
}

impl Case {
    fn malformed(&self, what: impl Into<String>) -> CaseError {
        CaseError::Malformed {
            id: self.id.clone(),
            what: what.into(),
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> CaseError {
        CaseError::Unsupported {
            id: self.id.clone(),
            what: what.into(),
        }
    }

    fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name).filter(|v| !v.is_null())
    }

    fn f64_param(&self, name: &str) -> Result<f64, CaseError> {
        self.param(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.malformed(format!("param `{name}` must be a number")))
    }

    fn reduction(&self) -> Result<Reduction, CaseError> {
        let s = self
            .param("reduction")
            .and_then(Value::as_str)
            .ok_or_else(|| self.malformed("missing `reduction`"))?;
        Reduction::parse(s).ok_or_else(|| self.unsupported(format!("reduction {s:?}")))
    }

    fn format(&self) -> Result<BoxFormat, CaseError> {
        match self.param("format").and_then(Value::as_str) {
            None => Ok(BoxFormat::Xyxy),
            Some(s) => BoxFormat::parse(s).ok_or_else(|| self.unsupported(format!("format {s:?}"))),
        }
    }

    fn numbers(&self, v: &Value, what: &str) -> Result<Vec<f64>, CaseError> {
        v.as_array()
            .ok_or_else(|| self.malformed(format!("`{what}` must be an array")))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| self.malformed(format!("`{what}` holds a non-number")))
            })
            .collect()
    }

    fn tensor(&self, name: &str) -> Result<Tensor, CaseError> {
        let t = self
            .inputs
            .get(name)
            .ok_or_else(|| self.malformed(format!("missing input `{name}`")))?;
        // A bare array is a 1-D tensor.
        if t.is_array() {
            let data = self.numbers(t, name)?;
            return Ok(Tensor {
                shape: vec![data.len()],
                data,
            });
        }
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| self.malformed(format!("`{name}.shape` missing")))?
            .iter()
            .map(|x| x.as_u64().map(|u| u as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| self.malformed(format!("`{name}.shape` must hold integers")))?;
        let data = self.numbers(
            t.get("data")
                .ok_or_else(|| self.malformed(format!("`{name}.data` missing")))?,
            name,
        )?;
        // A shape whose size overflows cannot match any data (and must not wrap or panic).
        let size = shape
            .iter()
            .try_fold(1_usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.malformed(format!("`{name}.shape` {shape:?} overflows")))?;
        if size != data.len() {
            return Err(self.malformed(format!("`{name}` data length does not match its shape")));
        }
        Ok(Tensor { shape, data })
    }

    fn check_params(&self, known: &[&str]) -> Result<(), CaseError> {
        let Some(map) = self.params.as_object() else {
            return Err(self.malformed("`params` must be an object"));
        };
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                return Err(self.unsupported(format!("parameter `{k}` of `{}`", self.loss)));
            }
        }
        Ok(())
    }

    fn expected(&self, loss_key: &str, grad_key: Option<&str>) -> Result<Expected, CaseError> {
        let loss = self.numbers(
            self.expected
                .get(loss_key)
                .ok_or_else(|| self.malformed(format!("missing expected `{loss_key}`")))?,
            loss_key,
        )?;
        let grad = match grad_key {
            None => None,
            Some(k) => match self.expected.get("grad").and_then(|g| g.get(k)) {
                None => None,
                Some(v) => Some(self.numbers(v, k)?),
            },
        };
        Ok(Expected { loss, grad })
    }

    /// Decodes the case into a typed call and its expected results.
    pub fn decode(&self) -> Result<(LossCall, Expected), CaseError> {
        match self.loss.as_str() {
            "cross_entropy" => {
                self.check_params(&[
                    "label_smoothing",
                    "ignore_index",
                    "class_weights",
                    "reduction",
                ])?;
                let logits = self.tensor("logits")?;
                if logits.shape.len() != 2 {
                    return Err(self.malformed("`logits` must be [N, C]"));
                }
                let (rows, classes) = (logits.shape[0], logits.shape[1]);
                let cfg = CrossEntropy {
                    label_smoothing: match self.param("label_smoothing") {
                        None => 0.0,
                        Some(_) => self.f64_param("label_smoothing")?,
                    },
                    ignore_index: match self.param("ignore_index") {
                        None => None,
                        Some(v) => Some(v.as_i64().ok_or_else(|| {
                            self.malformed(format!(
                                "param `ignore_index` must be an integer, got {v}"
                            ))
                        })?),
                    },
                    class_weights: match self.param("class_weights") {
                        None => None,
                        Some(v) => Some(self.numbers(v, "class_weights")?),
                    },
                    reduction: self.reduction()?,
                };
                let targets = match (self.inputs.get("targets"), self.inputs.get("target_probs")) {
                    (Some(t), None) => Targets::Classes(
                        t.as_array()
                            .ok_or_else(|| self.malformed("`targets` must be an array"))?
                            .iter()
                            .map(Value::as_i64)
                            .collect::<Option<_>>()
                            .ok_or_else(|| self.malformed("`targets` must hold integers"))?,
                    ),
                    (None, Some(_)) => Targets::Probs(self.tensor("target_probs")?.data),
                    _ => {
                        return Err(self.malformed("need exactly one of `targets`, `target_probs`"));
                    }
                };
                let exp = self.expected("loss", Some("logits"))?;
                Ok((
                    LossCall::CrossEntropy {
                        cfg,
                        logits: logits.data,
                        rows,
                        classes,
                        targets,
                    },
                    exp,
                ))
            }
            "box_iou_loss" => {
                self.check_params(&[
                    "kind",
                    "format",
                    "eps",
                    "reduction",
                    "threshold_alpha",
                    "threshold",
                ])?;
                let kind_s = self
                    .param("kind")
                    .and_then(Value::as_str)
                    .ok_or_else(|| self.malformed("missing `kind`"))?;
                let kind = BoxLossKind::parse(kind_s)
                    .ok_or_else(|| self.unsupported(format!("box loss kind {kind_s:?}")))?;
                let threshold_weight =
                    match (self.param("threshold_alpha"), self.param("threshold")) {
                        (None, None) => None,
                        (Some(_), Some(_)) => Some(ThresholdWeight {
                            alpha: self.f64_param("threshold_alpha")?,
                            threshold: self.f64_param("threshold")?,
                        }),
                        _ => {
                            return Err(
                                self.malformed("`threshold_alpha` and `threshold` go together")
                            );
                        }
                    };
                let cfg = BoxLoss {
                    kind,
                    format: self.format()?,
                    eps: match self.param("eps") {
                        None => 1e-7,
                        Some(_) => self.f64_param("eps")?,
                    },
                    reduction: self.reduction()?,
                    threshold_weight,
                };
                let exp = self.expected("loss", Some("pred"))?;
                Ok((
                    LossCall::BoxLoss {
                        cfg,
                        pred: self.tensor("pred")?.data,
                        target: self.tensor("target")?.data,
                    },
                    exp,
                ))
            }
            "box_iou" => {
                self.check_params(&["format"])?;
                let exp = self.expected("iou", None)?;
                Ok((
                    LossCall::BoxIou {
                        format: self.format()?,
                        boxes1: self.tensor("boxes1")?.data,
                        boxes2: self.tensor("boxes2")?.data,
                    },
                    exp,
                ))
            }
            "smooth_l1" | "huber" => {
                let pname = if self.loss == "smooth_l1" {
                    "beta"
                } else {
                    "delta"
                };
                self.check_params(&[pname, "reduction"])?;
                let p = self.f64_param(pname)?;
                let reduction = self.reduction()?;
                let pred = self.tensor("pred")?.data;
                let target = self.tensor("target")?.data;
                let exp = self.expected("loss", Some("pred"))?;
                let call = if self.loss == "smooth_l1" {
                    LossCall::SmoothL1 {
                        cfg: SmoothL1 { beta: p, reduction },
                        pred,
                        target,
                    }
                } else {
                    LossCall::Huber {
                        cfg: Huber {
                            delta: p,
                            reduction,
                        },
                        pred,
                        target,
                    }
                };
                Ok((call, exp))
            }
            "bce_with_logits" => {
                self.check_params(&["reduction", "pos_weight"])?;
                let cfg = BceWithLogits {
                    pos_weight: match self.param("pos_weight") {
                        None => None,
                        Some(v) => Some(self.numbers(v, "pos_weight")?),
                    },
                    reduction: self.reduction()?,
                };
                let exp = self.expected("loss", Some("logits"))?;
                Ok((
                    LossCall::Bce {
                        cfg,
                        logits: self.tensor("logits")?.data,
                        targets: self.tensor("targets")?.data,
                    },
                    exp,
                ))
            }
            "sigmoid_focal" => {
                self.check_params(&["alpha", "gamma", "reduction"])?;
                let cfg = SigmoidFocal {
                    alpha: self.f64_param("alpha")?,
                    gamma: self.f64_param("gamma")?,
                    reduction: self.reduction()?,
                };
                let exp = self.expected("loss", Some("logits"))?;
                Ok((
                    LossCall::Focal {
                        cfg,
                        logits: self.tensor("logits")?.data,
                        targets: self.tensor("targets")?.data,
                    },
                    exp,
                ))
            }
            other => Err(self.unsupported(format!("loss {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(loss: &str, params: &str, inputs: &str) -> Case {
        let text = format!(
            r#"{{"format":"{FORMAT}","cases":[{{"id":"t","loss":"{loss}","params":{params},
            "inputs":{inputs},"expected":{{"loss":[0.0]}}}}]}}"#
        );
        CaseFile::parse(&text).unwrap().cases.remove(0)
    }

    #[test]
    fn a_shape_whose_size_overflows_is_malformed_not_a_wrap_or_a_panic() {
        let c = case(
            "cross_entropy",
            r#"{"reduction":"sum"}"#,
            r#"{"logits":{"shape":[4294967296,4294967296],"data":[]},"targets":[]}"#,
        );
        let err = c.decode().unwrap_err();
        assert!(matches!(err, CaseError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("overflows"), "{err}");
    }

    #[test]
    fn a_fractional_ignore_index_is_malformed_not_none() {
        let inputs = r#"{"logits":{"shape":[1,2],"data":[0.0,1.0]},"targets":[1]}"#;
        let c = case(
            "cross_entropy",
            r#"{"reduction":"sum","ignore_index":1.5}"#,
            inputs,
        );
        let err = c.decode().unwrap_err();
        assert!(err.to_string().contains("ignore_index"), "{err}");
        let c = case(
            "cross_entropy",
            r#"{"reduction":"sum","ignore_index":-100}"#,
            inputs,
        );
        match c.decode().unwrap().0 {
            LossCall::CrossEntropy { cfg, .. } => assert_eq!(cfg.ignore_index, Some(-100)),
            other => panic!("{other:?}"),
        }
    }
}
