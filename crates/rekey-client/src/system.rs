//! The provider catalog, API keys, the audit log and the system endpoints
//! (`/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`).

use crate::{seg, Client, ClientError, Result, NO_QUERY};
use rekey_api::*;
use reqwest::Method;
use serde::Serialize;

/// Query of `GET /api/v1/providers`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderFilter {
    pub category: Option<String>,
    /// One of the connection kinds (`api_key`, `oauth2_authorization_code`…).
    pub auth_kind: Option<String>,
}

impl Client {
    /// `GET /api/v1/providers`: the catalog.
    pub async fn list_providers(&self, filter: &ProviderFilter) -> Result<ProviderList> {
        self.get("/api/v1/providers", filter).await
    }

    /// `GET /api/v1/providers/{id}` with its revoke and rotate runbooks.
    pub async fn get_provider(&self, id: &str) -> Result<ProviderView> {
        self.get(&format!("/api/v1/providers/{}", seg(id)), NO_QUERY)
            .await
    }

    /// `GET /api/v1/api-keys` of the caller's tenant (never the keys).
    pub async fn list_api_keys(&self) -> Result<ApiKeyList> {
        self.get("/api/v1/api-keys", NO_QUERY).await
    }

    /// `POST /api/v1/api-keys`: the key itself is in the answer, once.
    pub async fn create_api_key(&self, req: &CreateApiKey) -> Result<CreatedApiKey> {
        self.post("/api/v1/api-keys", NO_QUERY, Some(req), None)
            .await
    }

    /// `DELETE /api/v1/api-keys/{id}`: the key stops working at once.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKeyView> {
        self.expect(self.request(Method::DELETE, &format!("/api/v1/api-keys/{}", seg(id))))
            .await
    }

    /// `POST /api/v1/api-keys/{id}/rotate`: the new key is in the answer,
    /// once; the old one works for the grace (or stops at once with 0).
    pub async fn rotate_api_key(&self, id: &str, req: &RotateApiKey) -> Result<RotatedApiKey> {
        self.post(
            &format!("/api/v1/api-keys/{}/rotate", seg(id)),
            NO_QUERY,
            Some(req),
            None,
        )
        .await
    }

    /// `GET /api/v1/audit`: one page, newest first.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<AuditList> {
        self.get("/api/v1/audit", query).await
    }

    /// Every page of [`Client::list_audit`] from `query.cursor` on.
    pub async fn list_all_audit(&self, mut query: AuditQuery) -> Result<Vec<AuditEntryView>> {
        let mut items = Vec::new();
        loop {
            let page = self.list_audit(&query).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(items),
            }
        }
    }

    /// `GET /api/v1/audit/verify`: the verdict on the whole chain, read
    /// from the first entry, or with `incremental` from the last verified one.
    pub async fn verify_audit(&self, incremental: bool) -> Result<AuditVerifyReport> {
        let q = AuditVerifyQuery {
            incremental: incremental.then_some(true),
        };
        self.get("/api/v1/audit/verify", &q).await
    }

    /// `GET /api/v1/evidence`: stream the export into `out` as it comes
    /// (any size, bounded memory); the number of bytes written. A transfer
    /// the server cut short is an error: the file then has no seal line.
    pub async fn export_evidence(
        &self,
        query: &EvidenceQuery,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        // An export of many connections can take longer than one request.
        let req = self
            .request(Method::GET, "/api/v1/evidence")
            .query(query)
            .timeout(std::time::Duration::from_secs(3600));
        let mut resp = req.send().await.map_err(|source| ClientError::Connect {
            base: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(ClientError::Transport)?;
            return Err(ClientError::from_response(status.as_u16(), &bytes));
        }
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(ClientError::Transport)? {
            out.write_all(&chunk).map_err(ClientError::Write)?;
            n += chunk.len() as u64;
        }
        out.flush().map_err(ClientError::Write)?;
        Ok(n)
    }

    /// `GET /api/v1/evidence/{id}`: what the audit chain recorded of an
    /// export, and whether the chain is intact.
    pub async fn get_evidence(&self, id: &str) -> Result<EvidenceRecordView> {
        self.get(&format!("/api/v1/evidence/{}", seg(id)), NO_QUERY)
            .await
    }

    /// `GET /healthz`: liveness.
    pub async fn healthz(&self) -> Result<Health> {
        self.get("/healthz", NO_QUERY).await
    }

    /// `GET /readyz`: the database answers (an error with 503 when not).
    pub async fn readyz(&self) -> Result<Health> {
        self.get("/readyz", NO_QUERY).await
    }

    /// `GET /metrics`: OpenMetrics text.
    pub async fn metrics(&self) -> Result<String> {
        let resp = self
            .request(Method::GET, "/metrics")
            .send()
            .await
            .map_err(|source| ClientError::Connect {
                base: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(ClientError::Transport)?;
        if !status.is_success() {
            return Err(ClientError::from_response(status.as_u16(), text.as_bytes()));
        }
        Ok(text)
    }

    /// `GET /api/v1/openapi.json`: the API's OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.get("/api/v1/openapi.json", NO_QUERY).await
    }
}
