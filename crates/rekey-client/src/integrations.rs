//! `/api/v1/integrations` (OAuth app registrations) and
//! `/api/v1/connect-sessions` (connect links).

use crate::{seg, Client, Result, NO_QUERY};
use rekey_api::*;
use reqwest::Method;

fn integ(id: &str) -> String {
    format!("/api/v1/integrations/{}", seg(id))
}

impl Client {
    /// `GET /api/v1/integrations` (client secrets are never shown),
    /// filtered by provider, tag and custody place.
    pub async fn list_integrations(&self, query: &IntegrationQuery) -> Result<IntegrationList> {
        self.get("/api/v1/integrations", query).await
    }

    /// `GET /api/v1/integrations/{id}`.
    pub async fn get_integration(&self, id: &str) -> Result<IntegrationView> {
        self.get(&integ(id), NO_QUERY).await
    }

    /// `POST /api/v1/integrations`: register an OAuth app.
    pub async fn create_integration(&self, req: &CreateIntegration) -> Result<IntegrationView> {
        self.post("/api/v1/integrations", NO_QUERY, Some(req), None)
            .await
    }

    /// `PATCH /api/v1/integrations/{id}`; a new secret replaces the stored one.
    pub async fn update_integration(
        &self,
        id: &str,
        req: &UpdateIntegration,
        if_match: Option<i64>,
    ) -> Result<IntegrationView> {
        self.write(Method::PATCH, &integ(id), req, if_match).await
    }

    /// `POST /api/v1/integrations/{id}/rotate-secret`: test the new client
    /// secret at the provider, then switch every connection to it.
    pub async fn rotate_client_secret(
        &self,
        id: &str,
        req: &RotateClientSecret,
    ) -> Result<ClientSecretRotationView> {
        self.post(
            &format!("{}/rotate-secret", integ(id)),
            NO_QUERY,
            Some(req),
            None,
        )
        .await
    }

    /// `POST /api/v1/integrations/{id}/rotate-secret/confirm`: test the
    /// generated key registered at the provider, then switch to it.
    pub async fn confirm_client_secret(&self, id: &str) -> Result<ClientSecretRotationView> {
        self.post::<_, _, ()>(
            &format!("{}/rotate-secret/confirm", integ(id)),
            NO_QUERY,
            None,
            None,
        )
        .await
    }

    /// `GET /api/v1/integrations/{id}/rotate-secret`: the generated key
    /// waiting for registration (its public JWK).
    pub async fn pending_client_key(&self, id: &str) -> Result<ClientSecretRotationView> {
        self.get(&format!("{}/rotate-secret", integ(id)), NO_QUERY)
            .await
    }

    /// `DELETE /api/v1/integrations/{id}/rotate-secret`: forget the
    /// generated key waiting for registration.
    pub async fn discard_client_secret(&self, id: &str) -> Result<()> {
        self.delete(&format!("{}/rotate-secret", integ(id)), NO_QUERY, None)
            .await
    }

    /// `DELETE /api/v1/integrations/{id}` (refused while connections use it).
    pub async fn delete_integration(&self, id: &str) -> Result<()> {
        self.delete(&integ(id), NO_QUERY, None).await
    }

    /// `POST /api/v1/connect-sessions`: a single-use connect link (OAuth
    /// through an integration, or a provider's key form).
    pub async fn create_connect_session(
        &self,
        req: &CreateConnectSession,
    ) -> Result<ConnectSessionView> {
        self.post("/api/v1/connect-sessions", NO_QUERY, Some(req), None)
            .await
    }
}
