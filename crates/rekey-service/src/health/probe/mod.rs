//! Probes, one module per family: HTTP (`http`, including SigV4-signed
//! requests), tokens minted for the probe (`jwt`: service-account keys,
//! RSA key pairs), database logins (`db`) and OAuth grants checked at the
//! provider's userinfo / identity endpoint (`identity`). This module picks the probe
//! for a connection and gets its credential into the form the probe sends.

mod db;
pub(crate) use db::LOGGED_IN_QUERY_FAILED;
mod http;
mod identity;
mod jwt;

use self::http::AwsKey;
use crate::status::Observation;
use crate::{Ctx, Rekey};
use rekey_core::connection::ConnectionKind;
use rekey_core::credential_meta::{OAuthMeta, StaticMeta};
use rekey_core::{credentials, Error, SecretString};
use rekey_providers::probe::{Probe, ProbeProtocol};
use rekey_store::connections::ConnectionRow;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Where the probe sends the credential, from the connection's material.
pub(super) enum Presented {
    Http {
        headers: Vec<(String, String)>,
        query: Vec<(String, String)>,
        /// Secret values, to scrub from the provider's answer.
        secrets: Vec<SecretString>,
        /// Sign the request with SigV4 instead of sending a credential.
        aws: Option<AwsKey>,
    },
    /// Log in to a database (`protocol = "postgres" | "mysql"`).
    Database {
        username: String,
        password: SecretString,
    },
    /// No probe can be made with this kind (yet): why.
    Unsupported(String),
    /// Getting the credential into shape failed at the provider (a
    /// service-account token request refused): that is the finding.
    Failed(Observation),
}

impl Rekey {
    /// The probe for a connection: the catalog's for its kind, with the
    /// connection's URL override; an override alone makes a plain GET probe.
    pub(crate) fn probe_of(&self, row: &ConnectionRow) -> Result<Probe, String> {
        let provider = self.catalog().get(&row.provider);
        let catalog = provider
            .and_then(|p| p.probe_for(row.kind.as_str()))
            .cloned();
        match (catalog, &row.probe_url) {
            (Some(mut p), Some(u)) => {
                p.url = Some(u.clone());
                p.protocol = ProbeProtocol::Http;
                Ok(p)
            }
            (Some(p), None) => Ok(p),
            (None, Some(u)) => {
                let mut p: Probe = serde_json::from_value(json!({ "url": u }))
                    .map_err(|e| format!("probe: {e}"))?;
                p.auth_failure_statuses = vec![401, 403];
                p.success_statuses = vec![200, 201, 202, 204];
                Ok(p)
            }
            (None, None) => Err(provider
                .and_then(|p| p.probe_unavailable.clone())
                .unwrap_or_else(|| {
                    format!(
                        "provider `{}` has no health probe for `{}`; set `probe_url` on the connection",
                        row.provider, row.kind
                    )
                })),
        }
    }

    pub(super) async fn probe_params(&self, row: &ConnectionRow) -> BTreeMap<String, String> {
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        if !row.kind.is_static() {
            if let Some(iid) = OAuthMeta::from_column(&row.credential_meta).integration_id {
                if let Ok(i) = self.integration_row(&row.tenant, &iid).await {
                    params.extend(
                        serde_json::from_str::<BTreeMap<String, String>>(&i.params)
                            .unwrap_or_default(),
                    );
                }
            }
        }
        params.extend(
            serde_json::from_str::<BTreeMap<String, String>>(&row.params).unwrap_or_default(),
        );
        params
    }

    /// The credential in the form the probe sends it. OAuth connections get
    /// a fresh access token first (which records a failed refresh itself).
    pub(in crate::health) async fn presented(
        &self,
        ctx: &Ctx,
        row: &ConnectionRow,
        probe: &Probe,
    ) -> Result<Presented, Error> {
        if row.kind.is_static() {
            // Re-read with the secrets: material may have changed since the scan.
            let (row, sec) = self.load_with_secrets(&row.tenant, &row.id).await?;
            return self.present_static(&row, probe, sec).await;
        }
        if probe.protocol != ProbeProtocol::Http || probe.aws_sigv4.is_some() {
            return Ok(Presented::Unsupported(format!(
                "this probe cannot be made with a `{}` credential",
                row.kind
            )));
        }
        let (r, s) = self.fresh_oauth(ctx, &row.id, false).await?;
        let at = s
            .get("access_token")
            .ok_or_else(|| Error::internal("OAuth connection without access token"))?;
        let prefix = self.authorization_prefix(&r.provider);
        Ok(Presented::Http {
            headers: vec![("Authorization".into(), format!("{prefix}{}", at.expose()))],
            query: vec![],
            secrets: vec![at.clone()],
            aws: None,
        })
    }

    /// Probe a static credential that is not (yet) the connection's own: a
    /// rotation's pending version, before it is promoted. `row` carries that
    /// material's fields in `credential_meta`. `Err` when no probe can be
    /// made for it (why).
    pub(crate) async fn probe_with(
        &self,
        row: &ConnectionRow,
        sec: BTreeMap<String, SecretString>,
    ) -> Result<Observation, String> {
        let probe = self.probe_of(row)?;
        let presented = self
            .present_static(row, &probe, sec)
            .await
            .map_err(|e| e.public_message())?;
        Ok(match presented {
            Presented::Unsupported(why) => return Err(why),
            Presented::Failed(obs) => obs,
            Presented::Http {
                headers,
                query,
                secrets,
                aws,
            } => {
                let exposed: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
                self.run_probe(row, &probe, headers, query, aws.as_ref(), &exposed)
                    .await
            }
            Presented::Database { username, password } => {
                self.run_db_probe(row, &probe, &username, &password).await
            }
        })
    }

    /// Probe with an OAuth access token that is not (or no longer) the
    /// connection's own: a revoked grant's. The catalog's probe, else the
    /// identity endpoint; `Err` when neither can be made (why).
    pub(crate) async fn probe_access_token(
        &self,
        row: &ConnectionRow,
        token: &SecretString,
    ) -> Result<Observation, String> {
        let probe = match self.probe_of(row) {
            Ok(p) => p,
            Err(why) => match self.identity_probe(row).await {
                Some(Ok(p)) => p,
                Some(Err(obs)) => return Ok(obs),
                None => return Err(why),
            },
        };
        if probe.protocol != ProbeProtocol::Http || probe.aws_sigv4.is_some() {
            return Err(format!(
                "this probe cannot be made with a `{}` credential",
                row.kind
            ));
        }
        let prefix = self.authorization_prefix(&row.provider);
        let headers = vec![(
            "Authorization".into(),
            format!("{prefix}{}", token.expose()),
        )];
        Ok(self
            .run_probe(row, &probe, headers, vec![], None, &[token.expose()])
            .await)
    }

    /// A static credential (`row`'s fields, `sec`) in the form `probe` sends it.
    async fn present_static(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
        mut sec: BTreeMap<String, SecretString>,
    ) -> Result<Presented, Error> {
        if probe.protocol != ProbeProtocol::Http {
            if row.kind != ConnectionKind::Basic {
                return Ok(Presented::Unsupported(format!(
                    "database probes log in with a user name and password; `{}` has none",
                    row.kind
                )));
            }
            let meta = StaticMeta::from_column(&row.credential_meta)?;
            return Ok(Presented::Database {
                username: meta.username.unwrap_or_default(),
                password: sec
                    .remove("password")
                    .ok_or_else(|| Error::internal("basic connection without password"))?,
            });
        }
        if probe.aws_sigv4.is_some() {
            if row.kind != ConnectionKind::AwsAccessKey {
                return Ok(Presented::Unsupported(
                    "SigV4 probes sign with an AWS access key".into(),
                ));
            }
            let meta = StaticMeta::from_column(&row.credential_meta)?;
            let key = AwsKey {
                access_key_id: meta.access_key_id.unwrap_or_default(),
                secret: sec
                    .remove("secret_access_key")
                    .ok_or_else(|| Error::internal("AWS connection without secret"))?,
                session_token: sec.remove("session_token"),
            };
            let mut known = vec![key.secret.clone()];
            known.extend(key.session_token.clone());
            return Ok(Presented::Http {
                headers: vec![],
                query: vec![],
                secrets: known,
                aws: Some(key),
            });
        }
        let meta = StaticMeta::from_column(&row.credential_meta)?;
        match row.kind {
            ConnectionKind::ServiceAccountJson => {
                return self.service_account_token(probe, &sec).await
            }
            ConnectionKind::RsaKeyPair => return self.keypair_jwt(row, probe, &meta, &sec).await,
            _ => {}
        }
        // Material stored before the header rules may hold a header that
        // must never be sent (CR/LF, `Content-Length`…): report, don't send.
        let meta = meta.to_map();
        if let Err(e) = credentials::check_stored_headers(row.kind, &meta, &sec) {
            return Ok(Presented::Failed(Observation::misconfigured(format!(
                "the stored credential cannot be sent as an HTTP header: {}; replace the credentials",
                e.public_message()
            ))));
        }
        let material = credentials::assemble(row.kind, &meta, &sec)?;
        let Some(apply) = material.get("apply") else {
            return Ok(Presented::Unsupported(format!(
                "`{}` credentials are not sent as HTTP headers; no probe is run",
                row.kind
            )));
        };
        let pairs = |k: &str| -> Vec<(String, String)> {
            apply
                .get(k)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Presented::Http {
            headers: pairs("headers"),
            query: pairs("query"),
            secrets: sec.values().cloned().collect(),
            aws: None,
        })
    }
}
