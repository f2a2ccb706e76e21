//! The Numenta Anomaly Benchmark (NAB) scoring rule, for evaluating streaming detectors.
//!
//! Each data file is a stream of rows with an anomaly score in [0, 1]; ground truth is a list
//! of labelled windows per file. A row is a detection when its score reaches the threshold.
//! The first detection in a window earns a weight from a scaled sigmoid of its position
//! (earliest is best, the window's right edge earns 0); a window without a detection costs
//! `fn` weight; every detection outside a window costs `fp` weight times the scaled sigmoid
//! of its distance past the previous window (close behind a window costs little, far away
//! costs the full weight). The first `min(floor(0.15 n), 750)` rows of a file are a
//! probationary period and are not scored. One threshold per profile is chosen over the
//! whole corpus (the best raw score, ties to the higher threshold), and the raw score is
//! normalized so that a detector that never fires scores 0 and a perfect one 100.
//!
//! Pure functions over slices; reading files is the caller's job (`cli::detect`).

/// Fraction of a file's rows in the probationary period.
pub const PROBATION_FRACTION: f64 = 0.15;
/// Most rows in a probationary period.
pub const PROBATION_MAX_ROWS: usize = 750;

/// A cost profile: weights of true positives, false positives and missed windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Name as NAB spells it.
    pub name: &'static str,
    /// Weight of a detected window (at its earliest possible row).
    pub tp: f64,
    /// Weight of a false positive far from any window.
    pub fp: f64,
    /// Cost of a missed window.
    pub fn_: f64,
}

/// NAB's three profiles (`config/profiles.json`).
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// The scaled sigmoid of a relative position: -1 (a window's left edge) gives about 0.987,
/// 0 (its right edge) gives 0, 1 (a window's width past it) about -0.987, and 3 or more -1.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Rows of a file in its probationary period.
pub fn probation_rows(rows: usize) -> usize {
    ((PROBATION_FRACTION * rows as f64).floor() as usize).min(PROBATION_MAX_ROWS)
}

/// One data file to score: timestamps (any comparable key, e.g. Unix seconds), the
/// detector's scores, and the labelled windows as (first, last) timestamps, inclusive,
/// sorted and disjoint.
#[derive(Debug, Clone, Copy)]
pub struct File<'a> {
    /// Row timestamps, non-decreasing (repeats allowed).
    pub timestamps: &'a [i64],
    /// The detector's score per row.
    pub scores: &'a [f64],
    /// Labelled windows.
    pub windows: &'a [(i64, i64)],
}

/// A file that cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NabError {
    /// Scores and timestamps differ in length.
    #[error("{timestamps} timestamps but {scores} scores")]
    Length {
        /// Rows of timestamps.
        timestamps: usize,
        /// Rows of scores.
        scores: usize,
    },
    /// A window edge is not the timestamp of any row.
    #[error("window edge {0} is not a row's timestamp")]
    WindowEdge(i64),
    /// A score is not a number.
    #[error("row {0} has a score that is not a number")]
    NotANumber(usize),
}

/// One scorable row (past the probationary period).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    score: f64,
    /// Index into the corpus' windows, for rows inside one.
    window: Option<usize>,
    /// The scaled sigmoid of the row's position (before profile weights).
    sigmoid: f64,
}

/// Where a row stands relative to the labelled windows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Position {
    /// The window the row is in (numbered within its file).
    window: Option<usize>,
    /// The scaled sigmoid of the row's position (before profile weights).
    sigmoid: f64,
}

/// Each row's position relative to the windows, or `None` for rows in the probationary
/// period.
fn rows_of(file: &File<'_>) -> Result<Vec<Option<Position>>, NabError> {
    let n = file.timestamps.len();
    if file.scores.len() != n {
        return Err(NabError::Length {
            timestamps: n,
            scores: file.scores.len(),
        });
    }
    if let Some(i) = file.scores.iter().position(|s| s.is_nan()) {
        return Err(NabError::NotANumber(i));
    }
    let first_index = |t: i64| {
        file.timestamps
            .iter()
            .position(|&x| x == t)
            .ok_or(NabError::WindowEdge(t))
    };
    // (left index, right index) of each window; a window's first row is where its start
    // timestamp first appears, its last where its end timestamp first appears.
    let spans = file
        .windows
        .iter()
        .map(|&(a, b)| Ok((first_index(a)?, first_index(b)?)))
        .collect::<Result<Vec<_>, NabError>>()?;
    let probation = probation_rows(n);
    let mut out = Vec::with_capacity(n);
    let mut next = 0; // next window to enter
    let mut current: Option<usize> = None;
    let mut previous: Option<(usize, f64)> = None; // (right index, width) of the last window left
    for (i, &t) in file.timestamps.iter().enumerate() {
        if current.is_none() && next < spans.len() && t == file.windows[next].0 {
            current = Some(next);
            next += 1;
        }
        let entry = match current {
            Some(w) => {
                let (left, right) = spans[w];
                let width = (right as f64 - left as f64) + 1.0;
                let position = -(right as f64 - i as f64 + 1.0) / width;
                Position {
                    window: Some(w),
                    sigmoid: scaled_sigmoid(position) / scaled_sigmoid(-1.0),
                }
            }
            None => {
                let position = match previous {
                    None => 3.0,
                    Some((right, width)) => (i as f64 - right as f64).abs() / (width - 1.0),
                };
                Position {
                    window: None,
                    sigmoid: scaled_sigmoid(position),
                }
            }
        };
        out.push((i >= probation).then_some(entry));
        if let Some(w) = current
            && t == file.windows[w].1
        {
            let (left, right) = spans[w];
            previous = Some((i, (right as f64 - left as f64) + 1.0));
            current = None;
        }
    }
    Ok(out)
}

/// The per-row weight of a detection under `profile` (0 in the probationary period), as
/// NAB writes it in its `S(t)_<profile>` result columns.
pub fn row_weights(file: &File<'_>, profile: &Profile) -> Result<Vec<f64>, NabError> {
    Ok(rows_of(file)?
        .into_iter()
        .map(|row| match row {
            None => 0.0,
            Some(Position {
                window: Some(_),
                sigmoid,
            }) => sigmoid * profile.tp,
            Some(Position {
                window: None,
                sigmoid,
            }) => sigmoid * profile.fp,
        })
        .collect())
}

/// The result of one profile over a corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileScore {
    /// The profile's name.
    pub profile: &'static str,
    /// The best threshold (detection when score >= threshold).
    pub threshold: f64,
    /// The raw score at that threshold.
    pub raw: f64,
    /// Raw score of a detector that never fires.
    pub null: f64,
    /// Raw score of a perfect detector.
    pub perfect: f64,
    /// `100 * (raw - null) / (perfect - null)`.
    pub normalized: f64,
    /// Windows detected at that threshold.
    pub detected: usize,
    /// Windows scored (those not wholly in a probationary period).
    pub windows: usize,
    /// Detections outside any window at that threshold.
    pub false_positives: usize,
}

/// Scores a corpus under every profile of `profiles`, each at its best threshold.
pub fn score_corpus(
    files: &[File<'_>],
    profiles: &[Profile],
) -> Result<Vec<ProfileScore>, NabError> {
    let (rows, all_windows, windows) = corpus_rows(files)?;
    Ok(profiles
        .iter()
        .map(|p| sweep(&rows, all_windows, windows, p, None))
        .collect())
}

/// Scores a corpus under `profile` at a threshold chosen elsewhere (detection when a score
/// reaches it).
pub fn score_at(
    files: &[File<'_>],
    profile: &Profile,
    threshold: f64,
) -> Result<ProfileScore, NabError> {
    let (rows, all_windows, windows) = corpus_rows(files)?;
    Ok(sweep(&rows, all_windows, windows, profile, Some(threshold)))
}

/// The corpus' scorable rows, highest scores first, with the number of windows and of
/// windows scored.
fn corpus_rows(files: &[File<'_>]) -> Result<(Vec<Row>, usize, usize), NabError> {
    let mut rows = Vec::new();
    let mut first_window = 0;
    let mut scored_windows = std::collections::BTreeSet::new();
    for file in files {
        for (entry, &score) in rows_of(file)?.into_iter().zip(file.scores) {
            if let Some(Position { window, sigmoid }) = entry {
                let window = window.map(|w| w + first_window);
                if let Some(w) = window {
                    scored_windows.insert(w);
                }
                rows.push(Row {
                    score,
                    window,
                    sigmoid,
                });
            }
        }
        first_window += file.windows.len();
    }
    // Highest scores first; equal scores enter together.
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok((rows, first_window, scored_windows.len()))
}

/// Sweeps the threshold down through every distinct score and keeps the best; or, with
/// `fixed`, takes the rows down to that threshold and keeps what they give.
fn sweep(
    rows: &[Row],
    all_windows: usize,
    windows: usize,
    profile: &Profile,
    fixed: Option<f64>,
) -> ProfileScore {
    let null = -profile.fn_ * windows as f64;
    // Best detection weight per window so far (None: missed).
    let mut best: Vec<Option<f64>> = vec![None; all_windows];
    let mut total = null;
    let mut detected = 0;
    let mut false_positives = 0;
    // Threshold above every score: nothing detected.
    let mut top = (
        1.1_f64.max(rows.first().map_or(0.0, |r| r.score) + 1.0),
        total,
        0,
        0,
    );
    let mut i = 0;
    while i < rows.len() && fixed.is_none_or(|f| rows[i].score >= f) {
        let threshold = rows[i].score;
        while i < rows.len() && rows[i].score == threshold {
            let row = rows[i];
            match row.window {
                Some(w) => {
                    let weight = row.sigmoid * profile.tp;
                    match best[w] {
                        None => {
                            total += weight + profile.fn_;
                            best[w] = Some(weight);
                            detected += 1;
                        }
                        Some(old) if weight > old => {
                            total += weight - old;
                            best[w] = Some(weight);
                        }
                        Some(_) => {}
                    }
                }
                None => {
                    total += row.sigmoid * profile.fp;
                    false_positives += 1;
                }
            }
            i += 1;
        }
        if total > top.1 || fixed.is_some() {
            top = (threshold, total, detected, false_positives);
        }
    }
    if let Some(threshold) = fixed {
        top.0 = threshold;
    }
    let perfect = profile.tp * windows as f64;
    let (threshold, raw, detected, false_positives) = top;
    ProfileScore {
        profile: profile.name,
        threshold,
        raw,
        null,
        perfect,
        normalized: if perfect > null {
            100.0 * (raw - null) / (perfect - null)
        } else {
            0.0
        },
        detected,
        windows,
        false_positives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Profile = PROFILES[0];

    fn corpus(scores: &[f64], windows: &[(i64, i64)]) -> ProfileScore {
        let timestamps: Vec<i64> = (0..scores.len() as i64).collect();
        let file = File {
            timestamps: &timestamps,
            scores,
            windows,
        };
        score_corpus(&[file], &[STANDARD]).unwrap()[0]
    }

    #[test]
    fn the_sigmoid_has_the_documented_shape() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_2).abs() < 1e-9);
        assert!((scaled_sigmoid(-0.5) - 0.848_283_639_9).abs() < 1e-9);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
        assert_eq!(probation_rows(100), 15);
        assert_eq!(probation_rows(100_000), 750);
    }

    #[test]
    fn a_detector_that_never_fires_scores_zero_and_a_perfect_one_a_hundred() {
        // 100 rows, probation 15, one window over rows 40..=49.
        let mut scores = vec![0.0; 100];
        assert_eq!(corpus(&scores, &[(40, 49)]).normalized, 0.0);
        scores[40] = 1.0;
        let perfect = corpus(&scores, &[(40, 49)]);
        assert!((perfect.normalized - 100.0).abs() < 1e-9, "{perfect:?}");
        assert_eq!(perfect.threshold, 1.0);
        assert_eq!((perfect.detected, perfect.false_positives), (1, 0));
    }

    #[test]
    fn a_hand_computed_case_matches() {
        // Window rows 40..=49 (width 10). A detection at row 45: position -(49-45+1)/10 =
        // -0.5, weight 0.848284/0.986614 = 0.859795. One false positive at row 20 (before any
        // window: full fp weight 0.11) with a higher score, so it is in every sweep step
        // that detects the window: raw = 0.859795 - 0.11 = 0.749795; null -1, perfect 1.
        let mut scores = vec![0.0; 100];
        scores[45] = 0.6;
        scores[20] = 0.9;
        let s = corpus(&scores, &[(40, 49)]);
        let expected_raw = 0.848_283_639_9 / 0.986_614_298_2 - 0.11;
        assert!((s.raw - expected_raw).abs() < 1e-6, "{s:?}");
        assert_eq!(s.threshold, 0.6);
        assert!((s.normalized - 100.0 * (expected_raw + 1.0) / 2.0).abs() < 1e-4);
        // A false positive just behind a window costs little: row 52 is (52-49)/(10-1) =
        // 0.333 window widths past, scaled sigmoid -0.6630 times 0.11.
        let mut scores = vec![0.0; 100];
        scores[40] = 0.5;
        scores[52] = 0.9;
        let s = corpus(&scores, &[(40, 49)]);
        let fp = scaled_sigmoid(3.0 / 9.0) * 0.11;
        assert!((s.raw - (1.0 + fp)).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn only_the_best_detection_of_a_window_counts_and_probation_is_ignored() {
        let mut scores = vec![0.0; 100];
        scores[5] = 1.0; // probationary: neither a false positive nor anything else
        scores[41] = 0.8;
        scores[48] = 0.9;
        let s = corpus(&scores, &[(40, 49)]);
        assert_eq!(s.false_positives, 0);
        // At threshold 0.8 both count; the earlier (41) is worth more.
        let early = scaled_sigmoid(-(49.0 - 41.0 + 1.0) / 10.0) / scaled_sigmoid(-1.0);
        assert!((s.raw - early).abs() < 1e-9, "{s:?}");
        assert_eq!(s.threshold, 0.8);
    }

    #[test]
    fn a_fixed_threshold_scores_what_it_detects_and_the_best_one_agrees() {
        let scores = [0.0, 0.2, 0.6, 0.8, 0.3, 0.6, 0.1, 0.0, 0.0, 0.0];
        let windows = [(3_i64, 5_i64)];
        let best = corpus(&scores, &windows);
        let timestamps: Vec<i64> = (0..10).collect();
        let file = File {
            timestamps: &timestamps,
            scores: &scores,
            windows: &windows,
        };
        let at_best = score_at(std::slice::from_ref(&file), &STANDARD, best.threshold).unwrap();
        assert_eq!(at_best.raw, best.raw);
        assert_eq!(at_best.threshold, best.threshold);
        // Above every score nothing is detected: the null score.
        let never = score_at(std::slice::from_ref(&file), &STANDARD, 2.0).unwrap();
        assert_eq!(
            (never.raw, never.detected, never.normalized),
            (never.null, 0, 0.0)
        );
        // At 0 everything past probation fires.
        let always = score_at(std::slice::from_ref(&file), &STANDARD, 0.0).unwrap();
        assert!(always.false_positives > best.false_positives);
    }

    #[test]
    fn bad_input_is_refused() {
        let file = File {
            timestamps: &[0, 1, 2],
            scores: &[0.0, 1.0],
            windows: &[],
        };
        assert!(matches!(
            score_corpus(&[file], &PROFILES),
            Err(NabError::Length { .. })
        ));
        let file = File {
            timestamps: &[0, 1, 2],
            scores: &[0.0, 1.0, 0.0],
            windows: &[(1, 5)],
        };
        assert_eq!(
            score_corpus(&[file], &PROFILES).unwrap_err(),
            NabError::WindowEdge(5)
        );
    }
}
