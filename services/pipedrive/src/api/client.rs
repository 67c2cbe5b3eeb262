//! The Pipedrive client: typed calls over the CRM transport, which paces them at the token's
//! burst limit and charges their token cost against the company's daily budget (a ledger in
//! NATS KV shared by every replica), and Pipedrive's one `classify`.

use std::time::{Duration, SystemTime};

use billsync_config::PipedriveConnection;
use billsync_crm_http::{reword, Budget, Call, CrmTransport, RateLimiter, Vendor};
use billsync_events::FailureClass;
use billsync_worker::DeliveryError;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::*;

/// Pipedrive's budget is per day; a rolling day never spends more than the allowance in any
/// calendar day, whatever hour the company's midnight falls at.
pub const PIPEDRIVE_BUDGET_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Searches per second: Pipedrive allows 10 per 2 s on every plan. Paced at 8 per 2 s, as
/// a request leaves later than its slot whenever the machine is busy, and at exactly 5/s
/// one late search puts 11 in some 2 s window (a 429 that pauses the whole connection).
const SEARCHES_PER_SECOND: u32 = 4;

pub struct PipedriveApi;

impl Vendor for PipedriveApi {
    const DESTINATION: &'static str = "pipedrive";
    const NAME: &'static str = "Pipedrive";

    fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError> {
        classify(status, headers, body)
    }
}

/// What a call costs in tokens: each operation's `x-token-cost` in the v2 spec (get 1, list
/// 10, pipelines and stages 5, write 5, delete 3, search 20), and the v1 spec's for notes and
/// users. `endpoint` is the transport's template, e.g. `/api/v2/persons/{id}`.
pub fn token_cost(method: &Method, endpoint: &str) -> u64 {
    if let Some(v1) = endpoint.strip_prefix("/v1") {
        return match (method.as_str(), v1) {
            ("POST" | "PUT", _) => 10,
            (_, "/users") => 20,
            _ => 2,
        };
    }
    let path = endpoint.strip_prefix("/api/v2").unwrap_or(endpoint);
    match method.as_str() {
        "GET" if path.ends_with("/search") => 20,
        "GET" if path == "/pipelines" || path == "/stages" => 5,
        "GET" if path.ends_with("/{id}") => 1,
        "GET" => 10,
        "DELETE" => 3,
        _ => 5,
    }
}

/// Pipedrive's answers: a 2xx with `success: false` is a refusal; 401 and a JSON 403 are the
/// token's; 429 waits for `Retry-After` (else `x-ratelimit-reset`); a 403 HTML page follows
/// a spent daily budget; other 4xx are permanent with Pipedrive's `error` and `error_info`.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError> {
    let detail: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let reason = describe(&detail, body);
    let code = Some(status.as_u16());
    if status.is_success() {
        if detail.get("success") == Some(&Value::Bool(false)) {
            return Err(DeliveryError::Permanent {
                class: FailureClass::Rejected,
                message: format!("Pipedrive answered success: false: {reason}"),
                http_status: code,
                detail,
            });
        }
        return Ok(());
    }
    let html = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    match status.as_u16() {
        429 => {
            let header = |name| {
                headers
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            };
            // `x-ratelimit-*` describe the burst window only, and come on every answer: a 429
            // while the window still has room is the daily budget's.
            let burst_spent = header("x-ratelimit-remaining").is_none_or(|r| r.trim() == "0");
            let retry_after = header(RETRY_AFTER.as_str())
                .or_else(|| header("x-ratelimit-reset").filter(|_| burst_spent))
                .and_then(|v| billsync_bus::parse_retry_after(v, SystemTime::now()));
            let why = if retry_after.is_some() {
                "over the burst limit"
            } else {
                // No header reports the daily budget: this 429 is the budget's.
                "over the company's daily token budget (billsync's ledger disagrees with \
                 Pipedrive's: another app may be spending the company's tokens)"
            };
            Err(DeliveryError::Retryable {
                message: format!("{why}: {reason}"),
                retry_after,
                http_status: code,
            })
        }
        403 if html => Err(DeliveryError::Retryable {
            message: "Pipedrive blocks the company's calls: its daily token budget is spent".into(),
            retry_after: None,
            http_status: code,
        }),
        401 | 403 => Err(DeliveryError::Permanent {
            class: FailureClass::Configuration,
            message: format!(
                "Pipedrive refused the connection's API token; check it and that its user may \
                 do this ({reason})"
            ),
            http_status: code,
            detail,
        }),
        400..=499 => Err(DeliveryError::Permanent {
            class: FailureClass::Rejected,
            message: reason,
            http_status: code,
            detail,
        }),
        _ => Err(DeliveryError::Retryable {
            message: format!("Pipedrive failed: {reason}"),
            retry_after: None,
            http_status: code,
        }),
    }
}

/// `error` and `error_info` of Pipedrive's error body, else the start of the body.
fn describe(detail: &Value, body: &[u8]) -> String {
    match detail.get("error").and_then(Value::as_str) {
        Some(error) => match detail.get("error_info").and_then(Value::as_str) {
            Some(info) => format!("{error} ({info})"),
            None => error.to_string(),
        },
        None => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            if text.is_empty() {
                "no body".into()
            } else {
                text
            }
        }
    }
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct PipedriveClient {
    /// To the company's domain; paths carry `/api/v2` or `/v1`.
    transport: CrmTransport<PipedriveApi>,
    /// Searches have their own window (10 per 2 s) inside the burst limit, paced in this
    /// process unless [`Self::with_shared_limiters`] shares the pace with every replica.
    searches: RateLimiter,
    shared_searches: Option<billsync_bus::SharedRateLimiter>,
}

impl PipedriveClient {
    /// A client of the company at `base_url` (`https://{company}.pipedrive.com`), paced at
    /// `requests_per_2s` and charging `budget` (see [`Self::budget`], [`Self::shared_budget`]).
    pub fn new(
        base_url: &str,
        token: SecretString,
        requests_per_2s: u32,
        budget: Budget,
        timeout: Duration,
    ) -> Self {
        Self {
            transport: CrmTransport::new(base_url, timeout)
                .auth_header("x-api-token", token)
                .rate((requests_per_2s / 2).max(1))
                .with_budget(budget),
            searches: RateLimiter::per_second(SEARCHES_PER_SECOND),
            shared_searches: None,
        }
    }

    /// The client of a configured connection, its daily budget kept in the shared `budgets`
    /// bucket under the connection's name.
    pub fn from_config(
        connection: &PipedriveConnection,
        budgets: async_nats::jetstream::kv::Store,
        timeout: Duration,
    ) -> Self {
        let budget = Self::shared_budget(budgets, &connection.name, connection.daily_token_budget);
        Self::new(
            &connection.base_url,
            SecretString::from(connection.api_token.expose().to_string()),
            connection.requests_per_2s,
            budget,
            timeout,
        )
        .for_connection(&connection.name)
    }

    /// `daily_tokens` per rolling day in this process alone, priced by [`token_cost`].
    pub fn budget(daily_tokens: u64) -> Budget {
        Budget::rolling(daily_tokens, PIPEDRIVE_BUDGET_WINDOW, "tokens").costing(token_cost)
    }

    /// `daily_tokens` per rolling day for the connection, in a ledger every replica shares.
    pub fn shared_budget(
        budgets: async_nats::jetstream::kv::Store,
        connection: &str,
        daily_tokens: u64,
    ) -> Budget {
        let key = format!("pipedrive.{connection}");
        Self::budget(daily_tokens).shared(billsync_bus::SharedBudget::new(
            budgets,
            &key,
            daily_tokens,
            PIPEDRIVE_BUDGET_WINDOW,
        ))
    }

    /// Names the destination connection in metrics and spans.
    pub fn for_connection(mut self, name: &str) -> Self {
        self.transport = self.transport.for_connection(name);
        self
    }

    /// Spaces requests, and searches within them, by rates shared with every replica: the
    /// burst and search windows are per token, however many workers use it. `rate_limits` is
    /// the shared bucket; the keys are `pipedrive.{connection}` and its `.search`.
    pub fn with_shared_limiters(
        mut self,
        rate_limits: async_nats::jetstream::kv::Store,
        connection: &str,
        requests_per_2s: u32,
    ) -> Self {
        let key = format!("pipedrive.{connection}");
        self.transport = self
            .transport
            .with_shared_limiter(billsync_bus::SharedRateLimiter::new(
                rate_limits.clone(),
                &key,
                (requests_per_2s / 2).max(1),
            ));
        self.shared_searches = Some(billsync_bus::SharedRateLimiter::new(
            rate_limits,
            &format!("{key}.search"),
            SEARCHES_PER_SECOND,
        ));
        self
    }

    async fn call<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, DeliveryError> {
        let envelope: Envelope<T> = self.transport.json(call).await?;
        Ok(envelope.data)
    }

    /// A GET by id; `None` when Pipedrive has no such record (purged, or merged away).
    async fn get_by_id<T: DeserializeOwned>(
        &self,
        path: String,
    ) -> Result<Option<T>, DeliveryError> {
        match self.call(Call::get(path)).await {
            Ok(found) => Ok(Some(found)),
            Err(DeliveryError::Permanent {
                http_status: Some(404),
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn search(
        &self,
        collection: &str,
        query: String,
    ) -> Result<Vec<SearchHit>, DeliveryError> {
        match &self.shared_searches {
            Some(shared) => shared.acquire().await,
            None => self.searches.acquire().await,
        }
        let data: SearchData = self
            .call(Call::get(format!("/api/v2/{collection}/search?{query}")))
            .await?;
        Ok(data.items.into_iter().map(|i| i.item).collect())
    }

    /// `GET /api/v2/persons/search?fields=email&exact_match=true`: the live persons with this
    /// email, compared case-insensitively (20 tokens).
    pub async fn find_persons_by_email(
        &self,
        email: &str,
    ) -> Result<Vec<SearchHit>, DeliveryError> {
        let hits = self
            .search(
                "persons",
                format!(
                    "term={}&fields=email&exact_match=true&limit=500",
                    encode(email)
                ),
            )
            .await?;
        Ok(hits
            .into_iter()
            .filter(|hit| hit.emails.iter().any(|e| e.eq_ignore_ascii_case(email)))
            .collect())
    }

    /// The live persons whose custom fields hold exactly `value` (a unique id other than the
    /// email, such as the billing customer id).
    pub async fn find_persons_by_custom_field(
        &self,
        value: &str,
    ) -> Result<Vec<SearchHit>, DeliveryError> {
        self.search(
            "persons",
            format!(
                "term={}&fields=custom_fields&exact_match=true&limit=500",
                encode(value)
            ),
        )
        .await
    }

    /// `GET /api/v2/persons/{id}` (1 token); deleted persons come back with `is_deleted`.
    pub async fn get_person(&self, id: u64) -> Result<Option<Person>, DeliveryError> {
        self.get_by_id(format!("/api/v2/persons/{id}")).await
    }

    pub async fn create_person(&self, person: &PersonInput) -> Result<Person, DeliveryError> {
        self.call(Call::post("/api/v2/persons").json(person)).await
    }

    /// `PATCH /api/v2/persons/{id}`: only what `person` sets changes.
    pub async fn update_person(
        &self,
        id: u64,
        person: &PersonInput,
    ) -> Result<Person, DeliveryError> {
        self.call(Call::patch(format!("/api/v2/persons/{id}")).json(person))
            .await
    }

    /// The live organizations named exactly `name` (case-insensitive).
    pub async fn find_organizations_by_name(
        &self,
        name: &str,
    ) -> Result<Vec<SearchHit>, DeliveryError> {
        let hits = self
            .search(
                "organizations",
                format!(
                    "term={}&fields=name&exact_match=true&limit=500",
                    encode(name)
                ),
            )
            .await?;
        Ok(hits
            .into_iter()
            .filter(|hit| {
                hit.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .collect())
    }

    pub async fn get_organization(&self, id: u64) -> Result<Option<Organization>, DeliveryError> {
        self.get_by_id(format!("/api/v2/organizations/{id}")).await
    }

    pub async fn create_organization(
        &self,
        organization: &OrganizationInput,
    ) -> Result<Organization, DeliveryError> {
        self.call(Call::post("/api/v2/organizations").json(organization))
            .await
    }

    pub async fn update_organization(
        &self,
        id: u64,
        organization: &OrganizationInput,
    ) -> Result<Organization, DeliveryError> {
        self.call(Call::patch(format!("/api/v2/organizations/{id}")).json(organization))
            .await
    }

    /// The live deals titled exactly `title` (case-insensitive; 20 tokens).
    pub async fn find_deals_by_title(&self, title: &str) -> Result<Vec<SearchHit>, DeliveryError> {
        let hits = self
            .search(
                "deals",
                format!(
                    "term={}&fields=title&exact_match=true&limit=500",
                    encode(title)
                ),
            )
            .await?;
        Ok(hits
            .into_iter()
            .filter(|hit| {
                hit.title
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(title))
            })
            .collect())
    }

    pub async fn get_deal(&self, id: u64) -> Result<Option<Deal>, DeliveryError> {
        self.get_by_id(format!("/api/v2/deals/{id}")).await
    }

    pub async fn create_deal(&self, deal: &DealInput) -> Result<Deal, DeliveryError> {
        self.call(Call::post("/api/v2/deals").json(deal)).await
    }

    pub async fn update_deal(&self, id: u64, deal: &DealInput) -> Result<Deal, DeliveryError> {
        self.call(Call::patch(format!("/api/v2/deals/{id}")).json(deal))
            .await
    }

    /// `POST /v1/notes` (v2 has no notes).
    pub async fn create_note(&self, note: &NoteInput) -> Result<Note, DeliveryError> {
        self.call(Call::post("/v1/notes").json(note)).await
    }

    /// `GET /v1/users` (20 tokens).
    pub async fn users(&self) -> Result<Vec<User>, DeliveryError> {
        self.call(Call::get("/v1/users")).await
    }

    pub async fn pipelines(&self) -> Result<Vec<Pipeline>, DeliveryError> {
        self.call(Call::get("/api/v2/pipelines?limit=500")).await
    }

    pub async fn stages(&self, pipeline_id: u64) -> Result<Vec<Stage>, DeliveryError> {
        self.call(Call::get(format!(
            "/api/v2/stages?pipeline_id={pipeline_id}&limit=500"
        )))
        .await
    }

    /// `GET /api/v2/{entity}Fields` (10 tokens): standard and custom fields.
    pub async fn fields(&self, entity: Entity) -> Result<Vec<Field>, DeliveryError> {
        self.call(Call::get(format!("{}?limit=500", entity.fields_path())))
            .await
    }

    /// `POST /api/v2/{entity}Fields`: a custom field; its key is in the answer.
    pub async fn create_field(
        &self,
        entity: Entity,
        field: &FieldInput,
    ) -> Result<Field, DeliveryError> {
        self.call(Call::post(entity.fields_path()).json(field))
            .await
            .map_err(|error| {
                reword(error, |m| {
                    format!("creating the custom field {:?}: {m}", field.field_name)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_the_specs_x_token_cost() {
        assert_eq!(token_cost(&Method::GET, "/api/v2/persons/search"), 20);
        assert_eq!(token_cost(&Method::GET, "/api/v2/persons/{id}"), 1);
        assert_eq!(token_cost(&Method::PATCH, "/api/v2/persons/{id}"), 5);
        assert_eq!(token_cost(&Method::POST, "/api/v2/deals"), 5);
        assert_eq!(token_cost(&Method::DELETE, "/api/v2/deals/{id}"), 3);
        assert_eq!(token_cost(&Method::GET, "/api/v2/dealFields"), 10);
        assert_eq!(token_cost(&Method::GET, "/api/v2/stages"), 5);
        assert_eq!(token_cost(&Method::POST, "/v1/notes"), 10);
        assert_eq!(token_cost(&Method::GET, "/v1/users"), 20);
    }

    #[test]
    fn a_2xx_with_success_false_is_a_refusal() {
        // The emulator never answers so; Pipedrive's v1 endpoints can.
        let body =
            br#"{"success":false,"error":"Deal not found","error_info":"see docs","data":null}"#;
        let error = classify(StatusCode::OK, &HeaderMap::new(), body).expect_err("refused");
        assert!(
            matches!(
                &error,
                DeliveryError::Permanent {
                    class: FailureClass::Rejected,
                    http_status: Some(200),
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("Deal not found (see docs)"),
            "{error}"
        );
        assert!(classify(
            StatusCode::OK,
            &HeaderMap::new(),
            br#"{"success":true,"data":{}}"#
        )
        .is_ok());
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(encode("a+b@x.io"), "a%2Bb%40x.io");
        assert_eq!(encode("Acme & Co"), "Acme%20%26%20Co");
    }

    #[test]
    fn custom_field_values_serialise_as_v2_types_them() {
        let date = chrono::NaiveDate::from_ymd_opt(2025, 2, 1).expect("a date");
        let values = serde_json::json!([
            FieldValue::Number(49.0),
            FieldValue::Money {
                value: 49.0,
                currency: "EUR".into()
            },
            FieldValue::Date(date),
            FieldValue::Options(vec![3, 4]),
            FieldValue::Clear,
        ]);
        assert_eq!(
            values,
            serde_json::json!([49.0, {"value": 49.0, "currency": "EUR"}, "2025-02-01", [3, 4], null])
        );
    }
}
