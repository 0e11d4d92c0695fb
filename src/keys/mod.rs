//! Supplier operator keys (issue 7): the keys file, its permission check, and the shared, hot-reloadable
//! [`Keyring`] the relayer (signing responses, "is this supplier ours") and the miner (signing claim and proof
//! txs) read.
//!
//! The keys file is YAML with one list of hex secp256k1 private keys (with or without `0x`):
//!
//! ```yaml
//! keys:
//!   - 0f3c…64 hex digits…
//! ```
//!
//! Each key's operator address is derived from it, so the file cannot disagree with itself. The file must not be
//! readable or writable by group or others (like `ssh` refusing a loose private key); a loose file is an error that
//! names the mode and the fix. Hot reload polls the file's content: a change that parses cleanly replaces the
//! keyring (adding and removing suppliers); a change that does not parse is logged and the old keys stay, so a
//! half-written file never drops a supplier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k256::ecdsa::SigningKey;
use serde::Deserialize;

use crate::protocol::address;

/// Errors loading a keys file.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read.
    #[error("cannot read keys file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error("keys file {path} has mode {mode:04o}: group/others must have no access (run `chmod 600 {path}`)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The YAML does not parse.
    #[error("keys file {path}: {problem}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (key path included).
        problem: String,
    },
    /// One entry is not a valid private key.
    #[error("keys file {path}: keys[{index}] is not a valid hex secp256k1 private key: {problem}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Index in `keys`.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// The file lists no key.
    #[error("keys file {path}: `keys` is empty; list at least one supplier operator key")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<String>,
}

/// Operator address → signing key.
pub type KeyMap = BTreeMap<String, SigningKey>;

/// Parses keys-file text (no permission check); `path` only names the file in errors.
pub fn parse_keys(path: &Path, text: &str) -> Result<KeyMap, KeysError> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    let file: KeysFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        KeysError::Parse {
            path: path.to_path_buf(),
            problem: format!("key `{key}`: {}", e.into_inner()),
        }
    })?;
    if file.keys.is_empty() {
        return Err(KeysError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut keys = KeyMap::new();
    for (index, hex_key) in file.keys.iter().enumerate() {
        let trimmed = hex_key.trim();
        let trimmed = trimmed.strip_prefix("0x").unwrap_or(trimmed);
        let key = address::signing_key_from_hex(trimmed).map_err(|e| KeysError::BadKey {
            path: path.to_path_buf(),
            index,
            problem: e.to_string(),
        })?;
        keys.insert(address::address_of(&key), key);
    }
    Ok(keys)
}

/// Reads a keys file, refusing one that group or others can access.
pub fn load_keys_file(path: &Path) -> Result<KeyMap, KeysError> {
    check_permissions(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_keys(path, &text)
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), KeysError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| KeysError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeysError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), KeysError> {
    Ok(())
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// Operator addresses that appeared.
    pub added: Vec<String>,
    /// Operator addresses that disappeared.
    pub removed: Vec<String>,
}

/// The shared set of supplier keys; cheap to clone, every clone sees replacements.
#[derive(Clone, Default)]
pub struct Keyring {
    inner: Arc<RwLock<Arc<KeyMap>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("suppliers", &self.addresses()).finish()
    }
}

impl Keyring {
    /// A keyring holding `keys`.
    pub fn new(keys: KeyMap) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Arc::new(keys))),
        }
    }

    /// The current keys (a consistent snapshot).
    pub fn snapshot(&self) -> Arc<KeyMap> {
        match self.inner.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The key of `operator_address`, if it is ours.
    pub fn get(&self, operator_address: &str) -> Option<SigningKey> {
        self.snapshot().get(operator_address).cloned()
    }

    /// Whether `operator_address` is ours.
    pub fn contains(&self, operator_address: &str) -> bool {
        self.snapshot().contains_key(operator_address)
    }

    /// Our operator addresses, sorted.
    pub fn addresses(&self) -> Vec<String> {
        self.snapshot().keys().cloned().collect()
    }

    /// Replaces every key; returns what changed.
    pub fn replace(&self, keys: KeyMap) -> KeyChange {
        let mut guard = match self.inner.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let change = KeyChange {
            added: keys.keys().filter(|a| !guard.contains_key(*a)).cloned().collect(),
            removed: guard.keys().filter(|a| !keys.contains_key(*a)).cloned().collect(),
        };
        *guard = Arc::new(keys);
        change
    }
}

/// Remembers the keys file's last loaded content and reloads it when the content changes.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    keyring: Keyring,
    last: Option<Vec<u8>>,
}

impl Reloader {
    /// A reloader for `path` feeding `keyring`; the file's current content counts as loaded.
    pub fn new(path: PathBuf, keyring: Keyring) -> Self {
        let last = std::fs::read(&path).ok();
        Self { path, keyring, last }
    }

    /// Checks the file once: `None` when unchanged, `Some(Ok(change))` after a clean reload, `Some(Err(_))` when
    /// the changed file does not load (the old keys stay, and the next check retries).
    pub fn check(&mut self) -> Option<Result<KeyChange, KeysError>> {
        let current = std::fs::read(&self.path).ok();
        if current == self.last {
            return None;
        }
        Some(load_keys_file(&self.path).map(|keys| {
            self.last = current;
            self.keyring.replace(keys)
        }))
    }
}

/// Polls the keys file every `interval` and replaces the keyring when its content changes and loads cleanly;
/// a broken file is logged and the old keys stay, so a half-written file never drops a supplier. Runs until the
/// returned task is aborted. Beats `heartbeat` at every check, changed file or not.
pub fn spawn_reload(
    mut reloader: Reloader,
    interval: Duration,
    heartbeat: crate::telemetry::Heartbeat,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            heartbeat.beat();
            match reloader.check() {
                None => {}
                Some(Ok(change)) => tracing::info!(
                    file = %reloader.path.display(),
                    added = ?change.added,
                    removed = ?change.removed,
                    "supplier keys reloaded"
                ),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "supplier keys file changed but does not load; keeping the old keys")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("keys.yaml");
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        path
    }

    #[test]
    fn loads_keys_and_derives_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("keys:\n  - {K1}\n  - 0x{K2}\n"), 0o600);
        let keys = load_keys_file(&path).unwrap();
        assert_eq!(keys.len(), 2);
        for (addr, key) in &keys {
            assert_eq!(addr, &address::address_of(key));
            assert!(addr.starts_with("pokt1"));
        }
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("keys:\n  - {K1}\n"), 0o644);
        let err = load_keys_file(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, KeysError::Permissions { mode: 0o644, .. }), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
    }

    #[test]
    fn bad_entries_name_the_problem() {
        let p = Path::new("k.yaml");
        let err = parse_keys(p, "keys:\n  - nothex\n").unwrap_err();
        assert!(matches!(err, KeysError::BadKey { index: 0, .. }), "{err}");
        let err = parse_keys(p, "keys: []\n").unwrap_err();
        assert!(matches!(err, KeysError::Empty { .. }), "{err}");
        let err = parse_keys(p, &format!("keys:\n  - {K1}\nextra: 1\n")).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
        let err = parse_keys(p, "keys:\n  - 00\n").unwrap_err();
        assert!(matches!(err, KeysError::BadKey { .. }), "{err}");
    }

    #[test]
    fn replace_reports_added_and_removed() {
        let p = Path::new("k.yaml");
        let one = parse_keys(p, &format!("keys: [{K1}]")).unwrap();
        let two = parse_keys(p, &format!("keys: [{K2}]")).unwrap();
        let a1 = one.keys().next().unwrap().clone();
        let a2 = two.keys().next().unwrap().clone();
        let ring = Keyring::new(one);
        let other_handle = ring.clone();
        let change = ring.replace(two);
        assert_eq!(change.added, vec![a2.clone()]);
        assert_eq!(change.removed, vec![a1.clone()]);
        assert!(other_handle.contains(&a2));
        assert!(!other_handle.contains(&a1));
    }

    #[test]
    fn reload_adds_and_removes_and_survives_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("keys:\n  - {K1}\n"), 0o600);
        let ring = Keyring::new(load_keys_file(&path).unwrap());
        let a1 = ring.addresses()[0].clone();
        let mut reloader = Reloader::new(path.clone(), ring.clone());
        assert!(reloader.check().is_none(), "unchanged file");
        write(dir.path(), &format!("keys:\n  - {K1}\n  - {K2}\n"), 0o600);
        let change = reloader.check().unwrap().unwrap();
        assert_eq!(change.added.len(), 1);
        assert_eq!(ring.addresses().len(), 2);
        // A broken file keeps both keys, and is retried until fixed.
        write(dir.path(), "keys: [nothex]\n", 0o600);
        assert!(reloader.check().unwrap().is_err());
        assert!(reloader.check().unwrap().is_err());
        assert_eq!(ring.addresses().len(), 2, "a broken file must not drop suppliers");
        // A loose file is refused too.
        write(dir.path(), &format!("keys:\n  - {K2}\n"), 0o644);
        #[cfg(unix)]
        assert!(matches!(reloader.check(), Some(Err(KeysError::Permissions { .. }))));
        write(dir.path(), &format!("keys:\n  - {K2}\n"), 0o600);
        let change = reloader.check().unwrap().unwrap();
        assert_eq!(change.removed, vec![a1.clone()]);
        assert!(!ring.contains(&a1));
        assert_eq!(ring.addresses().len(), 1);
    }

    #[tokio::test]
    async fn reload_task_picks_up_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("keys:\n  - {K1}\n"), 0o600);
        let ring = Keyring::new(load_keys_file(&path).unwrap());
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        let task = spawn_reload(
            Reloader::new(path.clone(), ring.clone()),
            Duration::from_millis(10),
            telemetry.heartbeat("keys_reload"),
        );
        // It beats while the file is unchanged.
        telemetry.assert_heartbeat_advances("keys_reload").await;
        write(dir.path(), &format!("keys:\n  - {K1}\n  - {K2}\n"), 0o600);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ring.addresses().len() != 2 {
            assert!(tokio::time::Instant::now() < deadline, "reload not observed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
    }
}
