//! The `errors` check: bad input gives the reference's typed error on every backend, no
//! panic, and no buffer written.

use super::{Outcome, Report};
use smoothloss_core::{
    Backend, BceWithLogits, BoxFormat, BoxLoss, CeTargets, CrossEntropy, Element, Huber, Input,
    Loss, LossError, Losses, Reduction, ReferenceBackend, SigmoidFocal, SmoothL1, Upstream,
};

type BadCall<'a, B> = Box<dyn Fn(&B) -> Result<Loss, LossError> + 'a>;

/// Inputs shared by the bad calls.
struct BadData<T> {
    z6: Vec<T>,
    boxes: Vec<T>,
    e4: Vec<T>,
}

impl<T: Element> BadData<T> {
    fn new() -> Self {
        let f = |v: f64| T::from_f64(v);
        Self {
            z6: (0..6).map(|i| f(i as f64 * 0.3)).collect(),
            boxes: [0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 2.0, 2.0].map(f).to_vec(),
            e4: [0.1, 0.9, 0.0, 1.0].map(f).to_vec(),
        }
    }
}

/// Bad calls, each run on the backend and on the reference: both must refuse with the same
/// error (the formula IDs whose domains they exercise are in the names).
fn bad_calls<'a, T: Element, B: Backend<T> + ?Sized + 'a>(
    data: &'a BadData<T>,
) -> Vec<(&'static str, BadCall<'a, B>)> {
    let f = |v: f64| T::from_f64(v);
    let z6: &'a [T] = &data.z6;
    let boxes: &'a [T] = &data.boxes;
    let e4: &'a [T] = &data.e4;
    let mut v: Vec<(&'static str, BadCall<'a, B>)> = Vec::new();
    macro_rules! add {
        ($name:expr, |$b:ident| $body:expr) => {{
            v.push(($name, Box::new(move |$b: &B| $body)));
        }};
    }
    let ce = CrossEntropy::default;
    add!("CE-2 logits length does not match N x C", |b| b
        .cross_entropy(&ce(), Input::matrix(&z6[..5], 2, 3), &[0, 1]));
    add!("CE-2 targets length does not match N", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3),
        &[0]
    ));
    add!("CE-2 empty batch", |b| b.cross_entropy(
        &ce(),
        Input::matrix(&z6[..0], 0, 3),
        &[]
    ));
    add!("CE-2 zero classes", |b| b.cross_entropy(
        &ce(),
        Input::matrix(&z6[..0], 2, 0),
        &[0, 0]
    ));
    add!("CE-2 target out of range (C)", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3),
        &[0, 3]
    ));
    add!("CE-2 negative target that is not ignore_index", |b| b
        .cross_entropy(&ce(), Input::matrix(z6, 2, 3), &[-1, 0]));
    add!("CE-5 ignore_index None: -100 is out of range", |b| b
        .cross_entropy(
            &ce().with_ignore_index(None),
            Input::matrix(z6, 2, 3),
            &[-100, 0]
        ));
    add!("CE-3 label smoothing above 1", |b| b.cross_entropy(
        &ce().with_label_smoothing(1.5),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-3 label smoothing negative", |b| b.cross_entropy(
        &ce().with_label_smoothing(-0.1),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-3 label smoothing NaN", |b| b.cross_entropy(
        &ce().with_label_smoothing(f64::NAN),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-4 negative class weight", |b| b.cross_entropy(
        &ce().with_class_weights(vec![1.0, -1.0, 1.0]),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-4 non-finite class weight", |b| b.cross_entropy(
        &ce().with_class_weights(vec![1.0, f64::INFINITY, 1.0]),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-4 class weights of the wrong length", |b| b
        .cross_entropy(
            &ce().with_class_weights(vec![1.0, 1.0]),
            Input::matrix(z6, 2, 3),
            &[0, 1]
        ));
    add!("CE-6 probability targets of the wrong shape", |b| b
        .cross_entropy(
            &ce(),
            Input::matrix(z6, 2, 3),
            CeTargets::Probs(&z6[..4])
        ));
    add!("CE-7 gradient buffer of the wrong length", |b| {
        let mut g = vec![T::from_f64(0.0); 5];
        b.cross_entropy(&ce(), Input::matrix(z6, 2, 3).with_grad(&mut g), &[0, 1])
    });
    add!("CE-7 per-element upstream with mean", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3).with_upstream(Upstream::PerElement(&[1.0, 1.0])),
        &[0, 1]
    ));
    add!("CE-7 per-element upstream of the wrong length", |b| b
        .cross_entropy(
            &ce().with_reduction(Reduction::None),
            Input::matrix(z6, 2, 3).with_upstream(Upstream::PerElement(&[1.0])),
            &[0, 1]
        ));
    add!("CE-7 non-finite scalar upstream", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3).with_upstream(Upstream::Scalar(f64::NAN)),
        &[0, 1]
    ));
    add!("CE-5 in-place with target out of range", |b| {
        let mut z = z6.to_vec();
        b.cross_entropy(&ce(), Input::in_place(&mut z).shaped(2, 3), &[0, 7])
    });
    add!("CE-6 probability targets without the logits' shape", |b| b
        .cross_entropy(&ce(), z6, CeTargets::Probs(z6)));
    add!("CE-2 unshaped logits not a multiple of the targets", |b| b
        .cross_entropy(&ce(), &z6[..5], &[0, 1]));
    add!("CE-2 unshaped logits with no targets", |b| b.cross_entropy(
        &ce(),
        z6,
        &[]
    ));
    let bl = BoxLoss::default;
    add!("BOX-1 declared shape is not [N, 4]", |b| b.box_loss(
        &bl(),
        Input::matrix(boxes, 4, 2),
        boxes
    ));
    add!("BOX-1 wrong box width (length not a multiple of 4)", |b| b
        .box_loss(&bl(), &boxes[..7], &boxes[..7]));
    add!("BOX-1 pred and target lengths differ", |b| b.box_loss(
        &bl(),
        boxes,
        &boxes[..4]
    ));
    add!("BOX-10 empty batch", |b| b.box_loss(
        &bl(),
        &boxes[..0],
        &boxes[..0]
    ));
    add!("BOX-3 eps zero", |b| b.box_loss(
        &bl().with_eps(0.0),
        boxes,
        boxes
    ));
    add!("BOX-3 eps NaN", |b| b.box_loss(
        &bl().with_eps(f64::NAN),
        boxes,
        boxes
    ));
    add!("BOX-9 threshold alpha outside [0, 1]", |b| b.box_loss(
        &bl().with_threshold_weight(1.5, 0.5),
        boxes,
        boxes
    ));
    add!("BOX-9 threshold not finite", |b| b.box_loss(
        &bl().with_threshold_weight(0.5, f64::INFINITY),
        boxes,
        boxes
    ));
    add!("BOX-10 gradient buffer of the wrong length", |b| {
        let mut g = vec![T::from_f64(0.0); 4];
        b.box_loss(&bl(), Input::new(boxes).with_grad(&mut g), boxes)
    });
    add!("BOX-13 box_iou wrong box width", |b| {
        let mut out = vec![T::from_f64(0.0); 2];
        b.box_iou(BoxFormat::Xyxy, &boxes[..6], boxes, &mut out)
            .map(|_| Loss::PerItem(Vec::new()))
    });
    add!("BOX-13 box_iou output of the wrong size", |b| {
        let mut out = vec![T::from_f64(0.0); 3];
        b.box_iou(BoxFormat::Xyxy, boxes, boxes, &mut out)
            .map(|_| Loss::PerItem(Vec::new()))
    });
    add!("REG-1 negative beta", |b| b.smooth_l1(
        &SmoothL1 {
            beta: -1.0,
            reduction: Reduction::Mean
        },
        e4,
        e4
    ));
    add!("REG-1 length mismatch", |b| b.smooth_l1(
        &SmoothL1::default(),
        e4,
        &e4[..3]
    ));
    add!("REG-1 empty input", |b| b.smooth_l1(
        &SmoothL1::default(),
        &e4[..0],
        &e4[..0]
    ));
    add!("REG-3 zero delta", |b| b.huber(
        &Huber {
            delta: 0.0,
            reduction: Reduction::Mean
        },
        e4,
        e4
    ));
    add!("REG-3 length mismatch", |b| b.huber(
        &Huber::default(),
        e4,
        &e4[..2]
    ));
    add!("BIN-1 target outside [0, 1]", |b| {
        let t: Vec<T> = [0.0, 1.5, 0.0, 1.0].map(f).to_vec();
        b.bce_with_logits(&BceWithLogits::default(), e4, &t)
    });
    add!("BIN-1 NaN target", |b| {
        let t: Vec<T> = [0.0, f64::NAN, 0.0, 1.0].map(f).to_vec();
        b.bce_with_logits(&BceWithLogits::default(), e4, &t)
    });
    add!("BIN-1 pos_weight length does not divide the input", |b| b
        .bce_with_logits(
            &BceWithLogits {
                pos_weight: Some(vec![1.0, 2.0, 3.0]),
                reduction: Reduction::Mean
            },
            e4,
            e4
        ));
    add!("BIN-1 negative pos_weight", |b| b.bce_with_logits(
        &BceWithLogits {
            pos_weight: Some(vec![-1.0]),
            reduction: Reduction::Mean
        },
        e4,
        e4
    ));
    add!("BIN-3 negative gamma", |b| b.sigmoid_focal(
        &SigmoidFocal {
            gamma: -1.0,
            ..SigmoidFocal::default()
        },
        e4,
        e4
    ));
    add!("BIN-3 alpha above 1", |b| b.sigmoid_focal(
        &SigmoidFocal {
            alpha: 1.5,
            ..SigmoidFocal::default()
        },
        e4,
        e4
    ));
    add!("BIN-3 empty input", |b| b.sigmoid_focal(
        &SigmoidFocal::default(),
        &e4[..0],
        &e4[..0]
    ));
    // TOL-4: per-element upstream values must be finite, as a scalar must.
    let none = Reduction::None;
    add!("TOL-4 cross-entropy non-finite per-element upstream", |b| b
        .cross_entropy(
            &ce().with_reduction(none),
            Input::matrix(z6, 2, 3).with_upstream(Upstream::PerElement(&[1.0, f64::INFINITY])),
            &[0, 1]
        ));
    add!("TOL-4 box loss NaN per-element upstream", |b| b.box_loss(
        &bl().with_reduction(none),
        Input::new(boxes).with_upstream(Upstream::PerElement(&[f64::NAN, 1.0])),
        boxes
    ));
    add!("TOL-4 BCE non-finite per-element upstream", |b| b
        .bce_with_logits(
            &BceWithLogits {
                pos_weight: None,
                reduction: none
            },
            Input::new(e4).with_upstream(Upstream::PerElement(&[1.0, f64::NEG_INFINITY, 1.0, 1.0])),
            e4
        ));
    if T::NAME == "f32" {
        // TOL-4: the f32 domain of parameters and upstream gradients (f32 data only).
        add!(
            "TOL-4 f32: smooth L1 beta below the normal f32 range",
            |b| b.smooth_l1(
                &SmoothL1 {
                    beta: 1e-40,
                    reduction: Reduction::Mean
                },
                e4,
                e4
            )
        );
        add!("TOL-4 f32: Huber delta beyond f32", |b| b.huber(
            &Huber {
                delta: 1e39,
                reduction: Reduction::Mean
            },
            e4,
            e4
        ));
        add!("TOL-4 f32: box eps below the normal f32 range", |b| b
            .box_loss(&bl().with_eps(1e-40), boxes, boxes));
        add!("TOL-4 f32: focal gamma beyond f32", |b| b.sigmoid_focal(
            &SigmoidFocal {
                gamma: 1e300,
                ..SigmoidFocal::default()
            },
            e4,
            e4
        ));
        add!("TOL-4 f32: BCE pos_weight beyond f32", |b| b
            .bce_with_logits(
                &BceWithLogits {
                    pos_weight: Some(vec![1e39]),
                    reduction: Reduction::Mean
                },
                e4,
                e4
            ));
        add!("TOL-4 f32: class weight beyond f32", |b| b.cross_entropy(
            &ce()
                .with_label_smoothing(0.1)
                .with_class_weights(vec![1.0, 1e300, 1.0]),
            Input::matrix(z6, 2, 3),
            &[0, 1]
        ));
        add!("TOL-4 f32: scalar upstream beyond f32", |b| b.smooth_l1(
            &SmoothL1::default(),
            Input::new(e4).with_upstream(Upstream::Scalar(1e39)),
            e4
        ));
        add!("TOL-4 f32: per-element upstream beyond f32", |b| b.huber(
            &Huber {
                delta: 1.0,
                reduction: none
            },
            Input::new(e4).with_upstream(Upstream::PerElement(&[1.0, 1.0, -1e39, 1.0])),
            e4
        ));
    }
    v
}

/// Bad input: the backend refuses with the same typed error as the reference, without panicking
/// and without writing a buffer ([`untouched_on_error`]).
pub fn error_cases<T: Element, B: Backend<T> + ?Sized>(backend: &B) -> Report
where
    ReferenceBackend: Backend<T>,
{
    let mut report = Report {
        backend: format!("{}/{}", backend.name(), T::NAME),
        entries: Vec::new(),
    };
    let data = BadData::<T>::new();
    let ours = bad_calls::<T, B>(&data);
    let reference = bad_calls::<T, ReferenceBackend>(&data);
    for ((name, call), (_, ref_call)) in ours.iter().zip(reference.iter()) {
        let want = ref_call(&ReferenceBackend);
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(backend)));
        let outcome = match (got, want) {
            (Err(_), _) => Outcome::Failed("panicked".into()),
            (_, Ok(_)) => Outcome::Failed("the reference accepted this input".into()),
            (Ok(Ok(_)), Err(w)) => Outcome::Failed(format!("accepted; the reference says: {w}")),
            // Compared through Debug so that a NaN parameter value matches itself.
            (Ok(Err(g)), Err(w)) if format!("{g:?}") == format!("{w:?}") => Outcome::Passed,
            (Ok(Err(g)), Err(w)) => Outcome::Failed(format!("error {g:?}, want {w:?}")),
        };
        report.push("errors", *name, outcome);
    }
    report.extend(untouched_on_error(backend));
    report
}

/// On a refused call the backend writes nothing: the gradient buffer, or the input of an
/// in-place call, is left as it was (bad target values are found before any backend runs).
pub fn untouched_on_error<T: Element, B: Backend<T> + ?Sized>(backend: &B) -> Report {
    let mut report = Report {
        backend: format!("{}/{}", backend.name(), T::NAME),
        entries: Vec::new(),
    };
    let f = |v: f64| T::from_f64(v);
    let z: Vec<T> = (0..6).map(|i| f(i as f64 * 0.3 - 0.5)).collect();
    let sentinel = vec![f(7.0); 6];
    let mut check = |name: &'static str, got: Result<Loss, LossError>, buf: &[T], want: &[T]| {
        let same = buf
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits());
        let outcome = match got {
            Ok(_) => Outcome::Failed("accepted a bad call".into()),
            Err(_) if same => Outcome::Passed,
            Err(_) => Outcome::Failed("the buffer was written".into()),
        };
        report.push("errors", name, outcome);
    };
    let ce = CrossEntropy::default();
    let mut g = sentinel.clone();
    let got = backend.cross_entropy(&ce, Input::matrix(&z, 2, 3).with_grad(&mut g), &[0, 3]);
    check(
        "CE-2 bad target leaves the gradient buffer untouched",
        got,
        &g,
        &sentinel,
    );
    let mut zz = z.clone();
    let got = backend.cross_entropy(&ce, Input::in_place(&mut zz).shaped(2, 3), &[-7, 0]);
    check(
        "CE-2 bad target leaves an in-place input untouched",
        got,
        &zz,
        &z,
    );
    let mut g = sentinel.clone();
    let t: Vec<T> = [0.0, 1.0, 2.0, 0.0, 1.0, 0.5].map(f).to_vec();
    let got = backend.bce_with_logits(
        &BceWithLogits::default(),
        Input::new(&z).with_grad(&mut g),
        &t,
    );
    check(
        "BIN-1 bad target leaves the gradient buffer untouched",
        got,
        &g,
        &sentinel,
    );
    let mut zz = z.clone();
    let got = backend.sigmoid_focal(&SigmoidFocal::default(), Input::in_place(&mut zz), &t);
    check(
        "BIN-3 bad target leaves an in-place input untouched",
        got,
        &zz,
        &z,
    );
    report
}
