//! Validation of a parsed configuration: every error names the file, the key and the reason.

use crate::{Config, Role, SecretRef};
use billsync_events::DestinationKind;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem, printed as `file: key: reason`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: &str, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

const RESOURCES: &[&str] = &[
    "customer",
    "subscription",
    "invoice",
    "charge",
    "checkout_session",
];

impl Config {
    pub(crate) fn validate(&mut self, role: Role) -> Result<(), ConfigError> {
        self.validate_with(&|name| std::env::var(name).ok(), role)
    }

    pub(crate) fn validate_with(
        &mut self,
        var: &impl Fn(&str) -> Option<String>,
        role: Role,
    ) -> Result<(), ConfigError> {
        let origin = self.origin.clone();
        let err = |key: String, reason: String| ConfigError::new(&origin, &key, reason);

        if !is_token(&self.nats.prefix) {
            return Err(err(
                "nats.prefix".into(),
                format!(
                    "{:?} must be lowercase letters, digits, '-' or '_'",
                    self.nats.prefix
                ),
            ));
        }
        if self.nats.replicas == 0 || self.nats.replicas > 5 {
            return Err(err(
                "nats.replicas".into(),
                "must be between 1 and 5".into(),
            ));
        }
        for bound in self.numeric_bounds() {
            bound.check(&err)?;
        }

        let mut names = HashSet::new();
        let mut check_name = |key: String, name: &str| -> Result<(), ConfigError> {
            if !is_token(name) {
                return Err(err(
                    key,
                    format!(
                        "{name:?} is not a valid connection name: use 1-64 lowercase letters, \
                         digits, '-' or '_' (it becomes part of NATS subjects)"
                    ),
                ));
            }
            if !names.insert(name.to_string()) {
                return Err(err(key, format!("connection name {name:?} is used twice")));
            }
            Ok(())
        };

        for (i, c) in self.sources.stripe.iter_mut().enumerate() {
            let at = format!("sources.stripe[{i}]");
            check_name(format!("{at}.name"), &c.name)?;
            if c.webhook_secrets.is_empty() {
                return Err(err(
                    format!("{at}.webhook_secrets"),
                    "give at least one signing secret (whsec_...) of the webhook endpoint".into(),
                ));
            }
            for (j, s) in c.webhook_secrets.iter_mut().enumerate() {
                resolve(
                    s,
                    var,
                    &format!("{at}.webhook_secrets[{j}]"),
                    &err,
                    role.needs_sources(),
                )?;
            }
            if let Some(key) = c.api_key.as_mut() {
                resolve(
                    key,
                    var,
                    &format!("{at}.api_key"),
                    &err,
                    role.needs_sources(),
                )?;
            }
            check_url(&c.api_base, &format!("{at}.api_base"), &err)?;
        }
        for (i, c) in self.sources.chargebee.iter_mut().enumerate() {
            let at = format!("sources.chargebee[{i}]");
            check_name(format!("{at}.name"), &c.name)?;
            resolve(
                &mut c.api_key,
                var,
                &format!("{at}.api_key"),
                &err,
                role.needs_sources(),
            )?;
            if let Some(url) = &c.base_url {
                check_url(url, &format!("{at}.base_url"), &err)?;
            }
            if c.requests_per_minute == 0 {
                return Err(err(
                    format!("{at}.requests_per_minute"),
                    "must be at least 1".into(),
                ));
            }
            if c.poll_overlap_secs >= self.nats.duplicate_window_secs {
                return Err(err(
                    format!("{at}.poll_overlap_secs"),
                    format!(
                        "{} s must be shorter than nats.duplicate_window_secs ({} s), or re-fetched \
                         events would be published twice",
                        c.poll_overlap_secs, self.nats.duplicate_window_secs
                    ),
                ));
            }
            if c.poll_interval_secs == 0 {
                return Err(err(
                    format!("{at}.poll_interval_secs"),
                    "must be at least 1".into(),
                ));
            }
        }
        for (i, c) in self.destinations.activecampaign.iter_mut().enumerate() {
            let at = format!("destinations.activecampaign[{i}]");
            check_name(format!("{at}.name"), &c.name)?;
            check_url(&c.base_url, &format!("{at}.base_url"), &err)?;
            resolve(
                &mut c.api_token,
                var,
                &format!("{at}.api_token"),
                &err,
                role.needs(DestinationKind::Activecampaign),
            )?;
            if let Some(key) = c.event_key.as_mut() {
                resolve(
                    key,
                    var,
                    &format!("{at}.event_key"),
                    &err,
                    role.needs(DestinationKind::Activecampaign),
                )?;
            }
            if c.requests_per_second == 0 {
                return Err(err(
                    format!("{at}.requests_per_second"),
                    "must be at least 1".into(),
                ));
            }
        }
        for (i, c) in self.destinations.zoho.iter_mut().enumerate() {
            let at = format!("destinations.zoho[{i}]");
            check_name(format!("{at}.name"), &c.name)?;
            match (&c.accounts_url, &c.data_center) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("{at}.data_center"),
                        "set data_center or accounts_url, not both".into(),
                    ))
                }
                (Some(url), None) => check_url(url, &format!("{at}.accounts_url"), &err)?,
                (None, Some(center))
                    if !crate::ZOHO_DATA_CENTERS
                        .iter()
                        .any(|(name, _)| name == center) =>
                {
                    return Err(err(
                        format!("{at}.data_center"),
                        format!(
                            "unknown data centre {center:?}; one of {}",
                            crate::ZOHO_DATA_CENTERS.map(|(name, _)| name).join(", ")
                        ),
                    ))
                }
                _ => {}
            }
            if c.credits_per_day == 0 {
                return Err(err(
                    format!("{at}.credits_per_day"),
                    "must be at least 1".into(),
                ));
            }
            if c.concurrency == 0 {
                return Err(err(
                    format!("{at}.concurrency"),
                    "must be at least 1".into(),
                ));
            }
            resolve(
                &mut c.client_id,
                var,
                &format!("{at}.client_id"),
                &err,
                role.needs(DestinationKind::Zoho),
            )?;
            resolve(
                &mut c.client_secret,
                var,
                &format!("{at}.client_secret"),
                &err,
                role.needs(DestinationKind::Zoho),
            )?;
            resolve(
                &mut c.refresh_token,
                var,
                &format!("{at}.refresh_token"),
                &err,
                role.needs(DestinationKind::Zoho),
            )?;
        }
        for (i, c) in self.destinations.pipedrive.iter_mut().enumerate() {
            let at = format!("destinations.pipedrive[{i}]");
            check_name(format!("{at}.name"), &c.name)?;
            check_url(&c.base_url, &format!("{at}.base_url"), &err)?;
            resolve(
                &mut c.api_token,
                var,
                &format!("{at}.api_token"),
                &err,
                role.needs(DestinationKind::Pipedrive),
            )?;
            for (key, value) in [
                ("daily_token_budget", c.daily_token_budget),
                ("requests_per_2s", u64::from(c.requests_per_2s)),
            ] {
                if value == 0 {
                    return Err(err(format!("{at}.{key}"), "must be at least 1".into()));
                }
            }
        }
        if let Some(token) = self.errors.admin_token.as_mut() {
            resolve(token, var, "errors.admin_token", &err, role.needs_admin())?;
        }

        let mut pairs = HashSet::new();
        for (i, sync) in self.syncs.iter().enumerate() {
            let at = format!("syncs[{i}]");
            match self.connection_kind(&sync.source) {
                Some(crate::ConnectionKind::Source(_)) => {}
                _ => {
                    return Err(err(
                        format!("{at}.source"),
                        format!(
                            "{:?} is not a source connection (defined: {})",
                            sync.source,
                            self.source_names().join(", ")
                        ),
                    ))
                }
            }
            match self.connection_kind(&sync.destination) {
                Some(crate::ConnectionKind::Destination(_)) => {}
                _ => {
                    return Err(err(
                        format!("{at}.destination"),
                        format!(
                            "{:?} is not a destination connection (defined: {})",
                            sync.destination,
                            self.destination_names().join(", ")
                        ),
                    ))
                }
            }
            for (j, r) in sync.resources.iter().enumerate() {
                if !RESOURCES.contains(&r.as_str()) {
                    return Err(err(
                        format!("{at}.resources[{j}]"),
                        format!(
                            "unknown resource {r:?}; expected one of {}",
                            RESOURCES.join(", ")
                        ),
                    ));
                }
            }
            if !pairs.insert((sync.source.clone(), sync.destination.clone())) {
                return Err(err(
                    at,
                    format!(
                        "a sync from {:?} to {:?} is declared twice",
                        sync.source, sync.destination
                    ),
                ));
            }
        }
        Ok(())
    }

    fn source_names(&self) -> Vec<String> {
        let stripe = self.sources.stripe.iter().map(|c| c.name.clone());
        let chargebee = self.sources.chargebee.iter().map(|c| c.name.clone());
        stripe.chain(chargebee).collect()
    }

    fn destination_names(&self) -> Vec<String> {
        self.destination_connections()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }
}

/// Resolves a secret; a failure is an error only when this process needs the secret, so a
/// worker pod does not need the webhook secrets of the ingest pod (secrets it does not need
/// are still read when present, so that they can be scrubbed from records).
/// A numeric setting's allowed range, and what goes wrong outside it.
struct Bound {
    key: String,
    value: u64,
    min: u64,
    max: u64,
    /// What a value outside the range breaks, for the message.
    why: &'static str,
}

impl Bound {
    fn new(
        key: impl Into<String>,
        value: impl TryInto<u64>,
        min: u64,
        max: u64,
        why: &'static str,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.try_into().unwrap_or(u64::MAX),
            min,
            max,
            why,
        }
    }

    fn check(&self, err: &impl Fn(String, String) -> ConfigError) -> Result<(), ConfigError> {
        if (self.min..=self.max).contains(&self.value) {
            return Ok(());
        }
        Err(err(
            self.key.clone(),
            format!(
                "{} is outside {}..={}: {}",
                self.value, self.min, self.max, self.why
            ),
        ))
    }
}

impl Config {
    /// The numeric settings whose values outside a range break a service (a
    /// `publish_timeout_ms` of 0 answers every webhook 503), checked at start.
    fn numeric_bounds(&self) -> Vec<Bound> {
        let (n, w) = (&self.nats, &self.workers);
        let mut bounds = vec![
            Bound::new("nats.retention_days", n.retention_days, 1, 3_650,
                "events must stay in the stream long enough to be delivered and replayed"),
            Bound::new("nats.duplicate_window_secs", n.duplicate_window_secs, 60,
                n.retention_days.saturating_mul(86_400).min(7 * 86_400),
                "JetStream drops a redelivered webhook only within this window; it cannot exceed the stream's retention (nor a week)"),
            Bound::new("postgres.max_connections", self.postgres.max_connections, 1, 1_000,
                "the errors service needs at least one connection"),
            Bound::new("ingest.max_body_bytes", self.ingest.max_body_bytes, 1_024, 64 * 1024 * 1024,
                "no Stripe event fits in less than a kilobyte (they reach hundreds), and NATS refuses messages of more than its max_payload"),
            Bound::new("ingest.publish_timeout_ms", self.ingest.publish_timeout_ms, 100, 25_000,
                "below 100 ms every webhook answers 503; Stripe gives up on an answer after about 30 s"),
            Bound::new("workers.max_attempts", w.max_attempts, 1, 100,
                "0 attempts would never write an event"),
            Bound::new("workers.max_in_flight", w.max_in_flight, 1, 100_000,
                "0 would hold no event at all"),
            Bound::new("workers.request_timeout_ms", w.request_timeout_ms, 100, 300_000,
                "below 100 ms every CRM request times out"),
            Bound::new("workers.ack_wait_secs", w.ack_wait_secs, 1, 3_600,
                "JetStream hands an event not yet acknowledged to another replica after this long (workers report progress meanwhile); 0 is refused by JetStream"),
            Bound::new("workers.unknown_sync_wait_secs", w.unknown_sync_wait_secs, 0, 86_400,
                "events wait at most a day for a rollout to finish"),
        ];
        for (i, c) in self.sources.stripe.iter().enumerate() {
            bounds.push(Bound::new(
                format!("sources.stripe[{i}].signature_tolerance_secs"),
                c.signature_tolerance_secs,
                10,
                3_600,
                "a tighter tolerance refuses Stripe's own retries of clocks a little apart; a wider one lets a captured webhook be replayed for longer (Stripe's libraries use 300)",
            ));
        }
        bounds
    }
}

fn resolve(
    secret: &mut SecretRef,
    var: &impl Fn(&str) -> Option<String>,
    key: &str,
    err: &impl Fn(String, String) -> ConfigError,
    required: bool,
) -> Result<(), ConfigError> {
    let resolved = secret.resolve(var);
    if !required {
        return Ok(());
    }
    resolved.map_err(|reason| err(key.to_string(), reason))
}

fn check_url(
    url: &str,
    key: &str,
    err: &impl Fn(String, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(err(
            key.to_string(),
            format!("{url:?} is not an http(s) URL"),
        ))
    }
}

/// Names that may appear as one NATS subject token and in stream/bucket names.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
