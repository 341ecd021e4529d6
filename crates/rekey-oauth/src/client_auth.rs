//! Client authentication at the token and revocation endpoints.

use crate::OAuthError;
use base64::Engine;
use rekey_core::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 JWT client assertion signed with the integration's key.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
    pub fn parse(s: &str) -> Option<ClientAuthMethod> {
        match s {
            "client_secret_basic" => Some(ClientAuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(ClientAuthMethod::ClientSecretPost),
            "private_key_jwt" => Some(ClientAuthMethod::PrivateKeyJwt),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub client_id: String,
    pub method: ClientAuthMethod,
    /// The client secret, or for `private_key_jwt` the PEM private key (RSA or EC).
    pub secret: SecretString,
    /// `kid` header for client assertions.
    pub key_id: Option<String>,
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl ClientAuth {
    /// Apply this client's authentication to a form request for `audience`
    /// (the endpoint URL, as RFC 7523 asks).
    pub fn apply(
        &self,
        req: reqwest::RequestBuilder,
        form: &mut Vec<(String, String)>,
        audience: &str,
    ) -> Result<reqwest::RequestBuilder, OAuthError> {
        match self.method {
            ClientAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: id and secret are form-urlencoded first.
                let pair = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(self.secret.expose())
                );
                let b = base64::engine::general_purpose::STANDARD.encode(pair);
                Ok(req.header(reqwest::header::AUTHORIZATION, format!("Basic {b}")))
            }
            ClientAuthMethod::ClientSecretPost => {
                form.push(("client_id".into(), self.client_id.clone()));
                form.push(("client_secret".into(), self.secret.expose().to_string()));
                Ok(req)
            }
            ClientAuthMethod::PrivateKeyJwt => {
                form.push(("client_id".into(), self.client_id.clone()));
                form.push((
                    "client_assertion_type".into(),
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion".into(), self.assertion(audience)?));
                Ok(req)
            }
        }
    }

    /// Fail early on an unusable key (`private_key_jwt`) or empty secret.
    pub fn validate(&self) -> Result<(), OAuthError> {
        match self.method {
            ClientAuthMethod::PrivateKeyJwt => {
                self.assertion("https://rekey.invalid/check").map(|_| ())
            }
            _ if self.secret.is_empty() => Err(OAuthError::Config("client secret is empty".into())),
            _ => Ok(()),
        }
    }

    fn assertion(&self, audience: &str) -> Result<String, OAuthError> {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let pem = self.secret.expose().as_bytes();
        // RSA first (PKCS#1 or PKCS#8), then EC P-256 (PKCS#8).
        let (key, alg) = match EncodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, Algorithm::RS256),
            Err(_) => (
                EncodingKey::from_ec_pem(pem).map_err(|_| {
                    OAuthError::Config("private_key_jwt: the key is neither an RSA nor an EC P-256 private key in PEM".into())
                })?,
                Algorithm::ES256,
            ),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = serde_json::json!({
            "iss": self.client_id, "sub": self.client_id, "aud": audience,
            "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 60,
        });
        let mut header = Header::new(alg);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| OAuthError::Config(format!("private_key_jwt: cannot sign assertion: {e}")))
    }
}
