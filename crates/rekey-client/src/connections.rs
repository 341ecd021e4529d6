//! `/api/v1/connections`: list, show, create, change, credentials, status,
//! revocation, reauthorization, refresh and health checks.

use crate::{seg, Client, Result, NO_QUERY};
use rekey_api::*;
use reqwest::Method;

fn conn(id: &str) -> String {
    format!("/api/v1/connections/{}", seg(id))
}

impl Client {
    /// `GET /api/v1/connections`: one page; filters combine with AND.
    pub async fn list_connections(&self, query: &ConnectionQuery) -> Result<ConnectionList> {
        self.get("/api/v1/connections", query).await
    }

    /// Every page of [`Client::list_connections`], following `next_cursor`
    /// from `query.cursor` on.
    pub async fn list_all_connections(
        &self,
        mut query: ConnectionQuery,
    ) -> Result<Vec<ConnectionView>> {
        let mut items = Vec::new();
        loop {
            let page = self.list_connections(&query).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(items),
            }
        }
    }

    /// `GET /api/v1/connections/{id}` (no secrets).
    pub async fn get_connection(&self, id: &str) -> Result<ConnectionView> {
        self.get(&conn(id), NO_QUERY).await
    }

    /// `POST /api/v1/connections` with static credential material.
    pub async fn create_connection(&self, req: &CreateConnection) -> Result<ConnectionView> {
        self.post("/api/v1/connections", NO_QUERY, Some(req), None)
            .await
    }

    /// `POST /api/v1/connections/import`: up to
    /// [`IMPORT_MAX_ROWS`] connections; each row's outcome, in order.
    pub async fn import_connections(&self, req: &ImportConnections) -> Result<ImportReport> {
        self.post("/api/v1/connections/import", NO_QUERY, Some(req), None)
            .await
    }

    /// `PATCH /api/v1/connections/{id}`; `if_match` is the expected version.
    pub async fn update_connection(
        &self,
        id: &str,
        req: &UpdateConnection,
        if_match: Option<i64>,
    ) -> Result<ConnectionView> {
        self.write(Method::PATCH, &conn(id), req, if_match).await
    }

    /// `DELETE /api/v1/connections/{id}`: destroys the stored secrets
    /// (`revoke: Some(false)` skips revoking an OAuth grant first).
    pub async fn delete_connection(
        &self,
        id: &str,
        query: &DeleteQuery,
        if_match: Option<i64>,
    ) -> Result<()> {
        self.delete(&conn(id), query, if_match).await
    }

    /// `GET /api/v1/connections/{id}/credentials`: the decrypted material
    /// (needs `credentials:read`; audited). Its `Debug` is redacted.
    pub async fn read_credentials(&self, id: &str) -> Result<CredentialsView> {
        self.get(&format!("{}/credentials", conn(id)), NO_QUERY)
            .await
    }

    /// `GET /api/v1/connections/{id}/credentials?version=`: `current` or
    /// `previous` (the credential replaced last, while its grace lasts).
    pub async fn read_credentials_version(
        &self,
        id: &str,
        version: &str,
    ) -> Result<CredentialsView> {
        let q = CredentialsQuery {
            version: Some(version.to_string()),
        };
        self.get(&format!("{}/credentials", conn(id)), &q).await
    }

    /// `GET /api/v1/connections/{id}/versions`: the credential history
    /// (labels and fingerprints, never values), newest first.
    pub async fn list_versions(&self, id: &str) -> Result<VersionList> {
        self.get(&format!("{}/versions", conn(id)), NO_QUERY).await
    }

    /// `PUT /api/v1/connections/{id}/credentials`: replace the material.
    pub async fn replace_credentials(
        &self,
        id: &str,
        req: &UpdateCredentials,
        if_match: Option<i64>,
    ) -> Result<ConnectionView> {
        self.write(
            Method::PUT,
            &format!("{}/credentials", conn(id)),
            req,
            if_match,
        )
        .await
    }

    /// `POST /api/v1/connections/{id}/disable`.
    pub async fn disable_connection(
        &self,
        id: &str,
        req: &DisableConnection,
        if_match: Option<i64>,
    ) -> Result<ConnectionView> {
        self.post(
            &format!("{}/disable", conn(id)),
            NO_QUERY,
            Some(req),
            if_match,
        )
        .await
    }

    /// `POST /api/v1/connections/{id}/enable`: back to `pending`.
    pub async fn enable_connection(
        &self,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<ConnectionView> {
        self.post::<_, _, ()>(&format!("{}/enable", conn(id)), NO_QUERY, None, if_match)
            .await
    }

    /// `POST /api/v1/connections/{id}/revoke`: at the provider, or the
    /// manual steps and `revoke_pending`.
    pub async fn revoke_connection(&self, id: &str) -> Result<RevokeResult> {
        self.post::<_, _, ()>(&format!("{}/revoke", conn(id)), NO_QUERY, None, None)
            .await
    }

    /// `POST /api/v1/connections/{id}/revoke/confirm`: a manual revocation
    /// is done (`revoke_pending` → `revoked`).
    pub async fn confirm_revocation(
        &self,
        id: &str,
        req: &ConfirmRevocation,
    ) -> Result<ConnectionView> {
        self.post(
            &format!("{}/revoke/confirm", conn(id)),
            NO_QUERY,
            Some(req),
            None,
        )
        .await
    }

    /// `POST /api/v1/connections/{id}/revoke/verify`: try the revoked
    /// credential at the provider now.
    pub async fn verify_revocation(&self, id: &str) -> Result<RevocationView> {
        self.post::<_, _, ()>(&format!("{}/revoke/verify", conn(id)), NO_QUERY, None, None)
            .await
    }

    /// `GET /api/v1/connections/{id}/readers`: who read the credential.
    pub async fn list_readers(&self, id: &str, q: &ReadersQuery) -> Result<ReaderList> {
        self.get(&format!("{}/readers", conn(id)), q).await
    }

    /// `GET /api/v1/connections/{id}/revocations`: newest first.
    pub async fn list_revocations(&self, id: &str) -> Result<RevocationList> {
        self.get(&format!("{}/revocations", conn(id)), NO_QUERY)
            .await
    }

    /// `POST /api/v1/connections/{id}/reauthorize`: a connect session for
    /// the original authorizer, or (`accept_mismatch`) switch to a parked
    /// grant.
    pub async fn reauthorize_connection(
        &self,
        id: &str,
        accept_mismatch: bool,
    ) -> Result<ReauthorizeResult> {
        let query = ReauthorizeQuery {
            accept_mismatch: accept_mismatch.then_some(true),
        };
        self.post::<_, _, ()>(&format!("{}/reauthorize", conn(id)), &query, None, None)
            .await
    }

    /// `POST /api/v1/connections/{id}/refresh`: refresh an OAuth access
    /// token now.
    pub async fn refresh_connection(&self, id: &str) -> Result<ConnectionView> {
        self.post::<_, _, ()>(&format!("{}/refresh", conn(id)), NO_QUERY, None, None)
            .await
    }

    /// `POST /api/v1/connections/{id}/check`: run the health probe now.
    pub async fn check_connection(&self, id: &str) -> Result<CheckResult> {
        self.post::<_, _, ()>(&format!("{}/check", conn(id)), NO_QUERY, None, None)
            .await
    }

    /// `POST /api/v1/connections/{id}/confirm-working`: an operator saw the
    /// data of a connection no probe can check flow (`pending` → `active`).
    pub async fn confirm_working(
        &self,
        id: &str,
        req: &ConfirmWorking,
        if_match: Option<i64>,
    ) -> Result<ConnectionView> {
        self.post(
            &format!("{}/confirm-working", conn(id)),
            NO_QUERY,
            Some(req),
            if_match,
        )
        .await
    }
}
