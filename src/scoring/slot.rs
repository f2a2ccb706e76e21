//! The active model: held in memory, swapped when any replica activates another one.
//! [`spawn_model_listener`] listens for activations through the store; a request takes the
//! model it starts with, so no request mixes versions.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::model::bundle::{BUNDLE_KIND, Bundle};
use crate::store::Store;

/// The model answering scoring requests.
#[derive(Debug)]
pub struct ActiveModel {
    /// Its id in the model registry.
    pub model_id: i64,
    /// Its version in the registry, shown in answers as `bundle/v{version}`.
    pub version: i32,
    /// The trained bundle.
    pub bundle: Bundle,
}

/// The slot holding the active model, shared by all requests, and the challenger in
/// shadow beside it, if any.
#[derive(Debug, Default)]
pub struct ModelSlot {
    active: RwLock<Option<Arc<ActiveModel>>>,
    shadow: RwLock<Option<Arc<ActiveModel>>>,
}

impl ModelSlot {
    /// The model now (cheap: an `Arc` clone).
    pub fn current(&self) -> Option<Arc<ActiveModel>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The challenger in shadow now, if any.
    pub fn shadow(&self) -> Option<Arc<ActiveModel>> {
        self.shadow
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, model: Option<ActiveModel>) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = model.map(Arc::new);
    }

    /// Loads the challenger in shadow, if any (one that cannot be read is left out).
    async fn reload_shadow(&self, store: &Store) -> Result<(), crate::store::Error> {
        let shadow = store
            .shadow_model_artifact(BUNDLE_KIND)
            .await?
            .and_then(|(record, bytes)| match Bundle::from_artifact(&bytes) {
                Ok(bundle) => Some(Arc::new(ActiveModel {
                    model_id: record.model_id,
                    version: record.version,
                    bundle,
                })),
                Err(e) => {
                    tracing::warn!(model_id = record.model_id, "shadow model unreadable: {e}");
                    None
                }
            });
        if let Some(m) = &shadow {
            tracing::info!(
                model_id = m.model_id,
                "scoring in shadow beside the active model"
            );
        }
        *self.shadow.write().unwrap_or_else(|e| e.into_inner()) = shadow;
        Ok(())
    }

    /// Loads the registry's active bundle into the slot. An artifact that no longer parses
    /// leaves the slot empty (cold start answers) and is logged.
    pub async fn reload(&self, store: &Store) -> Result<(), crate::store::Error> {
        let model = match store.active_model_artifact(BUNDLE_KIND).await? {
            None => None,
            Some((record, bytes)) => match Bundle::from_artifact(&bytes) {
                Ok(bundle) => Some(ActiveModel {
                    model_id: record.model_id,
                    version: record.version,
                    bundle,
                }),
                Err(e) => {
                    tracing::warn!(
                        model_id = record.model_id,
                        "the active model's artifact cannot be read: {e}"
                    );
                    None
                }
            },
        };
        match &model {
            Some(m) => tracing::info!(model_id = m.model_id, version = m.version, "serving model"),
            None => tracing::info!(
                "no active model: the cold-start detector scores until one is trained"
            ),
        }
        self.set(model);
        self.reload_shadow(store).await
    }
}

/// Loads the active model, then reloads it whenever an activation is announced, until
/// aborted. Subscribes again after database errors.
pub fn spawn_model_listener(store: Store, slot: Arc<ModelSlot>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let listening = async {
                let mut activations = store.listen_model_activations().await?;
                // Load after subscribing, so no activation falls between the two.
                if let Err(e) = slot.reload(&store).await {
                    tracing::warn!("cannot load the active model: {e}");
                }
                loop {
                    activations.next().await?;
                    if let Err(e) = slot.reload(&store).await {
                        tracing::warn!("cannot load the newly active model: {e}");
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), crate::store::Error>(())
            };
            if let Err(e) = listening.await {
                tracing::warn!("model activation listener stopped ({e}); reconnecting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
