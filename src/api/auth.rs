//! Bearer-token authentication with scopes. Tokens come from config as SHA-256 hashes; a
//! request's token is hashed and looked up, so the secret never sits in memory longer than
//! the request. With no tokens configured, auth is off and every request acts as
//! `anonymous` with all scopes (the server then only listens on loopback, see
//! `Settings::check_exposure`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::config::{AuthSettings, Scope, hash_token};

/// Who made a request, put in the request's extensions by [`require`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's configured name (`anonymous` with auth off).
    pub name: String,
    /// What the token grants.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// True when the principal holds `scope` (admin holds all).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// What a route demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any valid token (reads for dashboards and notebooks).
    AnyToken,
    /// A token with this scope.
    Scope(Scope),
}

/// The configured tokens, keyed by hash.
#[derive(Debug, Default)]
pub struct Auth {
    by_hash: HashMap<String, Principal>,
}

impl Auth {
    /// Builds the lookup table from config.
    pub fn from_settings(settings: &AuthSettings) -> Self {
        let by_hash = settings
            .tokens
            .iter()
            .map(|t| {
                let principal = Principal {
                    name: t.name.clone(),
                    scopes: t.scopes.clone(),
                };
                (t.sha256.to_ascii_lowercase(), principal)
            })
            .collect();
        Self { by_hash }
    }

    /// True when at least one token is configured.
    pub fn is_enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// Checks a request's `Authorization` header against `access`.
    pub fn check(
        &self,
        authorization: Option<&str>,
        access: Access,
    ) -> Result<Principal, ApiError> {
        if !self.is_enabled() {
            return Ok(Principal {
                name: "anonymous".to_owned(),
                scopes: Scope::ALL.to_vec(),
            });
        }
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::MissingToken)?;
        let principal = self
            .by_hash
            .get(&hash_token(token))
            .ok_or(ApiError::InvalidToken)?;
        match access {
            Access::AnyToken => Ok(principal.clone()),
            Access::Scope(scope) if principal.has(scope) => Ok(principal.clone()),
            Access::Scope(scope) => Err(ApiError::MissingScope(scope)),
        }
    }
}

/// Middleware state: the token table and what the guarded routes demand.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The token table.
    pub auth: Arc<Auth>,
    /// The demand.
    pub access: Access,
}

/// Route-layer middleware: rejects the request with 401/403, or lets it through with its
/// [`Principal`] in the extensions.
pub async fn require(
    State(guard): State<Guard>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = guard.auth.check(header, guard.access)?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenSettings;

    fn auth_with(scopes: Vec<Scope>) -> Auth {
        Auth::from_settings(&AuthSettings {
            tokens: vec![TokenSettings {
                name: "ci".into(),
                sha256: hash_token("s3cret"),
                scopes,
            }],
        })
    }

    #[test]
    fn auth_off_admits_everyone_as_anonymous() {
        let principal = Auth::default()
            .check(None, Access::Scope(Scope::Admin))
            .unwrap();
        assert_eq!(principal.name, "anonymous");
    }

    #[test]
    fn scheme_is_case_insensitive_and_scope_is_enforced() {
        let auth = auth_with(vec![Scope::Ingest]);
        assert!(
            auth.check(Some("bearer s3cret"), Access::Scope(Scope::Ingest))
                .is_ok()
        );
        assert!(matches!(
            auth.check(Some("Bearer s3cret"), Access::Scope(Scope::Score)),
            Err(ApiError::MissingScope(Scope::Score))
        ));
        assert!(matches!(
            auth.check(Some("Bearer nope"), Access::AnyToken),
            Err(ApiError::InvalidToken)
        ));
        assert!(matches!(
            auth.check(Some("Basic s3cret"), Access::AnyToken),
            Err(ApiError::MissingToken)
        ));
        assert!(matches!(
            auth.check(None, Access::AnyToken),
            Err(ApiError::MissingToken)
        ));
    }

    #[test]
    fn admin_implies_every_scope() {
        let auth = auth_with(vec![Scope::Admin]);
        for scope in Scope::ALL {
            assert!(
                auth.check(Some("Bearer s3cret"), Access::Scope(scope))
                    .is_ok()
            );
        }
    }
}
