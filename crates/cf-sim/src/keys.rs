//! The UAA signing key: an RSA private key in PEM, and what UAA publishes about it.
//!
//! UAA's `/token_keys` carries the public key twice, as a PEM (`value`) and as JWK
//! components (`n`, `e`, base64url without padding). Both are derived here at start-up
//! from the private key with a few lines of DER parsing, so `--signing-key-file` needs
//! no extra crypto dependency. Only what RSA keys in PKCS#1 (`BEGIN RSA PRIVATE KEY`)
//! and PKCS#8 (`BEGIN PRIVATE KEY`) PEM need is implemented.

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};

/// The simulator's built-in development key. See `DEV_KEY_README.md`: it has no value.
pub const DEV_KEY_PEM: &str = include_str!("dev_key.pem");

/// The key id UAA uses in cf-deployment (`jwt.policy.active_key_id`).
pub const KEY_ID: &str = "key-1";

/// A signing key plus its published public forms.
#[derive(Clone)]
pub struct SigningKey {
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo), UAA's `value`.
    pub public_pem: String,
    /// Modulus, big-endian without leading zero bytes, base64url without padding.
    pub n: String,
    /// Public exponent, same encoding (`AQAB` for 65537).
    pub e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("n", &self.n)
            .field("e", &self.e)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses an RSA private key PEM (PKCS#1 or PKCS#8).
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let (label, der) = pem_decode(pem)?;
        let pkcs1 = match label.as_str() {
            "RSA PRIVATE KEY" => der.clone(),
            "PRIVATE KEY" => pkcs8_inner(&der).context("reading PKCS#8 private key")?,
            other => bail!("expected an RSA private key PEM, found `BEGIN {other}`"),
        };
        let (n, e) = rsa_private_components(&pkcs1).context("reading RSA private key")?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).context("loading signing key")?;
        let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
        let spki = subject_public_key_info(&n, &e);
        Ok(Self {
            encoding,
            decoding,
            public_pem: pem_encode("PUBLIC KEY", &spki),
            n: URL_SAFE_NO_PAD.encode(&n),
            e: URL_SAFE_NO_PAD.encode(&e),
        })
    }

    /// The built-in development key.
    pub fn development() -> Self {
        Self::from_pem(DEV_KEY_PEM).expect("the embedded development key is valid")
    }

    /// One JWK as UAA's `/token_key` presents it.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "e": self.e,
            "use": "sig",
            "kid": KEY_ID,
            "alg": "RS256",
            "value": self.public_pem,
            "n": self.n,
        })
    }
}

fn pem_decode(pem: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let mut label = None;
    let mut body = String::new();
    for line in pem.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            label = Some(rest.trim_end_matches('-').to_string());
        } else if line.starts_with("-----END ") {
            break;
        } else if label.is_some() {
            body.push_str(line);
        }
    }
    let label = label.context("no `-----BEGIN` line in PEM")?;
    let der = STANDARD.decode(body).context("PEM body is not base64")?;
    Ok((label, der))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----"));
    out
}

/// A minimal DER reader: one TLV at a time.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn read(&mut self, expected_tag: u8) -> anyhow::Result<&'a [u8]> {
        ensure!(self.rest.len() >= 2, "truncated DER");
        let tag = self.rest[0];
        ensure!(
            tag == expected_tag,
            "DER tag {tag:#04x}, expected {expected_tag:#04x}"
        );
        let first = self.rest[1] as usize;
        let (len, header) = if first < 0x80 {
            (first, 2)
        } else {
            let count = first & 0x7f;
            ensure!((1..=4).contains(&count), "unsupported DER length");
            ensure!(self.rest.len() >= 2 + count, "truncated DER");
            let len = self.rest[2..2 + count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + count)
        };
        ensure!(self.rest.len() >= header + len, "truncated DER");
        let value = &self.rest[header..header + len];
        self.rest = &self.rest[header + len..];
        Ok(value)
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const RSA_ENCRYPTION_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const DER_NULL: &[u8] = &[0x05, 0x00];

fn pkcs8_inner(der: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut outer = Der::new(Der::new(der).read(SEQUENCE)?);
    outer.read(INTEGER)?; // version
    let algorithm = outer.read(SEQUENCE)?;
    ensure!(
        algorithm.starts_with(RSA_ENCRYPTION_OID),
        "not an RSA key (PKCS#8 algorithm is not rsaEncryption)"
    );
    Ok(outer.read(OCTET_STRING)?.to_vec())
}

fn strip_leading_zeros(int: &[u8]) -> Vec<u8> {
    let start = int.iter().position(|b| *b != 0).unwrap_or(int.len() - 1);
    int[start..].to_vec()
}

/// (n, e) of a PKCS#1 RSAPrivateKey, big-endian without leading zeros.
fn rsa_private_components(der: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut seq = Der::new(Der::new(der).read(SEQUENCE)?);
    seq.read(INTEGER)?; // version
    let n = strip_leading_zeros(seq.read(INTEGER)?);
    let e = strip_leading_zeros(seq.read(INTEGER)?);
    Ok((n, e))
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

fn der_unsigned_integer(int: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(int.len() + 1);
    if int.first().is_some_and(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(int);
    der_tlv(INTEGER, &value)
}

fn subject_public_key_info(n: &[u8], e: &[u8]) -> Vec<u8> {
    let rsa_public_key = der_tlv(
        SEQUENCE,
        &[der_unsigned_integer(n), der_unsigned_integer(e)].concat(),
    );
    let algorithm = der_tlv(SEQUENCE, &[RSA_ENCRYPTION_OID, DER_NULL].concat());
    let bit_string = der_tlv(BIT_STRING, &[&[0u8][..], &rsa_public_key].concat());
    der_tlv(SEQUENCE, &[algorithm, bit_string].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV_PUBLIC_PEM: &str = include_str!("dev_key.pub.pem");

    #[test]
    fn public_pem_of_the_dev_key_matches_openssl() {
        let key = SigningKey::development();
        assert_eq!(key.public_pem.trim(), DEV_PUBLIC_PEM.trim());
    }

    #[test]
    fn jwk_components_are_base64url_without_a_sign_byte() {
        let key = SigningKey::development();
        assert_eq!(key.e, "AQAB");
        let n = URL_SAFE_NO_PAD.decode(&key.n).unwrap();
        assert_eq!(n.len(), 256, "2048-bit modulus");
        assert_ne!(n[0], 0);
        // `openssl rsa -noout -modulus` of dev_key.pem begins B29F180A.
        assert!(key.n.starts_with("sp8YCmkb2AB61dcq"));
    }

    #[test]
    fn pkcs8_keys_are_accepted_too() {
        // Re-wrap the PKCS#1 key in a PKCS#8 envelope and parse it again.
        let (_, pkcs1) = pem_decode(DEV_KEY_PEM).unwrap();
        let algorithm = der_tlv(SEQUENCE, &[RSA_ENCRYPTION_OID, DER_NULL].concat());
        let pkcs8 = der_tlv(
            SEQUENCE,
            &[
                der_tlv(INTEGER, &[0]),
                algorithm,
                der_tlv(OCTET_STRING, &pkcs1),
            ]
            .concat(),
        );
        let pem = pem_encode("PRIVATE KEY", &pkcs8);
        let key = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(key.n, SigningKey::development().n);
    }

    #[test]
    fn non_rsa_pem_is_refused_with_a_clear_message() {
        let err =
            SigningKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
                .unwrap_err();
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    }
}
