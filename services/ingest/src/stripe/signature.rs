//! Verification of the `Stripe-Signature` header.
//!
//! `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, where each `v1` is
//! HMAC-SHA256(key = the whole `whsec_…` secret, message = "<t>.<raw body>"). The event is
//! genuine when any `v1` matches any configured secret (several during a rotation) and `t`
//! is within the tolerance of now. Comparisons are constant-time.

use crate::IngestError;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub struct StripeSignatureVerifier {
    /// One keyed MAC per secret, cloned per check so the key schedule runs once.
    keys: Vec<HmacSha256>,
    tolerance_secs: u64,
}

impl StripeSignatureVerifier {
    pub fn new(secrets: Vec<Vec<u8>>, tolerance_secs: u64) -> Self {
        let keys = secrets
            .iter()
            .map(|s| HmacSha256::new_from_slice(s).expect("HMAC accepts keys of any length"))
            .collect();
        Self {
            keys,
            tolerance_secs,
        }
    }

    /// Checks `header` against `body` at time `now` (unix seconds).
    pub fn verify(&self, header: &str, body: &[u8], now: i64) -> Result<(), IngestError> {
        let parsed = ParsedHeader::parse(header)?;
        let age = now - parsed.timestamp;
        if age.unsigned_abs() > self.tolerance_secs {
            return Err(IngestError::StaleTimestamp {
                age_secs: age,
                tolerance_secs: self.tolerance_secs,
            });
        }
        let mut matched = subtle::Choice::from(0);
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(parsed.timestamp_text.as_bytes());
            mac.update(b".");
            mac.update(body);
            let expected = mac.finalize().into_bytes();
            for candidate in &parsed.v1 {
                matched |= expected.as_slice().ct_eq(candidate.as_slice());
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(IngestError::SignatureMismatch)
        }
    }
}

struct ParsedHeader<'a> {
    timestamp: i64,
    timestamp_text: &'a str,
    v1: Vec<Vec<u8>>,
}

impl<'a> ParsedHeader<'a> {
    fn parse(header: &'a str) -> Result<Self, IngestError> {
        let mut timestamp = None;
        let mut v1 = Vec::new();
        for item in header.split(',') {
            let Some((key, value)) = item.trim().split_once('=') else {
                return Err(IngestError::MalformedSignature("items must be key=value"));
            };
            match key {
                "t" => {
                    let parsed = value.parse::<i64>().map_err(|_| {
                        IngestError::MalformedSignature("t is not a unix timestamp")
                    })?;
                    timestamp = Some((parsed, value));
                }
                "v1" => {
                    // A v1 that is not 32 bytes of hex cannot match; skip it like Stripe's
                    // own libraries do, other v1 entries may still match.
                    if let Ok(bytes) = hex::decode(value) {
                        if bytes.len() == 32 {
                            v1.push(bytes);
                        }
                    }
                }
                // v0 and future schemes are not trusted.
                _ => {}
            }
        }
        let (timestamp, timestamp_text) =
            timestamp.ok_or(IngestError::MalformedSignature("no t= timestamp"))?;
        if v1.is_empty() {
            return Err(IngestError::MalformedSignature("no v1= signature"));
        }
        Ok(Self {
            timestamp,
            timestamp_text,
            v1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const NOW: i64 = 1_700_000_000;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn verifier(secrets: &[&str]) -> StripeSignatureVerifier {
        StripeSignatureVerifier::new(secrets.iter().map(|s| s.as_bytes().to_vec()).collect(), 300)
    }

    #[test]
    fn a_known_vector_verifies() {
        // Computed independently: echo -n '1700000000.{"id":"evt_1","object":"event"}' |
        //   openssl dgst -sha256 -hmac whsec_test_secret
        let header =
            format!("t={NOW},v1=0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd");
        verifier(&[SECRET])
            .verify(&header, BODY, NOW)
            .expect("valid");
    }

    #[test]
    fn any_v1_may_match_and_v0_is_ignored() {
        let good = sign(SECRET, NOW, BODY);
        let header = format!("t={NOW},v0={good},v1={},v1={good}", "ab".repeat(32));
        verifier(&[SECRET])
            .verify(&header, BODY, NOW)
            .expect("second v1 matches");
        let only_v0 = format!("t={NOW},v0={good}");
        assert!(matches!(
            verifier(&[SECRET]).verify(&only_v0, BODY, NOW),
            Err(IngestError::MalformedSignature(_))
        ));
    }

    #[test]
    fn rotation_accepts_old_and_new_secret() {
        let v = verifier(&["whsec_old", "whsec_new"]);
        for secret in ["whsec_old", "whsec_new"] {
            let header = format!("t={NOW},v1={}", sign(secret, NOW, BODY));
            v.verify(&header, BODY, NOW)
                .expect("both secrets valid during rotation");
        }
        let header = format!("t={NOW},v1={}", sign("whsec_other", NOW, BODY));
        assert!(matches!(
            v.verify(&header, BODY, NOW),
            Err(IngestError::SignatureMismatch)
        ));
    }

    #[test]
    fn tampered_body_and_timestamp_fail() {
        let sig = sign(SECRET, NOW, BODY);
        let v = verifier(&[SECRET]);
        let tampered = br#"{"id":"evt_2","object":"event"}"#;
        assert!(matches!(
            v.verify(&format!("t={NOW},v1={sig}"), tampered, NOW),
            Err(IngestError::SignatureMismatch)
        ));
        // Same signature presented with a shifted timestamp.
        assert!(matches!(
            v.verify(&format!("t={},v1={sig}", NOW + 1), BODY, NOW),
            Err(IngestError::SignatureMismatch)
        ));
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let v = verifier(&[SECRET]);
        let old = NOW - 301;
        let header = format!("t={old},v1={}", sign(SECRET, old, BODY));
        assert!(matches!(
            v.verify(&header, BODY, NOW),
            Err(IngestError::StaleTimestamp { .. })
        ));
        let future = NOW + 301;
        let header = format!("t={future},v1={}", sign(SECRET, future, BODY));
        assert!(matches!(
            v.verify(&header, BODY, NOW),
            Err(IngestError::StaleTimestamp { .. })
        ));
        let edge = NOW - 300;
        let header = format!("t={edge},v1={}", sign(SECRET, edge, BODY));
        v.verify(&header, BODY, NOW)
            .expect("exactly at the tolerance is accepted");
    }

    #[test]
    fn garbage_headers_are_rejected() {
        let v = verifier(&[SECRET]);
        for header in ["", "garbage", "t=abc,v1=00", "v1=00"] {
            assert!(
                matches!(
                    v.verify(header, BODY, NOW),
                    Err(IngestError::MalformedSignature(_))
                ),
                "{header}"
            );
        }
    }
}
