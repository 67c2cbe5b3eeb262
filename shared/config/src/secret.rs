//! References to secrets held outside the configuration file.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// `{ env = "AC_API_TOKEN" }` or `{ file = "/run/secrets/ac-token" }`.
///
/// The value is resolved once, at load; `Debug` never prints it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(skip)]
    value: Option<SecretString>,
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.env, &self.file) {
            (Some(env), _) => write!(f, "SecretRef(env:{env})"),
            (None, Some(file)) => write!(f, "SecretRef(file:{})", file.display()),
            (None, None) => f.write_str("SecretRef(unset)"),
        }
    }
}

impl SecretRef {
    /// A reference to an environment variable (for building configs in code).
    pub fn from_env(name: &str) -> Self {
        Self {
            env: Some(name.into()),
            file: None,
            value: None,
        }
    }

    /// Reads the secret; the error says which variable or file is missing.
    pub(crate) fn resolve(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let value = match (&self.env, &self.file) {
            (Some(_), Some(_)) => return Err("give either `env` or `file`, not both".into()),
            (None, None) => {
                return Err(
                    "a secret must be `{ env = \"NAME\" }` or `{ file = \"/path\" }`".into(),
                )
            }
            (Some(name), None) => var(name).ok_or_else(|| {
                format!("environment variable {name} is not set (it holds this secret)")
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err("the secret is empty".into());
        }
        self.value = Some(SecretString::from(value));
        Ok(())
    }

    /// The secret's value, once resolved by [`crate::Config::load`].
    pub fn value(&self) -> Option<&str> {
        self.value.as_ref().map(|v| v.expose_secret())
    }

    /// The secret's value; empty for a reference that was never resolved, which
    /// `Config::load` rules out.
    pub fn expose(&self) -> &str {
        self.value().unwrap_or_default()
    }
}
