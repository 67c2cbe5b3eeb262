//! The configuration loader: TOML, environment layer and validation.
//!
//! Input: a configuration file. Properties: every refusal names the file and gives a reason,
//! and every refusal of a file that is valid TOML names a key the file holds.
#![no_main]

use billsync_config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("/etc/billsync/fuzz.toml");
    let Err(error) = Config::from_toml(text, origin) else {
        return;
    };
    assert_eq!(error.file, origin);
    assert!(!error.reason.is_empty(), "{error:?}");
    if text.parse::<toml::Table>().is_ok() {
        assert!(
            !error.key.is_empty(),
            "a refusal of valid TOML names no key: {error}"
        );
        assert!(error.to_string().contains(&error.key));
        // `sources.stripe[0].webhook_secrets[1]` names `webhook_secrets`.
        let last = error.key.rsplit('.').next().unwrap_or_default();
        let last = last.split('[').next().unwrap_or_default();
        assert!(text.contains(last), "{error} names a key not in the file");
    }
});
