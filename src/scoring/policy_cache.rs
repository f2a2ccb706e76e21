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

/// What this replica knows of the policy: thresholds by class and the classes in use.
#[derive(Debug, Default)]
pub struct PolicyCache {
    thresholds: RwLock<HashMap<String, (f64, f64)>>,
    classes: RwLock<HashSet<String>>,
    action_stats: RwLock<Vec<crate::store::actions::ActionStat>>,
}

impl PolicyCache {
    /// (fire at, clear below) for an asset of `class`: its class's threshold, else the
    /// global (`*`) one, else the configured `scoring.alert_threshold` and
    /// `scoring.clear_threshold`.
    pub fn threshold_for(&self, class: Option<&str>, settings: &Settings) -> (f64, f64) {
        let map = self.thresholds.read().unwrap_or_else(|e| e.into_inner());
        class
            .and_then(|c| map.get(c))
            .or_else(|| map.get(GLOBAL_CLASS))
            .copied()
            .unwrap_or((
                settings.scoring.alert_threshold,
                settings.scoring.clear_threshold,
            ))
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
