//! Probes that first mint the token they present: a service-account key's
//! access token (RFC 7523 JWT bearer grant) and an RSA key pair's key-pair
//! JWT.

use super::Presented;
use crate::status::Observation;
use crate::Rekey;
use rekey_core::credential_meta::StaticMeta;
use rekey_core::{Error, SecretString};
use rekey_providers::probe::Probe;
use rekey_store::connections::ConnectionRow;
use serde_json::Value;
use std::collections::BTreeMap;

impl Rekey {
    /// A service-account key: mint an access token (RFC 7523 JWT bearer
    /// grant at the key file's `token_uri`) with the probe's scopes.
    pub(super) async fn service_account_token(
        &self,
        probe: &Probe,
        sec: &BTreeMap<String, SecretString>,
    ) -> Result<Presented, Error> {
        if probe.token_scopes.is_empty() {
            return Ok(Presented::Unsupported(
                "the catalog probe names no `token_scopes` for service-account keys".into(),
            ));
        }
        let doc: Value = sec
            .get("json")
            .and_then(|j| serde_json::from_str(j.expose()).ok())
            .ok_or_else(|| Error::internal("service-account connection without its key file"))?;
        let field = |k: &str| doc.get(k).and_then(Value::as_str);
        let token_uri = field("token_uri").unwrap_or("https://oauth2.googleapis.com/token");
        let token_uri = match self.check_url("token_uri", token_uri) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Presented::Failed(Observation::misconfigured(format!(
                    "the key file's {}",
                    e.public_message()
                ))))
            }
        };
        let (Some(email), Some(pem)) = (field("client_email"), field("private_key")) else {
            return Err(Error::internal(
                "service-account key file lacks its email or key",
            ));
        };
        match rekey_oauth::jwt_bearer(
            &self.inner.http,
            &token_uri,
            email,
            pem,
            field("private_key_id"),
            &probe.token_scopes,
        )
        .await
        {
            Ok(t) => {
                let token = t.access_token.clone();
                Ok(Presented::Http {
                    headers: vec![("Authorization".into(), format!("Bearer {}", token.expose()))],
                    query: vec![],
                    secrets: vec![token],
                    aws: None,
                })
            }
            Err(e) => {
                // The provider may echo the assertion's key material.
                let mut obs = Observation::from_oauth(&e, &[pem]);
                obs.message = format!("the token request failed: {}", obs.message);
                Ok(Presented::Failed(obs))
            }
        }
    }

    /// An RSA key pair: a key-pair JWT in the provider's format as the
    /// bearer token.
    pub(super) async fn keypair_jwt(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
        meta: &StaticMeta,
        sec: &BTreeMap<String, SecretString>,
    ) -> Result<Presented, Error> {
        let Some(rekey_providers::KeypairJwt::Snowflake) = probe.keypair_jwt else {
            return Ok(Presented::Unsupported(
                "the catalog probe defines no key-pair JWT for this provider".into(),
            ));
        };
        let misconfigured =
            |m: &str| Ok(Presented::Failed(Observation::misconfigured(m.to_string())));
        let params = self.probe_params(row).await;
        let Some(account) = params.get("account") else {
            return misconfigured("set `params.account` (the Snowflake account identifier)");
        };
        let Some(user) = meta.username.as_deref() else {
            return misconfigured("the key pair has no `username` (the Snowflake user)");
        };
        let Some(fp) = meta.public_key_fingerprint.as_deref() else {
            return Err(Error::internal(
                "RSA key-pair connection without a fingerprint",
            ));
        };
        let pem = sec
            .get("private_key_pem")
            .ok_or_else(|| Error::internal("RSA key-pair connection without its key"))?;
        let der = crate::rsa_key::signing_der(pem, sec.get("passphrase"))?;
        let jwt = rekey_oauth::snowflake_keypair_jwt(&der, account, user, fp)
            .map_err(|e| Error::internal(format!("key-pair JWT: {e}")))?;
        let jwt = SecretString::new(jwt);
        Ok(Presented::Http {
            headers: vec![("Authorization".into(), format!("Bearer {}", jwt.expose()))],
            query: vec![],
            secrets: vec![jwt],
            aws: None,
        })
    }
}
