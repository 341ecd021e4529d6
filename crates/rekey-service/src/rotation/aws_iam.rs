//! The AWS IAM access key rotator (kind `aws_access_key`).
//!
//! AWS makes the key, so the pending version starts without one: `prepare`
//! finds the IAM user (`iam_user`, else `GetUser` with the current key)
//! and records the user's key ids as they are when the rotation starts;
//! `created` stores a pending version with no key; `set` is
//! `CreateAccessKey`, and the new key id and secret go into the pending
//! version in the same transaction as the move to `set`. A crash between
//! `CreateAccessKey` and that write leaves a key rekey does not hold: `set`
//! runs again and first deletes every key of the user that was not there
//! when the rotation started and is not the current one, so no orphan
//! stays and the user never needs a third key. `test` is STS
//! `GetCallerIdentity` signed with the new key (it must name an IAM
//! user); the old key keeps working, so it is `previous` during the grace;
//! `retire` is `UpdateAccessKey Status=Inactive`, then `DeleteAccessKey`
//! (a key already gone is fine). A rollback after `set` deletes the new key.
//!
//! IAM holds two keys per user. With two already, `set` refuses (the
//! rotation is rolled back, nothing changed) unless `delete_inactive_key`
//! is set and one of them is inactive and not current: that one is deleted
//! first.
//!
//! IAM calls are signed (SigV4, service `iam`, region `us-east-1`) with the
//! current key, or with the admin connection's key when one is named. They
//! go to `endpoint` (default `https://iam.amazonaws.com/`), STS to the
//! connection's probe URL or the catalog's, all through the outbound HTTP
//! client and its policy. Answers are XML; the few fields needed are read
//! by [`xml_values`]. Error text from AWS is scrubbed of every secret key
//! involved before it is stored.
//!
//! One connection per IAM user: another connection rotating the same
//! user's keys at the same moment could see this rotation's new key as an
//! orphan.

use super::{At, Material, Options, Rotate, StepError};
use crate::Rekey;
use rekey_core::{Error, ErrorCode, SecretString};
use rekey_oauth::OAuthError;
use rekey_store::connections::ConnectionRow;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const IAM_ENDPOINT: &str = "https://iam.amazonaws.com/";
const STS_ENDPOINT: &str = "https://sts.amazonaws.com/";
const IAM_VERSION: &str = "2010-05-08";
const STS_VERSION: &str = "2011-06-15";
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AwsIam;

/// A key to sign with.
struct Signer {
    id: String,
    secret: SecretString,
    token: Option<SecretString>,
}

fn key_id(m: &Material) -> Option<&str> {
    m.meta.get("access_key_id").and_then(Value::as_str)
}

fn signer_of(m: &Material) -> Option<Signer> {
    Some(Signer {
        id: key_id(m)?.to_string(),
        secret: m.secrets.get("secret_access_key")?.clone(),
        token: m.secrets.get("session_token").cloned(),
    })
}

/// One access key as `ListAccessKeys` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AccessKey {
    id: String,
    active: bool,
}

/// An AWS call that did not succeed. `status` is `None` when no answer came.
#[derive(Debug)]
struct AwsError {
    status: Option<u16>,
    code: String,
    message: String,
}

impl AwsError {
    fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// Trying again later may help: no answer, AWS trouble, throttling.
    fn transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) if s >= 500 => true,
            _ => matches!(
                self.code.as_str(),
                "Throttling" | "RequestLimitExceeded" | "ServiceUnavailable"
            ),
        }
    }

    fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("AWS answered HTTP {s} {}: {}", self.code, self.message),
            None => format!("AWS could not be reached: {}", self.message),
        }
    }

    fn step(self, what: &str, next: &str) -> StepError {
        let retry = self.transient();
        StepError {
            code: if retry {
                "aws_unavailable".into()
            } else {
                "aws_refused".into()
            },
            message: format!("{what}: {}", self.describe()),
            retry,
            next_action: (!retry).then(|| next.to_string()),
            operator: None,
        }
    }

    fn refusal(self, what: &str) -> Error {
        Error::unprocessable(
            ErrorCode::RotationFailed,
            format!("{what}: {}", self.describe()),
        )
    }
}

/// The text of every `<tag>…</tag>` in `xml`, in order, with the five XML
/// entities decoded. AWS's query APIs answer flat, predictable XML; this
/// reads the few leaf fields rotation needs and nothing else (no
/// attributes, no CDATA: a value holding either is not read).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        let raw = &after[..j];
        if !raw.contains('<') {
            out.push(
                raw.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&"),
            );
        }
        rest = &after[j + close.len()..];
    }
    out
}

fn xml_value(xml: &str, tag: &str) -> Option<String> {
    xml_values(xml, tag).into_iter().next()
}

/// The keys in a `ListAccessKeys` answer.
fn parse_keys(xml: &str) -> Vec<AccessKey> {
    xml.split("<member>")
        .skip(1)
        .filter_map(|m| {
            let m = m.split("</member>").next().unwrap_or_default();
            Some(AccessKey {
                id: xml_value(m, "AccessKeyId")?,
                active: xml_value(m, "Status").as_deref() == Some("Active"),
            })
        })
        .collect()
}

/// IAM user names: 1–64 of `A-Za-z0-9_+=,.@-`.
fn iam_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

fn misconfigured(what: &str, next: &str) -> StepError {
    StepError::permanent("rotation_misconfigured", what, next)
}

impl AwsIam {
    /// A signed query-API call; the answer's text, or what went wrong
    /// (AWS's error code and message, scrubbed of every secret in `known`).
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        rk: &Rekey,
        url: &str,
        service: &str,
        signer: &Signer,
        params: &[(&str, &str)],
        known: &[&str],
    ) -> Result<String, AwsError> {
        let no_answer = |m: String| AwsError {
            status: None,
            code: "unreachable".into(),
            message: rekey_core::scrub::scrub_text(&m, known),
        };
        let u = url::Url::parse(url).map_err(|_| no_answer("the endpoint is not a URL".into()))?;
        let host = match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(no_answer("the endpoint has no host".into())),
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let ct = "application/x-www-form-urlencoded; charset=utf-8";
        let amz_date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| no_answer(e.to_string()))?;
        let query: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        let signed = rekey_crypto::sigv4::sign_v4(
            &rekey_crypto::sigv4::SigV4Request {
                method: "POST",
                host: &host,
                path: u.path(),
                query: &query,
                headers: &[("content-type".to_string(), ct.to_string())],
                body: body.as_bytes(),
                service,
                region: "us-east-1",
                amz_date: &amz_date,
            },
            &signer.id,
            signer.secret.expose(),
            signer.token.as_ref().map(|t| t.expose()),
        );
        let mut req = rk
            .inner
            .http
            .inner()
            .post(u.as_str())
            .timeout(CALL_TIMEOUT)
            .header("content-type", ct)
            .body(body);
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let resp = match rk.inner.http.send(req).await {
            Ok(r) => r,
            Err(OAuthError::Refused(m)) => {
                return Err(AwsError {
                    status: Some(0),
                    code: "outbound_refused".into(),
                    message: rekey_core::scrub::scrub_text(&m, known),
                })
            }
            Err(e) => return Err(no_answer(e.to_string())),
        };
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        if (200..300).contains(&resp.status) {
            return Ok(text);
        }
        let code = xml_value(&text, "Code").unwrap_or_else(|| "unknown".into());
        let message = xml_value(&text, "Message").unwrap_or_default();
        Err(AwsError {
            status: Some(resp.status),
            code: rekey_core::scrub::scrub_text(&code, known)
                .chars()
                .take(64)
                .collect(),
            message: rekey_core::scrub::scrub_text(&message, known)
                .chars()
                .take(300)
                .collect(),
        })
    }

    async fn iam(
        &self,
        rk: &Rekey,
        opts: &Options,
        signer: &Signer,
        action: &str,
        params: &[(&str, &str)],
        known: &[&str],
    ) -> Result<String, AwsError> {
        let mut all = vec![("Action", action), ("Version", IAM_VERSION)];
        all.extend_from_slice(params);
        let url = opts.endpoint.as_deref().unwrap_or(IAM_ENDPOINT);
        self.call(rk, url, "iam", signer, &all, known).await
    }

    async fn list_keys(
        &self,
        rk: &Rekey,
        opts: &Options,
        signer: &Signer,
        user: &str,
        known: &[&str],
    ) -> Result<Vec<AccessKey>, AwsError> {
        let xml = self
            .iam(
                rk,
                opts,
                signer,
                "ListAccessKeys",
                &[("UserName", user)],
                known,
            )
            .await?;
        Ok(parse_keys(&xml))
    }

    /// Delete a key; one already gone is fine.
    async fn delete_key(
        &self,
        rk: &Rekey,
        opts: &Options,
        signer: &Signer,
        user: &str,
        id: &str,
        known: &[&str],
    ) -> Result<(), AwsError> {
        match self
            .iam(
                rk,
                opts,
                signer,
                "DeleteAccessKey",
                &[("UserName", user), ("AccessKeyId", id)],
                known,
            )
            .await
        {
            Err(e) if e.is("NoSuchEntity") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The key IAM calls are signed with: the admin connection's, or the
    /// current one.
    async fn signer(
        &self,
        rk: &Rekey,
        row: &ConnectionRow,
        current: &Material,
        opts: &Options,
    ) -> Result<Signer, StepError> {
        let fix = "replace the credential with an access key id and secret access key (PUT …/credentials), then rotate again";
        let Some(id) = &opts.admin_connection_id else {
            return signer_of(current)
                .ok_or_else(|| misconfigured("the credential has no access key", fix));
        };
        let (a, secrets) = rk.load_with_secrets(&row.tenant, id).await.map_err(|e| {
            misconfigured(
                &format!("the admin connection {id} cannot be read: {e}"),
                "start the rotation again with an admin connection that exists",
            )
        })?;
        let m = Material {
            meta: serde_json::from_str(&a.credential_meta).unwrap_or_default(),
            secrets,
        };
        signer_of(&m).ok_or_else(|| misconfigured("the admin connection has no access key", fix))
    }

    fn user<'a>(&self, opts: &'a Options) -> Result<&'a str, StepError> {
        opts.iam_user.as_deref().ok_or_else(|| {
            misconfigured(
                "the rotation does not name the IAM user",
                "rotate again (rekey finds the user when the rotation starts)",
            )
        })
    }
}

/// Every secret a step may hold, for scrubbing.
fn secrets_of<'a>(ms: &[&'a Material], s: Option<&'a Signer>) -> Vec<&'a str> {
    let mut out: Vec<&str> = ms
        .iter()
        .flat_map(|m| m.secrets.values().map(|v| v.expose()))
        .collect();
    if let Some(s) = s {
        out.push(s.secret.expose());
        if let Some(t) = &s.token {
            out.push(t.expose());
        }
    }
    out
}

impl Rotate for AwsIam {
    async fn prepare(
        &self,
        rk: &Rekey,
        row: &ConnectionRow,
        current: &Material,
        opts: &mut Options,
    ) -> Result<(), Error> {
        let Some(cur) = signer_of(current) else {
            return Err(Error::unprocessable(
                ErrorCode::InvalidCredentials,
                "the connection's credential has no access key to rotate",
            ));
        };
        if cur.token.is_some() {
            return Err(Error::unprocessable(
                ErrorCode::InvalidCredentials,
                "temporary AWS credentials (with a session token) expire by themselves and cannot be rotated; rotate the IAM user's access key instead",
            ));
        }
        let signer = self
            .signer(rk, row, current, opts)
            .await
            .map_err(|e| Error::unprocessable(ErrorCode::RotationFailed, e.message))?;
        let known = secrets_of(&[current], Some(&signer));
        let user = match &opts.iam_user {
            Some(u) => u.clone(),
            None => {
                // The user the current key belongs to.
                let xml = self
                    .iam(rk, opts, &cur, "GetUser", &[], &known)
                    .await
                    .map_err(|e| e.refusal("finding the key's IAM user (GetUser)"))?;
                xml_value(&xml, "UserName")
                    .filter(|u| iam_name_ok(u))
                    .ok_or_else(|| {
                        Error::unprocessable(
                            ErrorCode::RotationFailed,
                            "AWS GetUser did not name an IAM user (the key may be a root or federated key, which rekey does not rotate)",
                        )
                    })?
            }
        };
        let keys = self
            .list_keys(rk, opts, &signer, &user, &known)
            .await
            .map_err(|e| e.refusal(&format!("listing the access keys of IAM user `{user}`")))?;
        if !keys.iter().any(|k| k.id == cur.id) {
            return Err(Error::unprocessable(
                ErrorCode::RotationFailed,
                format!(
                    "the connection's access key {} is not one of IAM user `{user}`'s keys",
                    cur.id
                ),
            ));
        }
        opts.keys_before = Some(keys.into_iter().map(|k| k.id).collect());
        opts.iam_user = Some(user);
        Ok(())
    }

    fn generate(&self, current: &Material, _opts: &Options) -> Result<Material, Error> {
        if key_id(current).is_none() {
            return Err(Error::unprocessable(
                ErrorCode::InvalidCredentials,
                "the connection's credential has no access key to rotate",
            ));
        }
        // AWS makes the key at `set`; until then the pending version holds
        // the other fields (the region) and no key.
        let mut meta = current.meta.clone();
        meta.remove("access_key_id");
        Ok(Material {
            meta,
            secrets: BTreeMap::new(),
        })
    }

    async fn set(
        &self,
        at: &At<'_>,
        current: &Material,
        pending: &Material,
    ) -> Result<Option<Material>, StepError> {
        let At { rk, row, opts } = *at;
        let user = self.user(opts)?;
        let signer = self.signer(rk, row, current, opts).await?;
        let known = secrets_of(&[current, pending], Some(&signer));
        let cur_id = key_id(current).unwrap_or_default();
        let next = "check that the key (or the admin's) may call iam:ListAccessKeys, iam:CreateAccessKey and iam:DeleteAccessKey on the user, then rotate again";
        let keys = self
            .list_keys(rk, opts, &signer, user, &known)
            .await
            .map_err(|e| e.step("listing the user's access keys", next))?;
        let before = opts.keys_before.as_deref().unwrap_or_default();
        let mut kept = Vec::new();
        for k in keys {
            if k.id != cur_id && !before.contains(&k.id) {
                // Made by this step before a crash, never stored: delete it.
                self.delete_key(rk, opts, &signer, user, &k.id, &known)
                    .await
                    .map_err(|e| e.step("deleting a key left by an interrupted rotation", next))?;
            } else {
                kept.push(k);
            }
        }
        if kept.len() >= 2 {
            let spare = kept.iter().find(|k| !k.active && k.id != cur_id);
            match spare {
                Some(k) if opts.delete_inactive_key => {
                    self.delete_key(rk, opts, &signer, user, &k.id, &known)
                        .await
                        .map_err(|e| e.step("deleting the user's inactive key", next))?;
                }
                _ => {
                    let ids: Vec<&str> = kept.iter().map(|k| k.id.as_str()).collect();
                    return Err(StepError::permanent(
                        "aws_key_limit",
                        format!(
                            "IAM user `{user}` already has two access keys ({}); AWS allows two, so no new key can be made",
                            ids.join(", ")
                        ),
                        if spare.is_some() {
                            "rotate again with delete_inactive_key (rekey rotate --delete-inactive-key) to delete the inactive key, or delete the unused key in IAM"
                        } else {
                            "delete the user's unused access key in IAM (or deactivate it and rotate with delete_inactive_key), then rotate again"
                        },
                    ));
                }
            }
        }
        let xml = self
            .iam(
                rk,
                opts,
                &signer,
                "CreateAccessKey",
                &[("UserName", user)],
                &known,
            )
            .await
            .map_err(|e| e.step("creating the new access key", next))?;
        let (Some(id), Some(secret)) = (
            xml_value(&xml, "AccessKeyId"),
            xml_value(&xml, "SecretAccessKey"),
        ) else {
            return Err(StepError {
                code: "aws_unexpected".into(),
                message: "AWS CreateAccessKey answered without a key id and secret".into(),
                retry: true,
                next_action: None,
                operator: None,
            });
        };
        let mut meta = pending.meta.clone();
        meta.insert("access_key_id".into(), Value::String(id));
        let secrets =
            BTreeMap::from([("secret_access_key".to_string(), SecretString::new(secret))]);
        Ok(Some(Material { meta, secrets }))
    }

    async fn discard(
        &self,
        at: &At<'_>,
        current: &Material,
        pending: &Material,
    ) -> Result<(), StepError> {
        let At { rk, row, opts } = *at;
        let Some(id) = key_id(pending) else {
            return Ok(());
        };
        let user = self.user(opts)?;
        let signer = self.signer(rk, row, current, opts).await?;
        let known = secrets_of(&[current, pending], Some(&signer));
        self.delete_key(rk, opts, &signer, user, id, &known)
            .await
            .map_err(|e| e.step("deleting the new key", "delete it in IAM"))
    }

    async fn test(&self, at: &At<'_>, pending: &Material) -> Result<(), StepError> {
        let At { rk, row, .. } = *at;
        let Some(new) = signer_of(pending) else {
            return Err(misconfigured(
                "the pending version has no access key",
                "rotate again",
            ));
        };
        let known = secrets_of(&[pending], None);
        let url = row
            .probe_url
            .clone()
            .or_else(|| {
                rk.probe_of(row)
                    .ok()
                    .and_then(|p| p.url)
                    .filter(|u| !u.contains('{'))
            })
            .unwrap_or_else(|| STS_ENDPOINT.to_string());
        let params = [("Action", "GetCallerIdentity"), ("Version", STS_VERSION)];
        let xml = match self.call(rk, &url, "sts", &new, &params, &known).await {
            Ok(x) => x,
            // A new key takes a few seconds to be known everywhere in AWS.
            Err(e) if e.is("InvalidClientTokenId") => {
                return Err(StepError {
                    code: "aws_key_not_yet_valid".into(),
                    message: format!("STS GetCallerIdentity with the new key: {}", e.describe()),
                    retry: true,
                    next_action: None,
                    operator: None,
                })
            }
            Err(e) => {
                return Err(e.step(
                    "STS GetCallerIdentity with the new key",
                    "check the key in IAM and rotate again",
                ))
            }
        };
        let arn = xml_value(&xml, "Arn").unwrap_or_default();
        match arn_user(&arn) {
            Some(_) => Ok(()),
            None => Err(StepError::permanent(
                "aws_unexpected",
                "STS GetCallerIdentity with the new key did not name an IAM user",
                "check the key in IAM",
            )),
        }
    }

    async fn retire(
        &self,
        at: &At<'_>,
        old: &Material,
        current: &Material,
    ) -> Result<(), StepError> {
        let At { rk, row, opts } = *at;
        let (Some(old_id), Some(cur_id)) = (key_id(old), key_id(current)) else {
            return Ok(());
        };
        if old_id == cur_id {
            return Ok(());
        }
        let user = self.user(opts)?;
        let signer = self.signer(rk, row, current, opts).await?;
        let known = secrets_of(&[old, current], Some(&signer));
        let next = format!(
            "the new key is current and works; deactivate and delete the old key {old_id} in IAM"
        );
        // Deactivate first (the order AWS advises), then delete.
        match self
            .iam(
                rk,
                opts,
                &signer,
                "UpdateAccessKey",
                &[
                    ("UserName", user),
                    ("AccessKeyId", old_id),
                    ("Status", "Inactive"),
                ],
                &known,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is("NoSuchEntity") => return Ok(()),
            Err(e) => return Err(e.step("deactivating the old key", &next)),
        }
        self.delete_key(rk, opts, &signer, user, old_id, &known)
            .await
            .map_err(|e| e.step("deleting the old key", &next))
    }

    fn old_survives_set(&self, _opts: &Options) -> bool {
        true
    }
}

/// The IAM user an STS ARN names (`arn:aws:iam::123456789012:user/path/name`).
fn arn_user(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":user/")?;
    rest.rsplit('/').next().filter(|u| iam_name_ok(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_aws_answers_with() {
        let xml = "<ListAccessKeysResponse><ListAccessKeysResult><AccessKeyMetadata>\
            <member><UserName>app</UserName><AccessKeyId>AKIAONE</AccessKeyId><Status>Active</Status></member>\
            <member><UserName>app</UserName><AccessKeyId>AKIATWO</AccessKeyId><Status>Inactive</Status></member>\
            </AccessKeyMetadata></ListAccessKeysResult></ListAccessKeysResponse>";
        assert_eq!(
            parse_keys(xml),
            vec![
                AccessKey {
                    id: "AKIAONE".into(),
                    active: true
                },
                AccessKey {
                    id: "AKIATWO".into(),
                    active: false
                },
            ]
        );
        assert_eq!(
            xml_value("<Message>a &lt;b&gt; &amp;amp;</Message>", "Message").as_deref(),
            Some("a <b> &amp;")
        );
        assert_eq!(xml_value("<Code><x/></Code>", "Code"), None);
        assert_eq!(xml_value("<Code>open", "Code"), None);
        assert_eq!(
            arn_user("arn:aws:iam::123456789012:user/ci/deployer"),
            Some("deployer")
        );
        assert_eq!(arn_user("arn:aws:sts::123456789012:assumed-role/r/s"), None);
    }

    #[test]
    fn the_pending_version_starts_without_a_key() {
        let current = Material {
            meta: serde_json::json!({"access_key_id": "AKIAOLDOLDOLDOLD", "region": "eu-west-1"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            secrets: BTreeMap::from([(
                "secret_access_key".to_string(),
                SecretString::new("s".into()),
            )]),
        };
        let p = AwsIam.generate(&current, &Options::default()).unwrap();
        assert!(key_id(&p).is_none());
        assert!(p.secrets.is_empty());
        assert_eq!(p.meta["region"], "eu-west-1");
        assert!(AwsIam.old_survives_set(&Options::default()));
    }
}
