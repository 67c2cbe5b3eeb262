//! The `Stripe-Signature` header parser and verifier.
//!
//! Input: `<header>\n<body>`. Properties: a header is accepted only when one of its `v1`
//! values is the HMAC this target computes itself from a configured secret, one of its `t`
//! values and the body, within the tolerance; a header signed here with a configured secret
//! is accepted, and one signed with another secret or for another body is refused.
#![no_main]

use billsync_ingest::stripe::signature::StripeSignatureVerifier;
use billsync_ingest::IngestError;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRETS: [&str; 2] = ["whsec_old_secret", "whsec_new_secret"];
const TOLERANCE: u64 = 300;
const NOW: i64 = 1_700_000_000;

fn sign(secret: &str, t: &str, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `key=value` items of a header, as Stripe writes them.
fn items(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(',')
        .filter_map(|item| item.trim().split_once('='))
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let verifier = StripeSignatureVerifier::new(
        SECRETS.iter().map(|s| s.as_bytes().to_vec()).collect(),
        TOLERANCE,
    );

    if verifier.verify(header, body, NOW).is_ok() {
        let genuine = items(header).filter(|(k, _)| *k == "t").any(|(_, t)| {
            let fresh = t
                .parse::<i64>()
                .is_ok_and(|t| (NOW - t).unsigned_abs() <= TOLERANCE);
            fresh
                && items(header).filter(|(k, _)| *k == "v1").any(|(_, v1)| {
                    SECRETS
                        .iter()
                        .any(|secret| hex::decode(v1).is_ok_and(|v| v == sign(secret, t, body)))
                })
        });
        assert!(
            genuine,
            "accepted a signature not computed from a secret: {header:?}"
        );
    }

    // The body signed here, at a time derived from it inside the tolerance.
    let offset = body.first().map_or(0, |&b| i64::from(b) - 128);
    let t = (NOW + offset).to_string();
    for secret in SECRETS {
        let signed = format!("t={t},v1={}", hex::encode(sign(secret, &t, body)));
        if let Err(e) = verifier.verify(&signed, body, NOW) {
            panic!("refused a genuine signature {signed:?}: {e}");
        }
        let mut other = body.to_vec();
        other.push(b' ');
        assert!(matches!(
            verifier.verify(&signed, &other, NOW),
            Err(IngestError::SignatureMismatch)
        ));
    }
    let forged = format!("t={t},v1={}", hex::encode(sign("whsec_other", &t, body)));
    assert!(matches!(
        verifier.verify(&forged, body, NOW),
        Err(IngestError::SignatureMismatch)
    ));
});
