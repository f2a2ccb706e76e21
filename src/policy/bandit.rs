//! Which action heals: per (failure kind, asset class, action), a Beta posterior of the
//! probability that the action heals, from a prior and the counted outcomes, and Thompson
//! sampling: draw once from each permitted action's posterior and take the largest draw. It
//! tries uncertain actions while it knows little and settles on the best as outcomes arrive.

use rand08::Rng;
use serde::{Deserialize, Serialize};

/// One action's outcomes for a (failure kind, asset class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// The action's catalog name.
    pub action: String,
    /// Prior pseudo-counts (healed, not healed); (1, 1) is uniform.
    pub prior: (f64, f64),
    /// Times it healed.
    pub healed: u64,
    /// Times it did not.
    pub not_healed: u64,
}

impl Arm {
    /// The posterior's parameters.
    pub fn posterior(&self) -> (f64, f64) {
        (
            self.prior.0 + self.healed as f64,
            self.prior.1 + self.not_healed as f64,
        )
    }

    /// The posterior mean probability of healing.
    pub fn mean(&self) -> f64 {
        let (a, b) = self.posterior();
        a / (a + b)
    }
}

/// Thompson sampling: the index of the arm with the largest posterior draw (`None` for no
/// arms).
pub fn choose<R: Rng>(arms: &[Arm], rng: &mut R) -> Option<usize> {
    arms.iter()
        .map(|arm| {
            let (a, b) = arm.posterior();
            sample_beta(a, b, rng)
        })
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map(|(i, _)| i)
}

/// The arm with the highest posterior mean: what the policy recommends now.
pub fn best(arms: &[Arm]) -> Option<usize> {
    arms.iter()
        .enumerate()
        .max_by(|x, y| x.1.mean().total_cmp(&y.1.mean()))
        .map(|(i, _)| i)
}

/// A draw from Beta(a, b) (`rand_distr`); 0.5 when a shape is not positive and finite.
pub fn sample_beta<R: Rng>(a: f64, b: f64, rng: &mut R) -> f64 {
    // Both shapes are positive (a prior plus counts); a degenerate pair draws the middle.
    match rand_distr::Beta::new(a, b) {
        Ok(beta) => rng.sample(beta),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand08::SeedableRng;
    use rand08::rngs::SmallRng;

    fn arm(action: &str, healed: u64, not_healed: u64) -> Arm {
        Arm {
            action: action.to_owned(),
            prior: (1.0, 1.0),
            healed,
            not_healed,
        }
    }

    #[test]
    fn beta_draws_have_the_right_mean() {
        let mut rng = SmallRng::seed_from_u64(1);
        for (a, b) in [(2.0, 5.0), (0.5, 0.5), (30.0, 10.0)] {
            let n = 20_000;
            let mean = (0..n).map(|_| sample_beta(a, b, &mut rng)).sum::<f64>() / n as f64;
            assert!((mean - a / (a + b)).abs() < 0.01, "Beta({a}, {b}): {mean}");
        }
    }

    #[test]
    fn sampling_settles_on_the_action_that_heals() {
        let arms = vec![
            arm("restart", 2, 18),
            arm("rollback", 18, 2),
            arm("scale_out", 1, 1),
        ];
        let mut rng = SmallRng::seed_from_u64(7);
        let picks = (0..1000)
            .filter(|_| choose(&arms, &mut rng) == Some(1))
            .count();
        assert!(picks > 800, "rollback chosen {picks} of 1000 times");
        assert_eq!(best(&arms), Some(1));
        assert!((arms[1].mean() - 19.0 / 22.0).abs() < 1e-12);
        assert_eq!(choose(&[], &mut rng), None);
    }

    #[test]
    fn a_simulated_stream_learns_the_right_action() {
        // The right action heals 90% of the time, the others 10%.
        let mut arms = vec![
            arm("restart", 0, 0),
            arm("rollback", 0, 0),
            arm("reroute", 0, 0),
        ];
        let mut rng = SmallRng::seed_from_u64(3);
        let mut right_late = 0;
        for round in 0..200 {
            let i = choose(&arms, &mut rng).unwrap();
            let p = if i == 1 { 0.9 } else { 0.1 };
            if rng.r#gen::<f64>() < p {
                arms[i].healed += 1;
            } else {
                arms[i].not_healed += 1;
            }
            if round >= 100 && i == 1 {
                right_late += 1;
            }
        }
        assert!(
            right_late >= 90,
            "right action {right_late} of the last 100"
        );
    }
}
