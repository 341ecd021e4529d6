use crate::CryptoError;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A key-encryption key.
pub struct Kek {
    id: String,
    key: Zeroizing<[u8; 32]>,
    created_at: i64,
}

impl Kek {
    pub fn id(&self) -> &str {
        &self.id
    }
    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// Where the keyring lives, which decides how it can be rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSource {
    /// `keyring.json` in the data directory (mode 0600), managed by rekey.
    File(PathBuf),
    /// Operator-supplied `REKEY_MASTER_KEY` (+ optional previous keys);
    /// rotation means supplying a new one and re-wrapping.
    MasterKey,
    /// In-memory only (tests).
    Ephemeral,
}

/// The set of KEKs. The primary wraps new data keys; the others only unwrap.
pub struct Keyring {
    keys: Vec<Kek>,
    primary: usize,
    source: KeyringSource,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary().id)
            .field("keys", &self.keys.len())
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct FileKey {
    id: String,
    created_at: i64,
    key: String,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KeyringFile {
    format: String,
    primary: String,
    keys: Vec<FileKey>,
}

const FORMAT: &str = "rekey-keyring-v1";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn new_kek() -> Kek {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let mut id = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id);
    Kek {
        id: format!("kek_{}", crate::hex(&id)),
        key,
        created_at: now_s(),
    }
}

fn decode_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let text = text.trim();
    let bytes = Zeroizing::new(
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .ok()?
        },
    );
    if bytes.len() != 32 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&bytes);
    Some(out)
}

impl Keyring {
    /// A fresh in-memory keyring with one key (tests, benchmarks).
    pub fn generate() -> Keyring {
        Keyring {
            keys: vec![new_kek()],
            primary: 0,
            source: KeyringSource::Ephemeral,
        }
    }

    /// Keys from the operator: the current master key (primary) and previous
    /// ones still able to unwrap until `keys rotate` re-wraps everything.
    /// Each is 32 bytes as base64 or 64 hex characters.
    pub fn from_master_keys(current: &str, previous: &[String]) -> Result<Keyring, CryptoError> {
        let mk = |text: &str, what: &str| -> Result<Kek, CryptoError> {
            let key = decode_key(text).ok_or_else(|| {
                CryptoError::Keyring(format!(
                    "{what} must be 32 bytes encoded as base64 or 64 hex characters"
                ))
            })?;
            let digest = Sha256::digest([b"rekey-kek-id".as_slice(), key.as_ref()].concat());
            let id = format!("mk_{}", crate::hex(&digest[..8]));
            Ok(Kek {
                id,
                key,
                created_at: 0,
            })
        };
        let mut keys = vec![mk(current, "REKEY_MASTER_KEY")?];
        for p in previous.iter().filter(|p| !p.trim().is_empty()) {
            let k = mk(p, "REKEY_PREVIOUS_MASTER_KEYS")?;
            if keys.iter().all(|e| e.id != k.id) {
                keys.push(k);
            }
        }
        Ok(Keyring {
            keys,
            primary: 0,
            source: KeyringSource::MasterKey,
        })
    }

    /// Load `path`, or create it with one new key. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Keyring, bool), CryptoError> {
        if path.exists() {
            return Ok((Keyring::load(path)?, false));
        }
        let kr = Keyring {
            keys: vec![new_kek()],
            primary: 0,
            source: KeyringSource::File(path.to_path_buf()),
        };
        kr.save()?;
        Ok((kr, true))
    }

    pub fn load(path: &Path) -> Result<Keyring, CryptoError> {
        let e = |m: String| CryptoError::Keyring(format!("{}: {m}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|x| e(x.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(e(format!(
                    "permissions {:o} are too open; run `chmod 600` on it",
                    mode & 0o777
                )));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|x| e(x.to_string()))?);
        let file: KeyringFile =
            serde_json::from_str(&text).map_err(|_| e("not a valid keyring file".into()))?;
        if file.format != FORMAT {
            return Err(e(format!("unknown format, expected {FORMAT}")));
        }
        let mut keys = Vec::new();
        for k in &file.keys {
            let key = decode_key(&k.key).ok_or_else(|| e(format!("key {} is malformed", k.id)))?;
            keys.push(Kek {
                id: k.id.clone(),
                key,
                created_at: k.created_at,
            });
        }
        let primary = keys
            .iter()
            .position(|k| k.id == file.primary)
            .ok_or_else(|| e("primary key is missing".into()))?;
        Ok(Keyring {
            keys,
            primary,
            source: KeyringSource::File(path.to_path_buf()),
        })
    }

    /// Atomically write the keyring file (temp file, fsync, rename), mode 0600.
    pub fn save(&self) -> Result<(), CryptoError> {
        let KeyringSource::File(path) = &self.source else {
            return Ok(());
        };
        let e = |m: std::io::Error| CryptoError::Keyring(format!("{}: {m}", path.display()));
        let file = KeyringFile {
            format: FORMAT.into(),
            primary: self.primary().id.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| FileKey {
                    id: k.id.clone(),
                    created_at: k.created_at,
                    key: base64::engine::general_purpose::STANDARD.encode(k.key.as_ref()),
                })
                .collect(),
        };
        let text = Zeroizing::new(
            serde_json::to_string_pretty(&file).map_err(|x| CryptoError::Keyring(x.to_string()))?,
        );
        let tmp = path.with_extension("json.tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(e)?;
            f.write_all(text.as_bytes()).map_err(e)?;
            f.sync_all().map_err(e)?;
        }
        std::fs::rename(&tmp, path).map_err(e)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    pub fn source(&self) -> &KeyringSource {
        &self.source
    }
    pub fn primary(&self) -> &Kek {
        &self.keys[self.primary]
    }
    pub fn get(&self, id: &str) -> Option<&Kek> {
        self.keys.iter().find(|k| k.id == id)
    }
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Add a new KEK and make it primary. Returns its id.
    pub fn add_generated(&mut self) -> String {
        let k = new_kek();
        let id = k.id.clone();
        self.keys.push(k);
        self.primary = self.keys.len() - 1;
        id
    }

    /// Drop every key for which `keep` is false; the primary is always kept.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let primary_id = self.primary().id.clone();
        self.keys.retain(|k| k.id == primary_id || keep(&k.id));
        self.primary = self
            .keys
            .iter()
            .position(|k| k.id == primary_id)
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keyring_persists_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keyring.json");
        let (kr, created) = Keyring::load_or_create(&p).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (again, created) = Keyring::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(again.primary().id(), kr.primary().id());
    }

    #[test]
    fn too_open_keyring_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keyring.json");
        Keyring::load_or_create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keyring::load(&p).unwrap_err().to_string();
        assert!(e.contains("too open"), "{e}");
    }

    #[test]
    fn master_keys_decode_and_ids_are_stable() {
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let a = Keyring::from_master_keys(b64, &[]).unwrap();
        let b = Keyring::from_master_keys(hex, &[]).unwrap();
        assert_eq!(a.primary().id(), b.primary().id());
        assert!(Keyring::from_master_keys("short", &[]).is_err());
        let c = Keyring::from_master_keys(
            "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=",
            &[b64.to_string()],
        )
        .unwrap();
        assert_eq!(c.ids().len(), 2);
        assert_ne!(c.primary().id(), a.primary().id());
    }
}
