//! Companies → Accounts (seed 003): a customer's company is the account its contact and
//! deals point to; one with no matching account is created, or the field left empty, as
//! the sync says. Accounts found are remembered by company name, so a company costs Zoho
//! one call, not one per event.

use crate::api::Module;
use crate::destination::{refused, ZohoDestination};
use crate::options::MissingAccount;
use crate::sync_rules::SyncRules;
use serde_json::{json, Value};

fn account_record(company: &str) -> String {
    format!("account/{}", company.to_lowercase())
}

impl ZohoDestination {
    /// The id of `company`'s account: remembered, found, or created when the sync says so.
    pub(crate) async fn account_for(
        &self,
        rules: &SyncRules,
        company: &str,
    ) -> Result<Option<String>, billsync_worker::DeliveryError> {
        let record = account_record(company);
        if let Some(id) = self.records.get_text(&record).await? {
            return Ok(Some(id));
        }
        let id = match rules.options.missing_account {
            MissingAccount::Create => {
                // Zoho's system duplicate check of Accounts is Account_Name: an account of
                // that name is matched, not created again.
                let result = self
                    .upsert(
                        rules,
                        Module::Accounts,
                        &[],
                        json!({ "Account_Name": company }),
                    )
                    .await?;
                match result.id() {
                    Some(id) if result.is_success() => Some(id.to_string()),
                    _ => return Err(refused(Module::Accounts, &result)),
                }
            }
            MissingAccount::LeaveEmpty => self
                .zoho
                .search_equal(Module::Accounts, "Account_Name", company)
                .await?
                .first()
                .and_then(|a| a.get("id").and_then(Value::as_str))
                .map(str::to_string),
        };
        if let Some(id) = &id {
            self.records.put_text(&record, id).await?;
        }
        Ok(id)
    }

    /// Forgets the account remembered for `company` (deleted in Zoho since).
    pub(crate) async fn forget_account(
        &self,
        company: &str,
    ) -> Result<(), billsync_worker::DeliveryError> {
        self.records.delete(&account_record(company)).await
    }
}
