//! rekey's domain: the types every other crate speaks, their validation, the
//! connection status machine and the one error enum with stable codes.
//!
//! Invariant: no I/O here. No database, no network, no files, no clock other
//! than what callers pass in (except `time::now_ms`, kept for convenience).

/// A closed set of values with stable wire names: `ALL`, `as_str`,
/// `Display`, and `FromStr` refusing anything else with `$code`.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $code:expr, { $($var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($var),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result { f.write_str(self.as_str()) }
        }
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }
        impl ::std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> Result<Self, $crate::Error> {
                match s {
                    $($s => Ok($name::$var),)+
                    other => Err($crate::Error::invalid($code, format!(
                        "unknown {} `{}`; expected one of: {}",
                        stringify!($name).to_lowercase(),
                        crate::ids::truncate_for_message(other),
                        [$($s),+].join(", ")))),
                }
            }
        }
    };
}

pub mod audit;
pub mod campaign;
pub mod connection;
pub mod credential_meta;
pub mod credentials;
pub mod error;
pub mod error_code;
pub mod events;
pub mod ids;
pub mod last_error;
pub mod outbound;
pub mod revocation;
pub mod rotation;
pub mod scope;
pub mod scrub;
pub mod secret;
pub mod time;
pub mod versions;

pub use error::{Error, ErrorClass, ErrorCode, Result};
pub use secret::SecretString;
