//! The unique custom fields billsync matches records by — `Billsync_Customer_Id` on
//! Contacts, `Billsync_Subscription_Id` on Deals when a sync writes deals — checked against
//! Zoho's field metadata when the worker starts and created when missing. An OAuth client
//! that may not create them stops the start with the field, the module and how to create it.

use crate::api::Module;
use crate::contacts::CUSTOMER_ID_FIELD;
use crate::deals::SUBSCRIPTION_ID_FIELD;
use crate::destination::ZohoDestination;
use billsync_events::FailureClass;
use billsync_worker::DeliveryError;
use serde_json::Value;

/// Zoho's answers that mean the OAuth client may not create fields: the refresh token lacks
/// the scope, or its user's profile lacks the customization permission.
const NOT_ALLOWED: &[&str] = &["OAUTH_SCOPE_MISMATCH", "NO_PERMISSION"];

impl ZohoDestination {
    /// Makes sure the link fields exist, creating those missing (once per process; a
    /// delivery tries again until it has once succeeded). A field Zoho will not let billsync
    /// create is a configuration error saying how to create it by hand.
    pub async fn ensure_link_fields(&self) -> Result<(), DeliveryError> {
        self.link_fields
            .get_or_try_init(|| async {
                let mut wanted = vec![(Module::Contacts, CUSTOMER_ID_FIELD)];
                if self.writes_deals() {
                    wanted.push((Module::Deals, SUBSCRIPTION_ID_FIELD));
                }
                for (module, api_name) in wanted {
                    self.ensure_link_field(module, api_name).await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn ensure_link_field(
        &self,
        module: Module,
        api_name: &'static str,
    ) -> Result<(), DeliveryError> {
        let has = |fields: &[crate::api::Field]| fields.iter().any(|f| f.api_name == api_name);
        if has(&self.zoho.fields(module).await?) {
            return Ok(());
        }
        // Zoho names a new field after its label, `_` for each space.
        let label = api_name.replace('_', " ");
        let created = self.zoho.create_unique_text_field(module, &label).await;
        match created {
            Ok(()) => {
                tracing::info!(connection = %self.connection_name(), module = module.api_name(), field = api_name,
                    "Created the Zoho CRM custom field billsync matches records by.");
                Ok(())
            }
            Err(error) => {
                // Another replica may have created it meanwhile (DUPLICATE_DATA).
                if has(&self.zoho.fields(module).await?) {
                    return Ok(());
                }
                Err(cannot_create(module, api_name, &label, error))
            }
        }
    }
}

/// The start's error for a link field billsync could not create.
fn cannot_create(
    module: Module,
    api_name: &str,
    label: &str,
    error: DeliveryError,
) -> DeliveryError {
    let detail = match &error {
        DeliveryError::Permanent { detail, .. } => detail.clone(),
        _ => Value::Null,
    };
    let code = detail.get("code").and_then(Value::as_str).unwrap_or("");
    let why = if NOT_ALLOWED.contains(&code) {
        format!(
            "the OAuth client may not create it ({code}): give the refresh token the scope \
             ZohoCRM.settings.fields.ALL (or ZohoCRM.settings.ALL), or create it in Zoho CRM"
        )
    } else if matches!(error, DeliveryError::Retryable { .. }) {
        return error;
    } else {
        format!("Zoho CRM refused to create it ({error}); create it in Zoho CRM")
    };
    DeliveryError::Permanent {
        class: FailureClass::Configuration,
        message: format!(
            "the {module} module has no field {api_name}, which billsync matches records by, and \
             {why}: Setup → Customization → Modules and Fields → {module} → a Single Line field \
             labelled \"{label}\" with \"Do not allow duplicate values\"",
            module = module.api_name()
        ),
        http_status: None,
        detail,
    }
}
