//! Metrics against independent implementations: scikit-learn for
//! classification, SciPy's distance transform with MONAI's HD95 definition for
//! segmentation. Reference values come from tests/reference/make_references.py
//! (scripts/test.sh runs it).

use radrun_metrics::{classification_report, segmentation_scores};
use serde_json::Value;

/// The reference cases, or `None` (the test skips) outside scripts/test.sh; a reference
/// file without cases fails (a loop over none would check nothing).
fn reference(name: &str) -> Option<Vec<Value>> {
    let dir = radrun_data::testing::reference_dir()?;
    let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join(name)).expect(name)).expect("valid json");
    assert!(!cases.is_empty(), "{name} holds no cases");
    Some(cases)
}

/// The cases of an array in a reference file, at least one.
fn cases<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    let cases = value.as_array().unwrap_or_else(|| panic!("{what} is not a list"));
    assert!(!cases.is_empty(), "{what} holds no cases");
    cases
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Rows of probabilities as radrun's predictor gives them (f32).
fn probability_rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(|row| floats(row).into_iter().map(|v| v as f32).collect()).collect()
}

/// Equal to 1e-9: both sides compute in float64 (ratios of counts, sums over pairs of
/// scores, the normal distribution's tail), a few hundred roundings of 1.1e-16 at most,
/// and special functions that may differ in their last digits; a wrong count moves a
/// metric by 1e-3 and more.
fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-9, "{what}: radrun {got} vs reference {want}");
}

#[test]
fn classification_metrics_match_scikit_learn() {
    let Some(cases) = reference("classification_metrics.json") else { return };
    for (case, r) in cases.iter().enumerate() {
        let truth: Vec<usize> = r["truth"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let probabilities = probability_rows(&r["probabilities"]);
        let k = probabilities[0].len();
        let classes: Vec<String> = (0..k).map(|c| format!("c{c}")).collect();
        let report = classification_report(&classes, &truth, &probabilities);
        let tag = |m: &str| format!("case {case} {m}");
        close(report.accuracy, r["accuracy"].as_f64().unwrap(), &tag("accuracy"));
        close(report.balanced_accuracy, r["balanced_accuracy"].as_f64().unwrap(), &tag("balanced accuracy"));
        for c in 0..k {
            let m = &report.per_class[c];
            close(m.precision, floats(&r["precision"])[c], &tag(&format!("precision {c}")));
            close(m.recall, floats(&r["recall"])[c], &tag(&format!("recall {c}")));
            close(m.f1, floats(&r["f1"])[c], &tag(&format!("f1 {c}")));
            close(m.specificity, floats(&r["specificity"])[c], &tag(&format!("specificity {c}")));
            close(m.roc_auc.unwrap(), floats(&r["roc_auc"])[c], &tag(&format!("roc auc {c}")));
            assert_eq!(m.support as f64, floats(&r["support"])[c]);
        }
        let confusion: Vec<Vec<u64>> = r["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| floats(row).into_iter().map(|v| v as u64).collect())
            .collect();
        assert_eq!(report.confusion, confusion);
        close(report.macro_avg.precision, r["macro_precision"].as_f64().unwrap(), &tag("macro precision"));
        close(report.macro_avg.recall, r["macro_recall"].as_f64().unwrap(), &tag("macro recall"));
        close(report.macro_avg.f1, r["macro_f1"].as_f64().unwrap(), &tag("macro f1"));
        close(report.macro_avg.roc_auc.unwrap(), r["macro_roc_auc"].as_f64().unwrap(), &tag("macro auc"));
        close(report.weighted_avg.precision, r["weighted_precision"].as_f64().unwrap(), &tag("weighted precision"));
        close(report.weighted_avg.recall, r["weighted_recall"].as_f64().unwrap(), &tag("weighted recall"));
        close(report.weighted_avg.f1, r["weighted_f1"].as_f64().unwrap(), &tag("weighted f1"));
        close(report.weighted_avg.roc_auc.unwrap(), r["weighted_roc_auc"].as_f64().unwrap(), &tag("weighted auc"));
    }
}

#[test]
fn segmentation_metrics_match_scipy_and_monai_definitions() {
    let Some(cases) = reference("segmentation_metrics.json") else { return };
    for (case, r) in cases.iter().enumerate() {
        let (h, w) = (r["height"].as_u64().unwrap() as usize, r["width"].as_u64().unwrap() as usize);
        let mask =
            |key: &str| -> Vec<bool> { r[key].as_array().unwrap().iter().map(|v| v.as_u64() == Some(1)).collect() };
        let spacing = floats(&r["spacing"]);
        let s = segmentation_scores(&mask("truth"), &mask("predicted"), h, w, Some([spacing[0], spacing[1]]));
        let tag = |m: &str| format!("case {case} {m}");
        close(s.dice, r["dice"].as_f64().unwrap(), &tag("dice"));
        close(s.iou, r["iou"].as_f64().unwrap(), &tag("iou"));
        close(s.sensitivity, r["sensitivity"].as_f64().unwrap(), &tag("sensitivity"));
        close(s.precision, r["precision"].as_f64().unwrap(), &tag("precision"));
        close(s.hd95_pixels, r["hd95_pixels"].as_f64().unwrap(), &tag("hd95 pixels"));
        close(s.hd95_mm.unwrap(), r["hd95_mm"].as_f64().unwrap(), &tag("hd95 mm"));
    }
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
}

/// Wilson intervals against statsmodels, DeLong's AUC variance and paired test
/// against the pairwise formulas in numpy, the Youden threshold against scikit-learn's
/// ROC curve, and the percentile bootstrap against SciPy's by distribution (both are
/// seeded, but with different generators: the bounds agree within Monte Carlo error).
#[test]
fn statistics_match_statsmodels_scipy_and_delong_formulas() {
    use radrun_metrics::stats::{Bootstrap, DelongAuc, DelongComparison, wilson, youden_threshold};
    let Some(dir) = radrun_data::testing::reference_dir() else { return };
    let r: Value = serde_json::from_slice(&std::fs::read(dir.join("statistics.json")).unwrap()).unwrap();
    for case in cases(&r["wilson"], "wilson") {
        let (k, n) = (case["successes"].as_u64().unwrap(), case["n"].as_u64().unwrap());
        let w = wilson(k, n, case["confidence"].as_f64().unwrap()).unwrap();
        close(w.lower, case["lower"].as_f64().unwrap(), &format!("wilson {k}/{n} lower"));
        close(w.upper, case["upper"].as_f64().unwrap(), &format!("wilson {k}/{n} upper"));
    }
    for (i, case) in cases(&r["delong"], "delong").iter().enumerate() {
        let positive = bools(&case["positive"]);
        let (a, b) = (floats(&case["scores_a"]), floats(&case["scores_b"]));
        let d = DelongAuc::of(&a, &positive).unwrap();
        close(d.auc, case["auc_a"].as_f64().unwrap(), &format!("case {i} auc"));
        close(d.variance, case["variance_a"].as_f64().unwrap(), &format!("case {i} variance"));
        let c = DelongComparison::of(&a, &b, &positive).unwrap();
        close(c.auc_b, case["auc_b"].as_f64().unwrap(), &format!("case {i} auc b"));
        close(c.z, case["z"].as_f64().unwrap(), &format!("case {i} z"));
        close(c.p_value, case["p_value"].as_f64().unwrap(), &format!("case {i} p"));
        close(
            youden_threshold(&a, &positive).unwrap(),
            case["youden_a"].as_f64().unwrap(),
            &format!("case {i} youden"),
        );
    }
    let boot = &r["bootstrap"];
    let values = floats(&boot["values"]);
    let units: Vec<Vec<usize>> = (0..values.len()).map(|i| vec![i]).collect();
    let mean = |idx: &[usize]| vec![Some(idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64)];
    let ci = Bootstrap { resamples: 20000, confidence: 0.95, seed: 5 }.intervals(&units, mean)[0].unwrap();
    // not rounding: both bounds are 2.5 % quantiles of 20,000 resampled means of 150
    // values, on the grid k/150; each is off its limit by a Monte Carlo SD of
    // sqrt(0.025 x 0.975 / 20000) / phi(1.96) x SE = 0.019 x 0.031 = 6e-4, so the two
    // generators may land on neighbouring grid points, never two apart: one step
    // (+1e-9 for float64's k/150)
    for (got, want) in [(ci.lower, boot["lower"].as_f64().unwrap()), (ci.upper, boot["upper"].as_f64().unwrap())] {
        assert!((got - want).abs() <= 1.0 / 150.0 + 1e-9, "bootstrap bound {got} vs SciPy {want}");
    }
}

/// Multi-label metrics against scikit-learn (subset accuracy, 1 - Hamming
/// loss, per-label precision, recall, F1, support, ROC AUC, macro F1).
#[test]
fn multilabel_metrics_match_scikit_learn() {
    use radrun_metrics::multilabel_report;
    let Some(cases) = reference("multilabel_metrics.json") else { return };
    for (case, r) in cases.iter().enumerate() {
        let truth: Vec<Vec<bool>> = r["truth"].as_array().unwrap().iter().map(bools).collect();
        let probabilities = probability_rows(&r["probabilities"]);
        let labels: Vec<String> = (0..truth[0].len()).map(|c| format!("l{c}")).collect();
        let report = multilabel_report(&labels, &truth, &probabilities);
        let tag = |m: &str| format!("case {case} {m}");
        close(report.subset_accuracy, r["subset_accuracy"].as_f64().unwrap(), &tag("subset accuracy"));
        close(report.label_accuracy, r["label_accuracy"].as_f64().unwrap(), &tag("label accuracy"));
        close(report.macro_avg.f1, r["macro_f1"].as_f64().unwrap(), &tag("macro f1"));
        for (c, m) in report.per_label.iter().enumerate() {
            close(m.precision, floats(&r["precision"])[c], &tag(&format!("precision {c}")));
            close(m.recall, floats(&r["recall"])[c], &tag(&format!("recall {c}")));
            close(m.f1, floats(&r["f1"])[c], &tag(&format!("f1 {c}")));
            close(m.roc_auc.unwrap(), floats(&r["roc_auc"])[c], &tag(&format!("roc auc {c}")));
            assert_eq!(m.support as f64, floats(&r["support"])[c]);
        }
    }
}

/// MONAI's surface metrics on random anisotropic 3D shapes (one touching the border), to
/// 1e-6 relative: MONAI keeps distances in float32 (a relative rounding of 6e-8 each)
/// and interpolates its percentile and sums its mean in float32, a few roundings more;
/// radrun computes in float64. Dice and IoU are ratios of counts (to 1e-9).
#[test]
fn surface_metrics_in_mm_match_monai() {
    use radrun_metrics::surface::{Grid, surface_scores};
    let Some(cases) = reference("segmentation3d/surface_metrics.json") else { return };
    assert_eq!(cases.len(), 10);
    for (i, r) in cases.iter().enumerate() {
        let shape: Vec<usize> = r["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let spacing = floats(&r["spacing"]);
        let grid = Grid::volume([shape[0], shape[1], shape[2]], [spacing[0], spacing[1], spacing[2]]);
        let mask = |key: &str| {
            let mut m = vec![false; shape.iter().product()];
            for v in r[key].as_array().unwrap() {
                m[v.as_u64().unwrap() as usize] = true;
            }
            m
        };
        let s = surface_scores(&mask("reference"), &mask("predicted"), &grid, r["tolerance"].as_f64().unwrap());
        close(s.dice, r["dice"].as_f64().unwrap(), &format!("case {i} dice"));
        close(s.iou, r["iou"].as_f64().unwrap(), &format!("case {i} iou"));
        for (got, key) in [(s.hd95_mm, "hd95"), (s.assd_mm, "assd"), (s.nsd, "nsd")] {
            let want = r[key].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "case {i} {key}: radrun {got} vs MONAI {want}");
        }
    }
}

#[test]
fn calibration_and_decision_curves_match_scikit_learn_statsmodels_and_dcurves() {
    use radrun_metrics::calibration::{
        Binning, brier, calibration_intercept, calibration_slope, class_logits, expected_calibration_error,
        net_benefit, reliability, scaled, thresholds, treat_all,
    };
    use radrun_metrics::evaluate::{Calibrate, Chosen, Classified, Decisions, EvalSettings, classify};
    let Some(dir) = radrun_data::testing::reference_dir() else { return };
    let r: Value = serde_json::from_slice(&std::fs::read(dir.join("calibration.json")).unwrap()).unwrap();
    for (i, case) in cases(&r["binary"], "binary").iter().enumerate() {
        let (p, h) = (floats(&case["probabilities"]), case["truth"].as_array().unwrap());
        let h: Vec<bool> = h.iter().map(|v| v.as_u64().unwrap() == 1).collect();
        let want = |key: &str| case[key].as_f64().unwrap();
        let tag = |what: &str| format!("case {i} {what}");
        close(brier(&p, &h).unwrap(), want("brier"), &tag("brier"));
        // each binning's ECE, and its non-empty bins (count, observed share, mean) against
        // calibration_curve's, under the reference keys ending in `suffix`
        for (binning, ece, suffix) in
            [(Binning::EqualWidth, "ece", ""), (Binning::EqualMass, "ece_equal_mass", "_equal_mass")]
        {
            let bins = reliability(&p, &h, 15, binning);
            close(expected_calibration_error(&bins).unwrap(), want(ece), &tag(ece));
            let filled: Vec<_> = bins.iter().filter(|b| b.images > 0).collect();
            let counts: Vec<f64> = filled.iter().map(|b| b.images as f64).collect();
            assert_eq!(counts, floats(&case[format!("bin_images{suffix}").as_str()]), "{}", tag("bin counts"));
            let (observed, mean) = (
                floats(&case[format!("observed{suffix}").as_str()]),
                floats(&case[format!("mean_predicted{suffix}").as_str()]),
            );
            for (k, b) in filled.iter().enumerate() {
                close(b.observed.unwrap(), observed[k], &tag(&format!("{ece} bin {k} observed")));
                close(b.mean_predicted.unwrap(), mean[k], &tag(&format!("{ece} bin {k} mean")));
            }
        }
        // two iterative fits that each stop within 1e-12 of the maximum: 1e-7 apart at most
        let fits = [
            ("calibration_slope", calibration_slope(&p, &h)),
            ("calibration_intercept", calibration_intercept(&p, &h)),
        ];
        for (key, got) in fits {
            let got = got.unwrap_or_else(|| panic!("{}: radrun found no fit, statsmodels {}", tag(key), want(key)));
            assert!((got - want(key)).abs() <= 1e-7, "{}: radrun {got} vs statsmodels {}", tag(key), want(key));
        }
        let at = thresholds(0.01, 0.99, 0.01);
        assert_eq!(at, floats(&case["thresholds"]), "{}", tag("thresholds"));
        for (k, (got, want)) in net_benefit(&p, &h, &at).iter().zip(floats(&case["net_benefit"])).enumerate() {
            close(*got, want, &tag(&format!("net benefit at {}", at[k])));
        }
        for (k, (got, want)) in treat_all(&h, &at).iter().zip(floats(&case["treat_all"])).enumerate() {
            close(*got, want, &tag(&format!("treat all at {}", at[k])));
        }
    }
    // several classes, through the evaluation: the multi-class Brier and the top label's ECE
    for (i, case) in cases(&r["classes"], "classes").iter().enumerate() {
        let truth: Vec<usize> =
            case["truth"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let probabilities = probability_rows(&case["probabilities"]);
        let classes: Vec<String> = (0..probabilities[0].len()).map(|c| format!("c{c}")).collect();
        let files = vec![std::path::PathBuf::from("x.png"); truth.len()];
        let test = Classified { files, truth: truth.clone(), probabilities };
        let eval = EvalSettings { bootstrap: 0, ..EvalSettings::default() };
        let groups = vec![None; truth.len()];
        let e = classify(&classes, test, Decisions::Chosen(Chosen::default()), &groups, &eval).unwrap();
        let headline = |name: &str| e.intervals.iter().find(|m| m.metric == name && m.class.is_none()).unwrap().value;
        close(headline("brier"), case["brier"].as_f64().unwrap(), &format!("classes case {i} brier"));
        close(headline("ece"), case["top_label_ece"].as_f64().unwrap(), &format!("classes case {i} top-label ece"));
        let rows: Vec<&str> = e.calibration.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rows.last(), Some(&"top_label"));
        assert!(e.calibration.curves.is_empty(), "no decision curve for {} classes", classes.len());
    }
    // temperature scaling fitted on validation, through the evaluation
    for (i, case) in cases(&r["temperature"], "temperature").iter().enumerate() {
        let labels = |key: &str| -> Vec<usize> {
            case[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
        };
        let truth = labels("truth");
        let probabilities = probability_rows(&case["probabilities"]);
        let validation = (labels("validation_truth"), probability_rows(&case["validation_probabilities"]));
        let classes: Vec<String> = (0..probabilities[0].len()).map(|c| format!("c{c}")).collect();
        let files = vec![std::path::PathBuf::from("x.png"); truth.len()];
        let test = Classified { files, truth: truth.clone(), probabilities: probabilities.clone() };
        let eval = EvalSettings { bootstrap: 0, calibrate: Calibrate::Temperature, ..EvalSettings::default() };
        let validate = Decisions::FromValidation(Box::new(|| validation));
        let e = classify(&classes, test, validate, &vec![None; truth.len()], &eval).unwrap();
        // SciPy's bounded minimiser stops within about 1e-8 of the minimum (it compares
        // function values), the bisection within 1e-15
        let (t, want) = (e.temperature.unwrap(), case["temperature"].as_f64().unwrap());
        assert!((t - want).abs() <= 1e-6, "case {i} temperature: radrun {t} vs SciPy {want}");
        // the scaled probabilities are held in float32 (6e-8 apart at most): the Brier
        // score moves by less than 1e-6
        let brier = e.intervals.iter().find(|m| m.metric == "brier_calibrated" && m.class.is_none()).unwrap().value;
        let want = case["brier_calibrated"].as_f64().unwrap();
        assert!((brier - want).abs() <= 1e-6, "case {i} calibrated Brier: radrun {brier} vs reference {want}");
        assert!(e.recalibrated.is_some());
        // two classes: the threshold on the calibrated scale makes the decisions the
        // network's threshold makes, image by image
        if classes.len() == 2 {
            let point = e.operating_point.as_ref().expect("a two-class operating point");
            let calibrated = point.threshold_calibrated.unwrap();
            for row in &probabilities {
                let after = f64::from(scaled(&class_logits(row), t)[1] as f32);
                assert_eq!(f64::from(row[1]) >= point.threshold, after >= calibrated, "case {i}: {row:?}");
            }
        }
        // the decisions applied as chosen (as on an external set) score the same
        let point = e.operating_point.as_ref();
        let chosen = Chosen {
            threshold: point.map(|p| p.threshold),
            threshold_calibrated: point.and_then(|p| p.threshold_calibrated),
            temperature: e.temperature,
        };
        let intervals = e.intervals;
        let again = Classified { files: vec![std::path::PathBuf::from("x.png"); truth.len()], truth, probabilities };
        let groups = vec![None; again.truth.len()];
        let applied = classify(&classes, again, Decisions::Chosen(chosen), &groups, &eval).unwrap();
        assert_eq!(applied.intervals, intervals, "case {i}: the chosen decisions applied again");
    }
}

/// Subgroup scores against scikit-learn (each level's metrics) and SciPy's bootstrap
/// (a level's interval; the two-sample bootstrap of the level minus the rest, with its
/// p-value from SciPy's bootstrap distribution), compared by distribution: both draw
/// 20,000 resamples, from different generators.
#[test]
fn subgroup_scores_match_scikit_learn_and_scipy() {
    use radrun_data::subgroups::Levels;
    use radrun_metrics::evaluate::{Chosen, Classified, Decisions, EvalSettings, Evaluation, classify};
    use radrun_metrics::subgroups::score_subgroups;
    let Some(dir) = radrun_data::testing::reference_dir() else { return };
    let r: Value = serde_json::from_slice(&std::fs::read(dir.join("subgroups.json")).unwrap()).unwrap();
    let p1 = floats(&r["p1"]);
    let truth: Vec<usize> = floats(&r["truth"]).iter().map(|&t| t as usize).collect();
    let of_image: Vec<String> = r["level"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().into()).collect();
    let n = truth.len();
    let probabilities: Vec<Vec<f32>> = p1.iter().map(|&p| vec![1.0 - p as f32, p as f32]).collect();
    let test = Classified { files: vec![Default::default(); n], truth, probabilities };
    let classes = ["negative".to_string(), "positive".to_string()];
    let eval = EvalSettings { bootstrap: 20000, min_subgroup: 20, ..Default::default() };
    let chosen = Decisions::Chosen(Chosen { threshold: Some(0.5), ..Default::default() });
    let groups = vec![None; n];
    let evaluation = Evaluation::Classification(Box::new(classify(&classes, test, chosen, &groups, &eval).unwrap()));
    let levels = Levels { name: "site".into(), of_image, order: vec!["site A".into(), "site B".into()] };
    let scores = score_subgroups(&evaluation, &groups, &[levels], &eval);
    assert_eq!(scores.len(), 2, "both sites are large enough to be reported by name");
    // Monte Carlo error of a 2.5 % quantile of B = 20,000 resamples, for a statistic of
    // bootstrap SD se (normal density at the quantile): sqrt(0.025 x 0.975 / B) /
    // phi(1.96) x se = 0.0189 se, sqrt(2) x that between two generators; allowed 6 of
    // those (the normal density is an approximation in the tails)
    let quantile_tolerance = |se: f64| 6.0 * 2f64.sqrt() * 0.0189 * se;
    for (score, want) in scores.iter().zip(cases(&r["levels"], "levels")) {
        assert_eq!(score.level, want["level"].as_str().unwrap());
        assert_eq!(score.images, Some(want["images"].as_u64().unwrap() as usize));
        let metric = |name: &str| score.metrics.iter().find(|m| m.metric == name).unwrap();
        for name in ["accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc"] {
            close(metric(name).value, want[name].as_f64().unwrap(), &format!("{} {name}", score.level));
        }
        let images = score.images.unwrap() as f64;
        let interval = metric("accuracy").interval.unwrap();
        let (lower, upper) =
            (want["accuracy_interval"][0].as_f64().unwrap(), want["accuracy_interval"][1].as_f64().unwrap());
        // accuracies lie on the grid k / images: one grid step besides the Monte Carlo error
        let tolerance = quantile_tolerance(want["accuracy_se"].as_f64().unwrap()) + 1.0 / images + 1e-9;
        assert!((interval.lower - lower).abs() <= tolerance, "{} interval {interval:?} vs {lower}", score.level);
        assert!((interval.upper - upper).abs() <= tolerance, "{} interval {interval:?} vs {upper}", score.level);
        for name in ["accuracy", "macro_roc_auc"] {
            let want = &want[format!("{name}_difference")];
            let m = metric(name);
            let tag = format!("{} {name} difference", score.level);
            close(m.difference.unwrap(), want["value"].as_f64().unwrap(), &tag);
            let c = m.comparison.unwrap();
            let tolerance = quantile_tolerance(want["standard_error"].as_f64().unwrap());
            assert!((c.interval.lower - want["lower"].as_f64().unwrap()).abs() <= tolerance, "{tag}: {c:?} vs {want}");
            assert!((c.interval.upper - want["upper"].as_f64().unwrap()).abs() <= tolerance, "{tag}: {c:?} vs {want}");
            // p = 2 q: q a share of B resamples, Monte Carlo SD sqrt(q (1 - q) / B);
            // sqrt(2) x 2 x that between two generators, 6 of those allowed
            let p = want["p_value"].as_f64().unwrap();
            let q = p / 2.0;
            let tolerance = 6.0 * 2f64.sqrt() * 2.0 * (q * (1.0 - q) / 20000.0).sqrt() + 4.0 / 20001.0;
            assert!((c.p_value - p).abs() <= tolerance, "{tag}: p {} vs SciPy {p}", c.p_value);
        }
    }
}
