//! Zoho CRM v8 calls on the CRM transport: credits (`Budget`, 1 per call and 1 per 10
//! records upserted), concurrent calls, the access token of `auth` on each call, one retry
//! with a new token after `INVALID_TOKEN`, and Zoho's answers classified in one place.

use std::time::Duration;

use billsync_crm_http::{Answer, Budget, Call, CrmTransport, Vendor};
use billsync_events::FailureClass;
use billsync_worker::{DeliveryError, RecordStore};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::{AccessToken, OAuthSettings, TokenSource};
use super::types::{
    DataAnswer, Field, FieldsAnswer, Layout, LayoutsAnswer, Module, Pipeline, PipelinesAnswer,
    RecordResult, Trigger, UpsertBody, User, UsersAnswer,
};

/// Zoho's limit of records per upsert.
pub const MAX_RECORDS_PER_UPSERT: usize = 100;
const CREDIT_WINDOW: Duration = Duration::from_secs(86_400);

/// Zoho CRM, as the transport sees it.
pub struct ZohoCrm;

impl Vendor for ZohoCrm {
    const DESTINATION: &'static str = "zoho";
    const NAME: &'static str = "Zoho CRM";

    /// 2xx: the answer (per-record errors are the caller's to read); 401: the token or the
    /// connection's access (`Configuration`, 401 kept so the client refreshes once on
    /// `INVALID_TOKEN`); 429 (credits or concurrency, no `Retry-After`) and 5xx: retryable;
    /// other 4xx: permanent with Zoho's code and message.
    fn classify(
        status: StatusCode,
        _headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        if status.is_success() {
            return Ok(());
        }
        let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
        // A whole answer's error, or the first record's in `data`.
        let error = parsed.get("data").and_then(|d| d.get(0)).unwrap_or(&parsed);
        let code = error
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("no code");
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason = format!("{code}: {message}");
        match status.as_u16() {
            401 => Err(DeliveryError::Permanent {
                class: FailureClass::Configuration,
                message: format!("Zoho refused the connection's access token ({reason})"),
                http_status: Some(401),
                detail: parsed,
            }),
            429 => Err(DeliveryError::Retryable {
                message: format!(
                    "Zoho is out of API credits or concurrent calls for the organisation ({reason})"
                ),
                retry_after: None,
                http_status: Some(429),
            }),
            500..=599 => Err(DeliveryError::Retryable {
                message: reason,
                retry_after: None,
                http_status: Some(status.as_u16()),
            }),
            _ => Err(DeliveryError::Permanent {
                class: FailureClass::Rejected,
                message: reason,
                http_status: Some(status.as_u16()),
                detail: parsed,
            }),
        }
    }
}

/// One Zoho CRM connection's client.
pub struct ZohoClient {
    transport: CrmTransport<ZohoCrm>,
    tokens: TokenSource,
}

impl ZohoClient {
    /// `store` keeps the shared token (the connection's records in the tokens bucket).
    pub fn new(
        connection: &str,
        settings: OAuthSettings,
        store: RecordStore,
        credits_per_day: u64,
        concurrency: usize,
        timeout: Duration,
    ) -> Self {
        // Requests name their whole URL: the API domain comes with the token.
        let transport = CrmTransport::new("", timeout)
            .for_connection(connection)
            .with_budget(Budget::rolling(credits_per_day, CREDIT_WINDOW, "credits"))
            .concurrency(concurrency);
        Self {
            transport,
            tokens: TokenSource::new(connection, settings, store, timeout),
        }
    }

    /// Keeps the credits ledger in `budgets` (NATS KV), shared by every replica: Zoho counts
    /// credits per organisation, whatever the number of workers.
    pub fn with_shared_credits(
        mut self,
        budgets: async_nats::jetstream::kv::Store,
        connection: &str,
        credits_per_day: u64,
    ) -> Self {
        let ledger = billsync_bus::SharedBudget::new(
            budgets,
            &format!("zoho.{connection}"),
            credits_per_day,
            CREDIT_WINDOW,
        );
        self.transport = self
            .transport
            .with_budget(Budget::rolling(credits_per_day, CREDIT_WINDOW, "credits").shared(ledger));
        self
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// Readiness: an error once Zoho refused the connection's OAuth credentials.
    pub fn healthcheck(&self) -> Result<(), String> {
        self.tokens.failure().map_or(Ok(()), Err)
    }

    /// Sends the call `make` builds for a token; after `INVALID_TOKEN` once more with a new one.
    async fn send(
        &self,
        make: impl Fn(&AccessToken) -> Call<'static>,
    ) -> Result<Answer, DeliveryError> {
        let token = self.tokens.token().await?;
        let call = make(&token).auth("authorization", token.header());
        match self.transport.send(call).await {
            Err(DeliveryError::Permanent {
                http_status: Some(401),
                detail,
                ..
            }) if detail.get("code").and_then(Value::as_str) == Some("INVALID_TOKEN") => {
                let token = self.tokens.replace(&token).await?;
                let call = make(&token).auth("authorization", token.header());
                self.transport.send(call).await
            }
            other => other,
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        make: impl Fn(&AccessToken) -> Call<'static>,
    ) -> Result<Option<T>, DeliveryError> {
        let answer = self.send(make).await?;
        if answer.status == StatusCode::NO_CONTENT || answer.body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&answer.body)
            .map(Some)
            .map_err(|error| {
                DeliveryError::permanent(
                    FailureClass::Rejected,
                    format!("Zoho CRM's answer was not the expected JSON: {error}"),
                )
            })
    }

    /// `POST /crm/v8/{module}/upsert` of at most 100 records: each record's result, in the
    /// order sent. `duplicate_check_fields` empty: Zoho's system check (Contacts: Email,
    /// Accounts: Account_Name, Deals: Deal_Name).
    pub async fn upsert(
        &self,
        module: Module,
        records: &[Value],
        duplicate_check_fields: &[&str],
        trigger: &[Trigger],
    ) -> Result<Vec<RecordResult>, DeliveryError> {
        assert!(
            !records.is_empty() && records.len() <= MAX_RECORDS_PER_UPSERT,
            "an upsert carries 1 to {MAX_RECORDS_PER_UPSERT} records"
        );
        let body = UpsertBody {
            data: records,
            duplicate_check_fields,
            trigger,
        };
        let cost = records.len().div_ceil(10) as u64;
        let answer: Option<DataAnswer<RecordResult>> = self
            .json(|token| {
                Call::post(format!("{}{}", token.api_domain, module.upsert_endpoint()))
                    .endpoint(module.upsert_endpoint())
                    .json(&body)
                    .cost(cost)
            })
            .await?;
        let results = answer.map(|a| a.data).unwrap_or_default();
        if results.len() != records.len() {
            return Err(DeliveryError::permanent(
                FailureClass::Rejected,
                format!(
                    "Zoho CRM answered {} results to an upsert of {} records",
                    results.len(),
                    records.len()
                ),
            ));
        }
        Ok(results)
    }

    /// `GET /crm/v8/{module}/search?email=`: every record with this email (none: 204).
    pub async fn search_by_email(
        &self,
        module: Module,
        email: &str,
    ) -> Result<Vec<Value>, DeliveryError> {
        let found: Option<DataAnswer<Value>> = self
            .json(|token| {
                let url = reqwest::Url::parse_with_params(
                    &format!("{}{}", token.api_domain, module.search_endpoint()),
                    [("email", email)],
                )
                .map_or_else(|_| String::new(), String::from);
                Call::get(url).endpoint(module.search_endpoint())
            })
            .await?;
        Ok(found.map(|f| f.data).unwrap_or_default())
    }

    /// `GET /crm/v8/{module}/search?criteria=(field:equals:value)`: every record whose
    /// `field` is `value` (none: 204). Parentheses and commas in the value are escaped as
    /// Zoho's criteria syntax asks.
    pub async fn search_equal(
        &self,
        module: Module,
        field: &str,
        value: &str,
    ) -> Result<Vec<Value>, DeliveryError> {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)")
            .replace(',', "\\,");
        let criteria = format!("({field}:equals:{escaped})");
        let found: Option<DataAnswer<Value>> = self
            .json(|token| {
                let url = reqwest::Url::parse_with_params(
                    &format!("{}{}", token.api_domain, module.search_endpoint()),
                    [("criteria", criteria.as_str())],
                )
                .map_or_else(|_| String::new(), String::from);
                Call::get(url).endpoint(module.search_endpoint())
            })
            .await?;
        Ok(found.map(|f| f.data).unwrap_or_default())
    }

    /// `GET /crm/v8/{module}/{id}`: the record, or `None` (204).
    pub async fn get(&self, module: Module, id: &str) -> Result<Option<Value>, DeliveryError> {
        let found: Option<DataAnswer<Value>> = self
            .json(|token| {
                Call::get(format!(
                    "{}/crm/v8/{}/{id}",
                    token.api_domain,
                    module.api_name()
                ))
                .endpoint(module.record_endpoint())
            })
            .await?;
        Ok(found.and_then(|f| f.data.into_iter().next()))
    }

    /// `DELETE /crm/v8/{module}/{id}`: the record's result.
    pub async fn delete(&self, module: Module, id: &str) -> Result<RecordResult, DeliveryError> {
        let answer: Option<DataAnswer<RecordResult>> = self
            .json(|token| {
                Call::delete(format!(
                    "{}/crm/v8/{}/{id}",
                    token.api_domain,
                    module.api_name()
                ))
                .endpoint(module.record_endpoint())
            })
            .await?;
        answer
            .and_then(|a| a.data.into_iter().next())
            .ok_or_else(|| {
                DeliveryError::permanent(
                    FailureClass::Rejected,
                    "Zoho CRM answered a delete without a result",
                )
            })
    }

    /// `GET /crm/v8/users?type=ActiveUsers`.
    pub async fn users(&self) -> Result<Vec<User>, DeliveryError> {
        let answer: Option<UsersAnswer> = self
            .json(|token| {
                Call::get(format!(
                    "{}/crm/v8/users?type=ActiveUsers",
                    token.api_domain
                ))
                .endpoint("/crm/v8/users")
            })
            .await?;
        Ok(answer.map(|a| a.users).unwrap_or_default())
    }

    /// `GET /crm/v8/settings/layouts?module=`.
    pub async fn layouts(&self, module: Module) -> Result<Vec<Layout>, DeliveryError> {
        let answer: Option<LayoutsAnswer> = self
            .json(|token| {
                Call::get(format!(
                    "{}/crm/v8/settings/layouts?module={}",
                    token.api_domain,
                    module.api_name()
                ))
                .endpoint("/crm/v8/settings/layouts")
            })
            .await?;
        Ok(answer.map(|a| a.layouts).unwrap_or_default())
    }

    /// `GET /crm/v8/settings/fields?module=`: the module's fields (none: 204).
    pub async fn fields(&self, module: Module) -> Result<Vec<Field>, DeliveryError> {
        let answer: Option<FieldsAnswer> = self
            .json(|token| {
                Call::get(format!(
                    "{}/crm/v8/settings/fields?module={}",
                    token.api_domain,
                    module.api_name()
                ))
                .endpoint("/crm/v8/settings/fields")
            })
            .await?;
        Ok(answer.map(|a| a.fields).unwrap_or_default())
    }

    /// `POST /crm/v8/settings/fields?module=` of one single-line text field labelled `label`
    /// that allows no duplicate values (Zoho names it after the label, `_` for spaces).
    ///
    /// The spec's request schema reuses the whole field metadata object, with its 70-odd
    /// read-only properties marked required; the body is what Zoho's "Create Custom Fields"
    /// docs list as input (`field_label` and `data_type` mandatory, `length`, `unique`).
    /// A refused field is `Rejected` with Zoho's code and message from `fields[0]`.
    pub async fn create_unique_text_field(
        &self,
        module: Module,
        label: &str,
    ) -> Result<(), DeliveryError> {
        let body = serde_json::json!({"fields": [{
            "field_label": label,
            "data_type": "text",
            "length": 255,
            "unique": {"casesensitive": "false"},
        }]});
        match self
            .send(|token| {
                Call::post(format!(
                    "{}/crm/v8/settings/fields?module={}",
                    token.api_domain,
                    module.api_name()
                ))
                .endpoint("/crm/v8/settings/fields")
                .json(&body)
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(DeliveryError::Permanent {
                class: FailureClass::Rejected,
                http_status,
                detail,
                ..
            }) if detail.pointer("/fields/0/code").is_some() => {
                let field = &detail["fields"][0];
                Err(DeliveryError::Permanent {
                    class: FailureClass::Rejected,
                    message: format!(
                        "{}: {}",
                        field["code"].as_str().unwrap_or_default(),
                        field["message"].as_str().unwrap_or_default()
                    ),
                    http_status,
                    detail,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// `GET /crm/v8/settings/pipeline?layout_id=` (pipelines belong to a layout).
    pub async fn pipelines(&self, layout_id: &str) -> Result<Vec<Pipeline>, DeliveryError> {
        let answer: Option<PipelinesAnswer> = self
            .json(|token| {
                Call::get(format!(
                    "{}/crm/v8/settings/pipeline?layout_id={layout_id}",
                    token.api_domain
                ))
                .endpoint("/crm/v8/settings/pipeline")
            })
            .await?;
        Ok(answer.map(|a| a.pipeline).unwrap_or_default())
    }
}
