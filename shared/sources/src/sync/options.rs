//! Reading one sync's `[syncs.options]`: unknown keys refused by name, typed values, and
//! errors that say what the value must be.

use billsync_config::ConfigError;
use std::collections::BTreeMap;
use std::path::Path;

/// The options of one sync, found at `syncs[N].options` of a file.
pub struct OptionReader<'a> {
    file: &'a Path,
    /// `syncs[N]`.
    sync_key: &'a str,
    options: &'a BTreeMap<String, toml::Value>,
    known: &'a [&'a str],
}

impl<'a> OptionReader<'a> {
    /// Refuses the first option `known` does not list, naming it and the options known
    /// (to `destination`'s syncs, as messages say).
    pub fn new(
        file: &'a Path,
        sync_key: &'a str,
        options: &'a BTreeMap<String, toml::Value>,
        destination: &str,
        known: &'a [&'a str],
    ) -> Result<Self, ConfigError> {
        let reader = Self {
            file,
            sync_key,
            options,
            known,
        };
        if let Some(unknown) = options.keys().find(|k| !known.contains(&k.as_str())) {
            let reason = if known.is_empty() {
                format!("unknown option; {destination} syncs take no options")
            } else {
                format!(
                    "unknown option; {destination} syncs know {}",
                    known.join(", ")
                )
            };
            return Err(reader.error(unknown, reason));
        }
        Ok(reader)
    }

    /// The value as written, for an option whose reading is the destination's own.
    pub fn get(&self, option: &str) -> Option<&'a toml::Value> {
        debug_assert!(
            self.known.contains(&option),
            "{option} is missing from the declared options"
        );
        self.options.get(option)
    }

    /// An error at `syncs[N].options.{option}`.
    pub fn error(&self, option: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(
            self.file,
            &format!("{}.options.{option}", self.sync_key),
            reason,
        )
    }

    /// `true` or `false`; `default` when absent.
    pub fn flag(&self, option: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(option) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.error(option, format!("{other} must be true or false"))),
        }
    }

    /// A string that is not blank, trimmed.
    pub fn text(&self, option: &str) -> Result<Option<String>, ConfigError> {
        match self.get(option) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(other) => Err(self.error(option, format!("{other} must be a non-empty string"))),
        }
    }

    /// A CRM's numeric id, written as a positive number or as a string of digits; `what`
    /// says where to find it ("a list id (Lists > the list's id in ActiveCampaign)").
    pub fn numeric_id(&self, option: &str, what: &str) -> Result<Option<String>, ConfigError> {
        match self.get(option) {
            None => Ok(None),
            Some(toml::Value::Integer(id)) if *id > 0 => Ok(Some(id.to_string())),
            Some(toml::Value::String(id))
                if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) =>
            {
                Ok(Some(id.clone()))
            }
            Some(other) => Err(self.error(option, format!("{other} is not {what}"))),
        }
    }

    /// One of `choices` (name, value), named by a string; `default` when absent.
    pub fn choice<T: Copy>(
        &self,
        option: &str,
        default: T,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "nothing".to_string(),
        };
        match self.get(option) {
            None => Ok(default),
            Some(toml::Value::String(s)) => choices
                .iter()
                .find(|(name, _)| name == s)
                .map(|(_, value)| *value)
                .ok_or_else(|| self.error(option, format!("{s:?} must be {expected}"))),
            Some(other) => Err(self.error(option, format!("{other} must be {expected}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["flag", "name", "list", "mode"];

    fn options(text: &str) -> BTreeMap<String, toml::Value> {
        toml::from_str(text).expect("TOML")
    }

    fn reader<'a>(options: &'a BTreeMap<String, toml::Value>) -> OptionReader<'a> {
        OptionReader::new(Path::new("b.toml"), "syncs[3]", options, "Test CRM", KNOWN)
            .expect("known options")
    }

    #[test]
    fn an_unknown_option_is_named_with_those_known() {
        let given = options("flag = true\nflagg = true");
        let error = OptionReader::new(Path::new("b.toml"), "syncs[3]", &given, "Test CRM", KNOWN)
            .err()
            .expect("unknown");
        assert_eq!(
            error.to_string(),
            "b.toml: syncs[3].options.flagg: unknown option; Test CRM syncs know flag, name, \
             list, mode"
        );
        let error = OptionReader::new(Path::new("b.toml"), "syncs[0]", &given, "Zoho CRM", &[])
            .err()
            .expect("none known");
        assert_eq!(
            error.to_string(),
            "b.toml: syncs[0].options.flag: unknown option; Zoho CRM syncs take no options"
        );
    }

    #[test]
    fn values_are_read_with_their_defaults_and_refused_saying_what_they_must_be() {
        let empty = options("");
        let none = reader(&empty);
        assert!(none.flag("flag", true).expect("default"));
        assert_eq!(none.text("name").expect("absent"), None);
        assert_eq!(none.numeric_id("list", "a list id").expect("absent"), None);
        assert_eq!(
            none.choice("mode", 1, &[("a", 0), ("b", 1)])
                .expect("default"),
            1
        );

        let good = options("flag = false\nname = \"  Ada \"\nlist = 7\nmode = \"a\"");
        let good = reader(&good);
        assert!(!good.flag("flag", true).expect("valid"));
        assert_eq!(good.text("name").expect("valid").as_deref(), Some("Ada"));
        assert_eq!(
            good.numeric_id("list", "a list id")
                .expect("valid")
                .as_deref(),
            Some("7")
        );
        assert_eq!(
            good.choice("mode", 1, &[("a", 0), ("b", 1)])
                .expect("valid"),
            0
        );
        let digits = options("list = \"12\"");
        assert_eq!(
            reader(&digits)
                .numeric_id("list", "a list id")
                .expect("valid")
                .as_deref(),
            Some("12")
        );

        let bad = options("flag = \"no\"\nname = \" \"\nlist = 0\nmode = \"c\"");
        let bad = reader(&bad);
        let said = |e: ConfigError| e.to_string();
        assert_eq!(
            said(bad.flag("flag", true).expect_err("not a bool")),
            "b.toml: syncs[3].options.flag: \"no\" must be true or false"
        );
        assert_eq!(
            said(bad.text("name").expect_err("blank")),
            "b.toml: syncs[3].options.name: \" \" must be a non-empty string"
        );
        assert_eq!(
            said(
                bad.numeric_id("list", "a list id")
                    .expect_err("not positive")
            ),
            "b.toml: syncs[3].options.list: 0 is not a list id"
        );
        assert_eq!(
            said(
                bad.choice("mode", 0, &[("a", 0), ("b", 1), ("d", 2)])
                    .expect_err("not a choice")
            ),
            "b.toml: syncs[3].options.mode: \"c\" must be a, b or d"
        );
        let number = options("mode = 3\nlist = \"1a\"");
        let number = reader(&number);
        assert_eq!(
            said(
                number
                    .choice("mode", 0, &[("a", 0)])
                    .expect_err("not a string")
            ),
            "b.toml: syncs[3].options.mode: 3 must be a"
        );
        assert!(number.numeric_id("list", "a list id").is_err());
    }
}
