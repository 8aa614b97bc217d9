//! Credentials sealed at rest: what a strategy writes to a shared store (a session's cookies, an
//! OAuth2 token) is encrypted with XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`: pure Rust,
//! so the wasm targets keep working; a 192-bit nonce, so random nonces are safe at any volume).
//!
//! Sealed format: `version (1) | key id (1) | nonce (24) | ciphertext + tag (16)`. The associated
//! data is `"stitch/v1|" + the store key + key id`, so a value copied under another key (another
//! account's session, another client's token) fails to open, as does any altered byte.
//!
//! A [`Keyring`] holds one current key, used to seal, and any number of retired keys, accepted
//! for opening only: rotate by making the new key current on every process while keeping the
//! old one retired until the values it sealed have expired. Key material is never shown (`Debug`
//! prints only the ids).
//!
//! A runtime may instead store credentials in plaintext, but only when told so by name
//! (`Runtime::builder().store_credentials_in_plaintext()`); a plaintext value (`version 0`) is
//! never accepted by a runtime that has keys, so nobody with write access to the store can plant
//! a credential in clear for a sealing fleet to use.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

const SEALED: u8 = 1;
const PLAIN: u8 = 0;
const NONCE: usize = 24;
const TAG: usize = 16;
const AAD_PREFIX: &[u8] = b"stitch/v1|";

/// Why a stored credential could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Too short, or a format version this build does not know.
    #[error("the stored credential is not in a sealed format this version reads")]
    Malformed,
    /// Sealed under a key id the keyring does not hold (a key retired too early, or a process
    /// configured with other keys).
    #[error("the stored credential is sealed under key id {0}, which this runtime does not hold: give every process the same seal keys")]
    UnknownKey(u8),
    /// The key id is known but the value does not open: another key of that id, a value copied
    /// from another store key, or an altered byte.
    #[error("the stored credential does not open under its key id and store key (another key of that id, a value moved from another store key, or altered)")]
    Unopenable,
    /// A plaintext value read by a runtime that seals, or a sealed one read by a runtime that
    /// stores credentials in plaintext.
    #[error("the stored credential is {found}, but this runtime {expects}: configure every process of the fleet alike")]
    Mismatch {
        /// What the value is.
        found: &'static str,
        /// What this runtime accepts.
        expects: &'static str,
    },
    /// The encryption itself failed (the plaintext is too long for the cipher).
    #[error("the credential could not be sealed")]
    Seal,
}

/// Seal keys: one current key (seals and opens) and retired keys (open only), each with a one-byte
/// id written in the sealed value. Clones share nothing mutable.
///
/// ```
/// use stitch::auth::Keyring;
///
/// let old = Keyring::new(1, [7; 32]);
/// let sealed = old.seal("stitch:{s:acme}:v", b"SID=abc").unwrap();
/// // Rotation: key 2 seals from now on; key 1 still opens what it sealed.
/// let rotated = Keyring::new(2, [9; 32]).retired(1, [7; 32]);
/// assert_eq!(rotated.open("stitch:{s:acme}:v", &sealed).unwrap(), b"SID=abc");
/// // Bound to its store key: moved anywhere else, it does not open.
/// assert!(rotated.open("stitch:{s:other}:v", &sealed).is_err());
/// assert!(format!("{rotated:?}").contains("current: 2"));
/// ```
#[derive(Clone)]
pub struct Keyring {
    current: u8,
    keys: Vec<(u8, XChaCha20Poly1305)>,
}

impl Keyring {
    /// A keyring sealing with `key` under id `id`.
    pub fn new(id: u8, key: [u8; 32]) -> Self {
        Keyring {
            current: id,
            keys: vec![(id, cipher(key))],
        }
    }

    /// Adds a retired key: values sealed under `id` open, nothing new is sealed with it. A
    /// retired key with the current key's id is ignored (the current key wins).
    #[must_use]
    pub fn retired(mut self, id: u8, key: [u8; 32]) -> Self {
        if let Some(slot) = self.keys.iter_mut().find(|(k, _)| *k == id) {
            if id != self.current {
                slot.1 = cipher(key);
            }
        } else {
            self.keys.push((id, cipher(key)));
        }
        self
    }

    /// The id new values are sealed under.
    pub fn current_id(&self) -> u8 {
        self.current
    }

    /// Seals `plaintext` for storage under `store_key`, with a fresh random nonce.
    pub fn seal(&self, store_key: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let cipher = self.key(self.current).ok_or(SealError::Seal)?;
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Seal)?;
        let aad = aad(store_key, self.current);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(2 + NONCE + sealed.len());
        out.push(SEALED);
        out.push(self.current);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value [`Keyring::seal`] sealed for `store_key`, under the current or a retired key.
    pub fn open(&self, store_key: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        match sealed.first() {
            Some(&SEALED) => {}
            Some(&PLAIN) => {
                return Err(SealError::Mismatch {
                    found: "in plaintext",
                    expects: "seals credentials",
                })
            }
            _ => return Err(SealError::Malformed),
        }
        if sealed.len() < 2 + NONCE + TAG {
            return Err(SealError::Malformed);
        }
        let id = sealed[1];
        let cipher = self.key(id).ok_or(SealError::UnknownKey(id))?;
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&sealed[2..2 + NONCE]);
        let aad = aad(store_key, id);
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[2 + NONCE..],
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Unopenable)
    }

    fn key(&self, id: u8) -> Option<&XChaCha20Poly1305> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, c)| c)
    }
}

fn cipher(key: [u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&Key::from(key))
}

/// `"stitch/v1|" + store key + key id`: the value is bound to where it is stored and to the key
/// id it claims (a value relabelled with another id fails too).
fn aad(store_key: &str, id: u8) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + store_key.len() + 2);
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(store_key.as_bytes());
    aad.push(b'|');
    aad.push(id);
    aad
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

/// How a runtime keeps credentials in its shared store: chosen on the builder.
#[derive(Debug, Clone, Default)]
pub(crate) enum Sealing {
    /// Neither keys nor the plaintext opt-in: a strategy that would share credentials through
    /// the store is refused when the runtime is built.
    #[default]
    Unset,
    /// `store_credentials_in_plaintext()`: stored as `0 | plaintext`.
    Plaintext,
    /// Sealed under the keyring.
    Keys(Keyring),
}

impl Sealing {
    pub(crate) fn is_set(&self) -> bool {
        !matches!(self, Sealing::Unset)
    }

    /// The bytes to store under `store_key` for `plaintext`.
    pub(crate) fn seal(&self, store_key: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        match self {
            Sealing::Keys(keys) => keys.seal(store_key, plaintext),
            Sealing::Plaintext => {
                let mut out = Vec::with_capacity(plaintext.len() + 1);
                out.push(PLAIN);
                out.extend_from_slice(plaintext);
                Ok(out)
            }
            // `build` refuses a runtime that would get here; never write in clear by default.
            Sealing::Unset => Err(SealError::Seal),
        }
    }

    /// The plaintext of a value stored under `store_key`.
    pub(crate) fn open(&self, store_key: &str, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        match self {
            Sealing::Keys(keys) => keys.open(store_key, stored),
            Sealing::Plaintext => match stored.split_first() {
                Some((&PLAIN, rest)) => Ok(rest.to_vec()),
                Some((&SEALED, _)) => Err(SealError::Mismatch {
                    found: "sealed",
                    expects: "stores credentials in plaintext",
                }),
                _ => Err(SealError::Malformed),
            },
            Sealing::Unset => Err(SealError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "stitch:{s:acme}:v";

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let ring = Keyring::new(3, [1; 32]);
        let a = ring.seal(KEY, b"SID=secret-cookie").unwrap();
        let b = ring.seal(KEY, b"SID=secret-cookie").unwrap();
        assert_ne!(a, b, "random nonces: equal plaintexts seal differently");
        assert_eq!(a[0], 1);
        assert_eq!(a[1], 3);
        assert_eq!(a.len(), 2 + 24 + b"SID=secret-cookie".len() + 16);
        assert!(!a.windows(6).any(|w| w == b"secret"), "no plaintext inside");
        assert_eq!(ring.open(KEY, &a).unwrap(), b"SID=secret-cookie");
        assert_eq!(ring.open(KEY, &b).unwrap(), b"SID=secret-cookie");
    }

    #[test]
    fn another_store_key_does_not_open() {
        let ring = Keyring::new(1, [1; 32]);
        let sealed = ring.seal(KEY, b"tok").unwrap();
        assert_eq!(
            ring.open("stitch:{s:other}:v", &sealed),
            Err(SealError::Unopenable)
        );
    }

    #[test]
    fn every_altered_byte_fails_to_open() {
        let ring = Keyring::new(1, [1; 32]);
        let sealed = ring.seal(KEY, b"token-value").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                ring.open(KEY, &bad).is_err(),
                "byte {i} altered still opened"
            );
        }
        assert_eq!(ring.open(KEY, &sealed[..20]), Err(SealError::Malformed));
        assert_eq!(ring.open(KEY, b""), Err(SealError::Malformed));
    }

    #[test]
    fn a_retired_key_opens_and_the_current_one_seals() {
        let old = Keyring::new(1, [1; 32]);
        let sealed_old = old.seal(KEY, b"v1").unwrap();
        let ring = Keyring::new(2, [2; 32]).retired(1, [1; 32]);
        assert_eq!(ring.open(KEY, &sealed_old).unwrap(), b"v1");
        let sealed_new = ring.seal(KEY, b"v2").unwrap();
        assert_eq!(sealed_new[1], 2, "new values use the current key");
        assert_eq!(
            old.open(KEY, &sealed_new),
            Err(SealError::UnknownKey(2)),
            "a process without the new key says which key it lacks"
        );
    }

    #[test]
    fn an_unknown_or_wrong_key_id_fails_typed() {
        let a = Keyring::new(1, [1; 32]);
        let b = Keyring::new(1, [9; 32]);
        let sealed = a.seal(KEY, b"v").unwrap();
        assert_eq!(b.open(KEY, &sealed), Err(SealError::Unopenable));
        assert_eq!(
            Keyring::new(7, [1; 32]).open(KEY, &sealed),
            Err(SealError::UnknownKey(1))
        );
    }

    #[test]
    fn plaintext_is_never_accepted_by_a_sealing_runtime_nor_sealed_by_an_unset_one() {
        let plain = Sealing::Plaintext.seal(KEY, b"cookie").unwrap();
        assert_eq!(plain, b"\0cookie");
        assert_eq!(Sealing::Plaintext.open(KEY, &plain).unwrap(), b"cookie");
        let keys = Sealing::Keys(Keyring::new(1, [1; 32]));
        assert!(matches!(
            keys.open(KEY, &plain),
            Err(SealError::Mismatch { .. })
        ));
        let sealed = keys.seal(KEY, b"cookie").unwrap();
        assert!(matches!(
            Sealing::Plaintext.open(KEY, &sealed),
            Err(SealError::Mismatch { .. })
        ));
        assert!(Sealing::Unset.seal(KEY, b"cookie").is_err());
    }

    #[test]
    fn debug_shows_ids_never_keys() {
        let ring = Keyring::new(4, [0xAB; 32]).retired(3, [0xCD; 32]);
        let shown = format!("{ring:?}");
        assert_eq!(shown, "Keyring { current: 4, ids: [4, 3], .. }");
        let sealed = Sealing::Keys(ring);
        assert!(!format!("{sealed:?}").contains("171"), "no key bytes");
    }
}
