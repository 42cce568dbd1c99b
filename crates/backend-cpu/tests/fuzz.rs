//! The fuzz campaign (`smoothloss_spec::fuzz`) on the CPU backend: each adversarial call on 1,
//! 2 and 3 threads with the portable and (where the machine has it) the AVX2 + FMA kernels,
//! against the f64 reference on the same f32-rounded inputs (`TOL-2`, NaN matching NaN), the
//! same error where the reference refuses, and no panic. `PROPTEST_CASES` sets the calls per
//! run; `cargo xtask fuzz --minutes N` runs it for longer.

use smoothloss_cpu::{CpuBackend, SimdLevel};
use smoothloss_spec::fuzz::{campaign, check};

#[test]
fn fuzz_cpu_threads_and_simd_levels() {
    let mut backends = Vec::new();
    for threads in [1, 2, 3] {
        backends.push((
            threads,
            "scalar",
            CpuBackend::with_threads(threads).with_simd_level(SimdLevel::Scalar),
        ));
        for level in SimdLevel::available().into_iter().skip(1) {
            backends.push((
                threads,
                level.name(),
                CpuBackend::with_threads(threads).with_simd_level(level),
            ));
        }
    }
    campaign("cpu", file!(), 96, |fc| {
        for (threads, simd, b) in &backends {
            check(b, fc).map_err(|e| format!("cpu {threads} thread(s), {simd}: {e}"))?;
        }
        Ok(())
    });
}

/// The campaign's open findings (`smoothloss_spec::fuzz::findings`), minimised: each fails
/// today and waits on a fix; this test passes once all are fixed.
#[test]
#[ignore = "open findings of the fuzz campaign (fail until fixed)"]
fn fuzz_findings_are_fixed() {
    let b = CpuBackend::with_threads(1).with_simd_level(SimdLevel::Scalar);
    let open: Vec<String> = smoothloss_spec::fuzz::findings()
        .into_iter()
        .filter_map(|(id, what, fc)| check(&b, &fc).err().map(|e| format!("{id} ({what}): {e}")))
        .collect();
    assert!(open.is_empty(), "{} open:\n{}", open.len(), open.join("\n"));
}
