//! What this replica knows of the policy: thresholds by class, the classes in use and the
//! learned action outcomes, cached and refreshed every few seconds (and after a local change)
//! so that scoring never waits for the database to decide whether a window alerts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::config::Settings;
use crate::store::Store;
use crate::store::thresholds::GLOBAL_CLASS;

/// Where an alert firing at `fire_at` clears, for a threshold set without its own clear
/// point (the model's proposal, the adapter's move, an admin's threshold without one):
/// [`AlertRule::clear_below`](crate::model::evaluation::AlertRule::clear_below) of
/// [`alert_rule`](crate::jobs::train::alert_rule).
pub fn clear_below(settings: &Settings, fire_at: f64) -> f64 {
    crate::jobs::train::alert_rule(settings).clear_below(fire_at)
}

/// (fire at, clear below) where no threshold is stored: the model's `proposed` one when
/// `scoring.model_threshold` (within `policy.min_threshold` and `policy.max_threshold`,
/// clearing at [`clear_below`]), else the configured `scoring.alert_threshold` and
/// `scoring.clear_threshold`.
pub fn unstored_threshold(settings: &Settings, proposed: Option<f64>) -> (f64, f64) {
    let scoring = &settings.scoring;
    match proposed.filter(|_| scoring.model_threshold) {
        Some(proposed) => {
            let fire_at =
                proposed.clamp(settings.policy.min_threshold, settings.policy.max_threshold);
            (fire_at, clear_below(settings, fire_at))
        }
        None => (scoring.alert_threshold, scoring.clear_threshold),
    }
}

/// What this replica knows of the policy: thresholds by class and the classes in use.
#[derive(Debug, Default)]
pub struct PolicyCache {
    thresholds: RwLock<HashMap<String, (f64, f64)>>,
    classes: RwLock<HashSet<String>>,
    action_stats: RwLock<Vec<crate::store::actions::ActionStat>>,
}

impl PolicyCache {
    /// (fire at, clear below) for an asset of `class`: its class's stored threshold, else
    /// the global (`*`) one, else [`unstored_threshold`] of what the model that scores the
    /// class `proposed`.
    pub fn threshold_for(
        &self,
        class: Option<&str>,
        settings: &Settings,
        proposed: Option<f64>,
    ) -> (f64, f64) {
        let map = self.thresholds.read().unwrap_or_else(|e| e.into_inner());
        class
            .and_then(|c| map.get(c))
            .or_else(|| map.get(GLOBAL_CLASS))
            .copied()
            .unwrap_or_else(|| unstored_threshold(settings, proposed))
    }

    /// Reloads thresholds and classes from the database.
    pub async fn reload(&self, store: &Store) -> Result<(), crate::store::Error> {
        let thresholds = store.thresholds().await?;
        let classes = store.asset_classes().await?;
        let stats = store.action_stats().await?;
        *self.action_stats.write().unwrap_or_else(|e| e.into_inner()) = stats;
        *self.thresholds.write().unwrap_or_else(|e| e.into_inner()) = thresholds
            .into_iter()
            .map(|t| (t.asset_class, (t.fire_at, t.clear_at)))
            .collect();
        *self.classes.write().unwrap_or_else(|e| e.into_inner()) = classes.into_iter().collect();
        Ok(())
    }

    /// The action the policy recommends now for a failure kind on an asset class: the
    /// applicable catalog action with the highest posterior mean (learned counts as of the
    /// last refresh). `None` without an applicable action.
    pub fn recommend(
        &self,
        settings: &Settings,
        kind: &str,
        class: &str,
    ) -> Option<Recommendation> {
        let candidates: Vec<&crate::config::ActionSettings> = settings
            .actions
            .iter()
            .filter(|a| a.name != crate::actions::PAGE_HUMAN && a.applies_to(kind, class))
            .collect();
        let stats = self.action_stats.read().unwrap_or_else(|e| e.into_inner());
        let arms = crate::actions::arms(&candidates, &stats, kind, class);
        let best = crate::policy::bandit::best(&arms)?;
        Some(Recommendation {
            action: arms[best].action.clone(),
            mode: candidates[best].mode,
            healed_probability: arms[best].mean(),
            outcomes: arms[best].healed + arms[best].not_healed,
        })
    }

    /// Whether some asset has `class` (asks the database on a cache miss).
    pub async fn knows_class(
        &self,
        store: &Store,
        class: &str,
    ) -> Result<bool, crate::store::Error> {
        if self
            .classes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(class)
        {
            return Ok(true);
        }
        let known = store.asset_classes().await?;
        let found = known.iter().any(|c| c == class);
        *self.classes.write().unwrap_or_else(|e| e.into_inner()) = known.into_iter().collect();
        Ok(found)
    }
}

/// The action recommended for a diagnosed failure.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Recommendation {
    /// Catalog name.
    pub action: String,
    /// Its mode (whether Vigil would run it alone).
    pub mode: crate::policy::guard::Mode,
    /// Posterior mean probability that it heals this kind on this class.
    pub healed_probability: f64,
    /// Outcomes behind that estimate.
    pub outcomes: u64,
}

/// Reloads the cache now and then every `every`, so changes made by other replicas arrive.
pub fn spawn_policy_refresh(
    store: Store,
    cache: Arc<PolicyCache>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = cache.reload(&store).await {
                tracing::warn!("cannot reload thresholds: {e}");
            }
            tokio::time::sleep(every).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_thresholds_beat_the_models_which_beats_the_configured_one() {
        let mut settings = Settings::default();
        let cache = PolicyCache::default();
        // Nothing stored: the model's proposal, clearing at 0.3 / 0.5 of it (or clear_gap
        // below it, whichever is higher); bounded.
        assert_eq!(
            cache.threshold_for(Some("web"), &settings, None),
            (0.5, 0.3)
        );
        let (fire, clear) = cache.threshold_for(Some("web"), &settings, Some(0.2));
        assert!(
            fire == 0.2 && (clear - 0.12).abs() < 1e-12,
            "{fire} {clear}"
        );
        assert_eq!(cache.threshold_for(None, &settings, Some(0.01)).0, 0.05);
        assert_eq!(
            cache.threshold_for(None, &settings, Some(0.99)),
            (0.95, 0.75)
        );
        // A low threshold still clears above 0; a high one clears clear_gap below.
        assert!((clear_below(&settings, 0.1) - 0.06).abs() < 1e-12);
        assert!((clear_below(&settings, 0.9) - 0.7).abs() < 1e-12);
        assert_eq!(clear_below(&settings, 0.5), 0.3);
        settings.scoring.model_threshold = false;
        assert_eq!(cache.threshold_for(None, &settings, Some(0.2)), (0.5, 0.3));
        settings.scoring.model_threshold = true;
        // Stored: the class's, else the global one, whatever the model proposes.
        cache
            .thresholds
            .write()
            .unwrap()
            .extend([("web".to_owned(), (0.7, 0.5)), ("*".to_owned(), (0.4, 0.2))]);
        assert_eq!(
            cache.threshold_for(Some("web"), &settings, Some(0.2)),
            (0.7, 0.5)
        );
        assert_eq!(
            cache.threshold_for(Some("db"), &settings, Some(0.2)),
            (0.4, 0.2)
        );
    }
}
