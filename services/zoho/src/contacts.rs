//! Customers → Contacts (seed 003): the mapped fields, the `Last_Name` fallback, the sync
//! rules for missing and existing contacts, the company's account, and the duplicate-email
//! error that names the contacts sharing the email.
//!
//! Contacts are upserted with the duplicate check `Billsync_Customer_Id` (a unique custom
//! field holding `{source connection}/{customer id}`), then `Email` (Zoho's system check):
//! a customer's own contact is found even after its email changed, and an existing contact
//! with the customer's email is matched as the seed's rules say.

use crate::api::{Module, RecordResult};
use crate::destination::{refused, unchanged, ZohoDestination};
use crate::options::{ExistingContact, MissingContact};
use crate::sync_rules::SyncRules;
use billsync_events::FailureClass;
use billsync_worker::{DeliveryError, Pass};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The custom field (unique) holding the source customer a contact was written for.
pub const CUSTOMER_ID_FIELD: &str = "Billsync_Customer_Id";
const CONTACT_CHECK: &[&str] = &[CUSTOMER_ID_FIELD, "Email"];

/// What billsync last wrote for a customer's contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContactLink {
    pub(crate) contact_id: String,
    #[serde(default)]
    pub(crate) account_id: Option<String>,
    /// The record as sent, so a live event that changes nothing writes nothing.
    #[serde(default)]
    pub(crate) written: Value,
}

/// A customer's contact after a write: its id and its account's, when there are.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContactOutcome {
    pub(crate) contact_id: Option<String>,
    pub(crate) account_id: Option<String>,
    /// Why there is no contact (a sync rule said skip).
    pub(crate) skipped: Option<String>,
}

pub(crate) fn link_record(source_connection: &str, customer_id: &str) -> String {
    format!("contact/{source_connection}/{customer_id}")
}

/// `Last_Name` is mandatory in Zoho while any customer field may be missing: the mapped
/// last name, else the first name, the company, the email's local part, the customer id.
pub(crate) fn last_name(fields: &BTreeMap<String, Value>, customer_id: &str) -> String {
    let text = |field: &str| {
        fields
            .get(field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    text("Last_Name")
        .or_else(|| text("First_Name"))
        .or_else(|| text("Account_Name"))
        .or_else(|| {
            text("Email")
                .and_then(|e| e.split('@').next().map(str::to_string))
                .filter(|l| !l.is_empty())
        })
        .unwrap_or_else(|| customer_id.to_string())
}

fn is_blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(_) => false,
    }
}

impl ZohoDestination {
    /// Writes the contact of customer `customer_id` of `source_connection` from `fields` (the
    /// mapping's output; `Account_Name` is the company) by the sync's rules.
    pub(crate) async fn write_contact(
        &self,
        rules: &SyncRules,
        source_connection: &str,
        customer_id: &str,
        mut fields: BTreeMap<String, Value>,
        pass: Pass,
    ) -> Result<ContactOutcome, DeliveryError> {
        let record_key = link_record(source_connection, customer_id);
        let last_name = last_name(&fields, customer_id);
        fields.insert("Last_Name".into(), Value::String(last_name));
        let company = fields
            .remove("Account_Name")
            .and_then(|c| c.as_str().map(str::trim).map(str::to_string))
            .filter(|c| !c.is_empty());
        if let Some(email) = fields.get_mut("Email") {
            if let Some(text) = email.as_str() {
                *email = Value::String(text.trim().to_string());
            }
        }
        let mut record: Map<String, Value> = fields.into_iter().collect();
        record.insert(
            CUSTOMER_ID_FIELD.into(),
            Value::String(format!("{source_connection}/{customer_id}")),
        );
        if let Some(company) = &company {
            record.insert("$company".into(), Value::String(company.clone()));
        }
        let wanted = Value::Object(record.clone());
        let stored: Option<ContactLink> = self.records.get(&record_key).await?;
        if let Some(link) = &stored {
            if unchanged(pass, Some(&link.written), &wanted) {
                return Ok(ContactOutcome {
                    contact_id: Some(link.contact_id.clone()),
                    account_id: link.account_id.clone(),
                    skipped: None,
                });
            }
        }
        record.remove("$company");

        let options = &rules.options;
        let plain = options.missing_contact == MissingContact::Create
            && options.existing_contact == ExistingContact::Overwrite;
        let mut existing = None;
        if !plain {
            existing = self.existing_contact(&record, stored.as_ref()).await?;
            match (&existing, options.missing_contact, options.existing_contact) {
                (None, MissingContact::Skip, _) => {
                    return Ok(ContactOutcome {
                        skipped: Some(format!(
                            "no Zoho contact matches customer {customer_id} and the sync's \
                             on_missing_contact is \"skip\""
                        )),
                        ..ContactOutcome::default()
                    })
                }
                (Some(found), _, ExistingContact::Skip) => {
                    let contact_id = found.get("id").and_then(Value::as_str).map(str::to_string);
                    return Ok(ContactOutcome {
                        account_id: found
                            .pointer("/Account_Name/id")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        contact_id,
                        skipped: None,
                    });
                }
                (Some(found), _, ExistingContact::UpdateBlanks) => {
                    record.retain(|field, _| {
                        field == "Email"
                            || field == CUSTOMER_ID_FIELD
                            || is_blank(found.get(field.as_str()))
                    });
                }
                _ => {}
            }
        }
        let blank_account = existing.as_ref().is_none_or(|found| {
            is_blank(found.get("Account_Name"))
                || found
                    .get("Account_Name")
                    .is_some_and(|a| a.get("id").is_none())
        });
        let fill_account = options.existing_contact != ExistingContact::UpdateBlanks
            || existing.is_none()
            || blank_account;
        let mut account_id = None;
        if let (Some(company), true) = (&company, fill_account) {
            account_id = self.account_for(rules, company).await?;
            if let Some(id) = &account_id {
                record.insert("Account_Name".into(), json!({ "id": id }));
            }
        }
        let result = self
            .upsert(
                rules,
                Module::Contacts,
                CONTACT_CHECK,
                Value::Object(record),
            )
            .await?;
        let email = wanted.get("Email").and_then(Value::as_str);
        let contact_id = self
            .contact_result(&result, company.as_deref(), email)
            .await?;
        self.records
            .put(
                &record_key,
                &ContactLink {
                    contact_id: contact_id.clone(),
                    account_id: account_id.clone(),
                    written: wanted,
                },
            )
            .await?;
        Ok(ContactOutcome {
            contact_id: Some(contact_id),
            account_id,
            skipped: None,
        })
    }

    /// The contact the sync rules look at: the one billsync wrote for the customer, else the
    /// one with the customer's email; two with that email are an error naming both.
    async fn existing_contact(
        &self,
        record: &Map<String, Value>,
        stored: Option<&ContactLink>,
    ) -> Result<Option<Value>, DeliveryError> {
        if let Some(link) = stored {
            if let Some(found) = self.zoho.get(Module::Contacts, &link.contact_id).await? {
                return Ok(Some(found));
            }
        }
        let Some(email) = record.get("Email").and_then(Value::as_str) else {
            return Ok(None);
        };
        let found = self.zoho.search_by_email(Module::Contacts, email).await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            _ => Err(duplicate_email(email, &found)),
        }
    }

    /// The contact's id from its upsert result; Zoho's refusal as a sync error. A duplicate
    /// email names every contact that has it; an account deleted in Zoho since billsync
    /// found it is forgotten and the event retried.
    async fn contact_result(
        &self,
        result: &RecordResult,
        company: Option<&str>,
        email: Option<&str>,
    ) -> Result<String, DeliveryError> {
        if let (true, Some(id)) = (result.is_success(), result.id()) {
            return Ok(id.to_string());
        }
        if result.code == "DUPLICATE_DATA" {
            if let Some(email) = email {
                let found = self.zoho.search_by_email(Module::Contacts, email).await?;
                if found.len() > 1 {
                    return Err(duplicate_email(email, &found));
                }
            }
            return Err(duplicate_record_error(result));
        }
        if result.code == "INVALID_DATA" && result.field() == Some("Account_Name") {
            if let Some(company) = company {
                self.forget_account(company).await?;
            }
            return Err(DeliveryError::Retryable {
                message: "the contact's account is no longer in Zoho CRM; finding it again".into(),
                retry_after: None,
                http_status: None,
            });
        }
        Err(refused(Module::Contacts, result))
    }
}

/// Zoho found several records for the duplicate check: the error names the one it gave.
fn duplicate_record_error(result: &RecordResult) -> DeliveryError {
    let named = result
        .details
        .pointer("/duplicate_record/id")
        .and_then(Value::as_str)
        .unwrap_or("(not named)");
    DeliveryError::Permanent {
        class: FailureClass::Rejected,
        message: format!(
            "the customer matches several Zoho CRM contacts ({} and others); merge them in \
             Zoho CRM, then retry",
            named
        ),
        http_status: None,
        detail: serde_json::to_value(result).unwrap_or_default(),
    }
}

/// Two or more contacts share `email`: a sync error naming them, never a guess.
pub(crate) fn duplicate_email(email: &str, found: &[Value]) -> DeliveryError {
    let ids: Vec<&str> = found
        .iter()
        .filter_map(|c| c.get("id").and_then(Value::as_str))
        .collect();
    DeliveryError::Permanent {
        class: FailureClass::Rejected,
        message: format!(
            "the email {email} is not unique in Zoho CRM: contacts {} share it; merge them in \
             Zoho CRM, then retry",
            ids.join(", ")
        ),
        http_status: None,
        detail: json!({"code": "DUPLICATE_DATA", "email": email, "contacts": ids}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn the_last_name_falls_back_through_first_name_company_email_and_id() {
        assert_eq!(
            last_name(
                &fields(&[("Last_Name", "Burns"), ("First_Name", "Ann")]),
                "c1"
            ),
            "Burns"
        );
        assert_eq!(
            last_name(&fields(&[("Last_Name", " "), ("First_Name", "Ann")]), "c1"),
            "Ann"
        );
        assert_eq!(
            last_name(&fields(&[("Account_Name", "Acme")]), "c1"),
            "Acme"
        );
        assert_eq!(
            last_name(&fields(&[("Email", "ann.b@acme.io")]), "c1"),
            "ann.b"
        );
        assert_eq!(last_name(&fields(&[]), "c1"), "c1");
    }
}
