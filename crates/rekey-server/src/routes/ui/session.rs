//! The dashboard's extractors: the signed-in user ([`SessionUser`]), a
//! state-changing form whose CSRF token matched ([`CsrfForm`]), a form
//! posted without a session ([`UiForm`], sign-in) and whether htmx made the
//! request ([`Htmx`]). Plus the session cookie itself.

use super::error::UiError;
use crate::extract::RequestOrigin;
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, RawForm, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use rekey_core::scope::Scope;
use rekey_core::SecretString;
use rekey_service::Ctx;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, IntoDeserializer, Visitor};
use serde::Deserializer;

const COOKIE: &str = "rekey_session";

/// Who the header shows as signed in, with the Sign out form's token (no
/// `Debug`: the token must not reach a log).
#[derive(Clone)]
pub(crate) struct Nav {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    /// Sees the admin-only pages (webhooks) in the menu.
    pub admin: bool,
}

tokio::task_local! {
    /// The signed-in user of the request being served. Set when
    /// [`SessionUser`] is extracted and read by the layout, so every page
    /// rendered for a signed-in user keeps the header, error and message
    /// pages included (which are rendered far from the handler's session).
    static NAV: std::cell::RefCell<Option<Nav>>;
}

/// Runs a dashboard request with room for its header's user.
pub(crate) async fn with_nav<F: std::future::Future>(f: F) -> F::Output {
    NAV.scope(std::cell::RefCell::new(None), f).await
}

/// The signed-in user for the header, if any (see [`NAV`]).
pub(crate) fn signed_in() -> Option<Nav> {
    NAV.try_with(|n| n.borrow().clone()).ok().flatten()
}

/// The signed-in dashboard user. Without a live session the request is
/// redirected to the sign-in page ([`UiError::SignIn`]).
pub(crate) struct SessionUser {
    pub user: rekey_service::SessionUser,
    /// The session cookie's token (sign-out ends that session).
    pub token: SecretString,
    origin: RequestOrigin,
}

impl std::ops::Deref for SessionUser {
    type Target = rekey_service::SessionUser;
    fn deref(&self) -> &rekey_service::SessionUser {
        &self.user
    }
}

impl SessionUser {
    /// The audit context of this request: the user, with the request id
    /// and the client address (as API calls record them).
    pub fn ctx(&self) -> Ctx {
        self.user
            .ctx(self.origin.request_id.clone(), self.origin.source.clone())
    }

    pub fn tenant(&self) -> &str {
        &self.user.principal.tenant
    }

    /// The role may change connections (and so sees the actions).
    pub fn can_write(&self) -> bool {
        self.user.principal.require(Scope::ConnectionsWrite).is_ok()
    }

    /// The role may administer (OAuth apps, webhooks), as the API's `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.user.principal.require(Scope::Admin).is_ok()
    }

    /// Refused unless the role is admin; `what` as for [`Self::require_write`].
    pub fn require_admin(&self, what: &str) -> Result<(), UiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(UiError::Forbidden(format!(
                "The {} role cannot {what}: an admin can.",
                self.user.role.as_str()
            )))
        }
    }

    /// Refused unless the role may change connections; `what` ends the
    /// sentence "The viewer role cannot …".
    pub fn require_write(&self, what: &str) -> Result<(), UiError> {
        if self.can_write() {
            Ok(())
        } else {
            Err(UiError::Forbidden(format!(
                "The {} role cannot {what}.",
                self.user.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = UiError;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, UiError> {
        let token = session_token(&parts.headers).ok_or(UiError::SignIn)?;
        match s.rekey.session_user(&token).await {
            Ok(Some(user)) => {
                // Outside [`with_nav`] (no such request) there is no header to fill.
                let _ = NAV.try_with(|n| {
                    *n.borrow_mut() = Some(Nav {
                        user: user.username.clone(),
                        role: user.role.as_str(),
                        csrf: user.csrf.clone(),
                        admin: user.principal.require(Scope::Admin).is_ok(),
                    })
                });
                Ok(SessionUser {
                    user,
                    token,
                    origin: RequestOrigin::of(parts),
                })
            }
            Ok(None) => Err(UiError::SignIn),
            Err(e) => Err(UiError::Unavailable(e)),
        }
    }
}

/// A state-changing form: the signed-in user, once the form carried that
/// session's CSRF token, and the form's fields as `T` (see [`from_pairs`]).
/// Without a session: the sign-in redirect; without the token (or with a
/// body that is not a form): [`UiError::Csrf`], before `T` is looked at.
pub(crate) struct CsrfForm<T> {
    pub user: SessionUser,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = UiError;
    async fn from_request(req: Request, s: &AppState) -> Result<Self, UiError> {
        let (mut parts, body) = req.into_parts();
        let user = SessionUser::from_request_parts(&mut parts, s).await?;
        let pairs = form_pairs(Request::from_parts(parts, body)).await;
        if !csrf_matches(&pairs, &user.csrf) {
            return Err(UiError::Csrf);
        }
        let form = from_pairs(pairs).map_err(|e| {
            UiError::page(
                axum::http::StatusCode::BAD_REQUEST,
                "Bad form",
                format!(
                    "This form could not be read ({}). Reload the page and try again.",
                    crate::error::scrub_serde_message(&e.to_string())
                ),
                "bad",
            )
        })?;
        Ok(CsrfForm { user, form })
    }
}

/// A form with no session behind it (the sign-in form, which the
/// same-origin check guards instead): a body that is not a form reads as
/// `T::default()`.
pub(crate) struct UiForm<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for UiForm<T> {
    type Rejection = std::convert::Infallible;
    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(UiForm(
            from_pairs(form_pairs(req).await).unwrap_or_default(),
        ))
    }
}

/// A form that carries only its CSRF token.
#[derive(serde::Deserialize)]
pub(crate) struct TokenOnly {}

/// The request was made by htmx (which wants a fragment, not a page).
pub(crate) struct Htmx(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Htmx {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Htmx(
            parts
                .headers
                .get("hx-request")
                .and_then(|v| v.to_str().ok())
                == Some("true"),
        ))
    }
}

/// The `application/x-www-form-urlencoded` body's fields in order; a body
/// that is not such a form (or is too large) has none.
async fn form_pairs(req: Request) -> Vec<(String, String)> {
    match RawForm::from_request(req, &()).await {
        Ok(RawForm(bytes)) => form_urlencoded::parse(&bytes).into_owned().collect(),
        Err(_) => Vec::new(),
    }
}

/// Every `csrf` field the form has is the session's token, and it has one.
fn csrf_matches(pairs: &[(String, String)], token: &str) -> bool {
    let token = SecretString::from(token);
    let mut sent = pairs.iter().filter(|(k, _)| k == "csrf").peekable();
    sent.peek().is_some() && sent.all(|(_, v)| SecretString::from(v.as_str()) == token)
}

/// A form's fields as `T`: a field named once or more reads as its first
/// value into a scalar (`String`, `SecretString`, `Option`), and as all its
/// values into a `Vec` (repeated `id`s); fields `T` does not name are
/// ignored (`csrf` among them).
pub(crate) fn from_pairs<T: DeserializeOwned>(
    pairs: Vec<(String, String)>,
) -> Result<T, serde::de::value::Error> {
    let mut fields: Vec<(String, Values)> = Vec::new();
    for (k, v) in pairs {
        match fields.iter_mut().find(|(name, _)| *name == k) {
            Some((_, values)) => values.0.push(v),
            None => fields.push((k, Values(vec![v]))),
        }
    }
    T::deserialize(MapDeserializer::new(fields.into_iter()))
}

/// The values of one form field.
struct Values(Vec<String>);

impl<'de> IntoDeserializer<'de, serde::de::value::Error> for Values {
    type Deserializer = Values;
    fn into_deserializer(self) -> Values {
        self
    }
}

impl<'de> Deserializer<'de> for Values {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        let first: String = self.0.into_iter().next().unwrap_or_default();
        first.into_deserializer().deserialize_any(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_seq(SeqDeserializer::new(self.0.into_iter()))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        let first: String = self.0.into_iter().next().unwrap_or_default();
        first
            .into_deserializer()
            .deserialize_enum(name, variants, v)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct map struct identifier ignored_any
    }
}

fn session_token(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
        .map(SecretString::new)
}

/// The session cookie (`value` empty and `max_age` 0 end it).
pub(crate) fn cookie(s: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if s.rekey.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("rekey_session=; Path=/; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Form {
        action: String,
        #[serde(rename = "id")]
        ids: Vec<String>,
        note: Option<String>,
    }

    #[test]
    fn forms_read_typed() {
        let f: Form = from_pairs(pairs(&[
            ("csrf", "t"),
            ("action", "check"),
            ("id", "a"),
            ("id", "b"),
            ("action", "revoke"),
        ]))
        .unwrap();
        assert_eq!(
            f,
            Form {
                action: "check".into(),
                ids: vec!["a".into(), "b".into()],
                note: None
            },
            "repeated ids are all kept; a repeated scalar is its first value"
        );
        let f: Form = from_pairs(pairs(&[("note", "x")])).unwrap();
        assert_eq!(f.note.as_deref(), Some("x"));
        assert_eq!(from_pairs::<Form>(Vec::new()).unwrap(), Form::default());
        let _: TokenOnly = from_pairs(pairs(&[("csrf", "t"), ("other", "x")])).unwrap();
        let key: SecretString = from_pairs::<Key>(pairs(&[("key", "k1")])).unwrap().key;
        assert_eq!(key.expose(), "k1");
    }

    #[derive(serde::Deserialize)]
    struct Key {
        key: SecretString,
    }

    #[test]
    fn csrf_needs_every_token_to_match() {
        assert!(csrf_matches(&pairs(&[("csrf", "tok")]), "tok"));
        assert!(!csrf_matches(&pairs(&[]), "tok"));
        assert!(!csrf_matches(&pairs(&[("csrf", "")]), "tok"));
        assert!(!csrf_matches(&pairs(&[("csrf", "forged")]), "tok"));
        assert!(!csrf_matches(
            &pairs(&[("csrf", "tok"), ("csrf", "forged")]),
            "tok"
        ));
        assert!(!csrf_matches(
            &pairs(&[("csrf", "forged"), ("csrf", "tok")]),
            "tok"
        ));
    }
}
