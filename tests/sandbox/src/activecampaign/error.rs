//! ActiveCampaign's error responses, each with the status and body the real API sends.
//!
//! The bodies come from the response examples in `specs/activecampaign/activecampaign-v3.json`
//! where the spec has one; the few it lacks are marked "not in the spec" with the reason for
//! the shape chosen.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One error answer of the emulated API.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after_secs: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub(crate) fn body(&self) -> &Value {
        &self.body
    }

    /// 400 with `{}`: malformed JSON or a body without the resource's wrapper object. The spec
    /// answers 400 with an empty object on 97 operations (e.g. `POST /contact/sync`).
    /// The reason goes to the sandbox's log only, since AC's body says nothing.
    pub(crate) fn bad_request(reason: &str) -> Self {
        tracing::info!(reason, "Rejected a malformed ActiveCampaign request");
        Self::new(StatusCode::BAD_REQUEST, json!({}))
    }

    /// 403 for a missing or wrong `Api-Token`. The spec declares no auth failure response; AC's
    /// account docs say a bad token gets 403, and the only generic 403 body in the spec is
    /// `{"message": "Forbidden"}` (`POST /fields`, `PUT /fields/{id}`, `POST /fieldRels`).
    pub(crate) fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, json!({"message": "Forbidden"}))
    }

    /// 404 `{"message": "No Result found for <Entity> with id <id>"}`, AC's answer for an
    /// unknown id (`GET /contacts/{id}` → `Subscriber`, `GET /tags/{id}` → `Tag`,
    /// `DELETE /contactTags/{id}` → `SubscriberTag`, `GET /lists/{id}` → `_List`, ...).
    pub(crate) fn no_result(entity: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            json!({"message": format!("No Result found for {entity} with id {id}")}),
        )
    }

    /// 404 of `DELETE /contacts/{id}`, whose message the spec spells differently from the rest.
    pub(crate) fn contact_not_deleted(id: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            json!({"message": format!("No result found for contact with id {id}")}),
        )
    }

    /// 404 for a path the API does not have; the body is the spec's generic
    /// `{"message": "Not Found"}` (`GET /customObjects/schemas/{id}`).
    pub(crate) fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
    }

    /// 404 for an account the sandbox does not have. Real AC has no equivalent (an unknown
    /// `{account}.api-us1.com` does not resolve), so the message names the sandbox's view.
    pub(crate) fn unknown_account(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            json!({"message": format!("No sandbox ActiveCampaign account named \"{name}\"")}),
        )
    }

    /// 404 of `POST /contactTags` when the contact does not exist (spec example), and the same
    /// shape for a missing tag (not in the spec; by analogy).
    pub(crate) fn related_not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            json!({"errors": [{"status": 404, "title": "Not Found", "detail": format!("{what} not found")}]}),
        )
    }

    /// 422 of `POST /contactTags` without `contact` or `tag` (spec example).
    pub(crate) fn missing_attribute(attribute: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": [{
                "status": 422,
                "title": "Missing attribute",
                "source": {"pointer": format!("/data/attributes/{attribute}")}
            }]}),
        )
    }

    /// 422 `field_missing`, the shape of `POST /accounts` and `POST /contactDeals` in the spec.
    pub(crate) fn field_missing(resource: &str, attribute: &str) -> Self {
        Self::unprocessable(
            &format!("The {resource} {attribute} was not provided."),
            "",
            "field_missing",
            attribute,
        )
    }

    /// 422 `field_invalid` with a reason, shaped like the spec's `POST /accountContacts` one.
    pub(crate) fn field_invalid(attribute: &str, title: &str) -> Self {
        Self::unprocessable(title, "", "field_invalid", attribute)
    }

    /// 422 `related_missing` (spec: `PUT /contactDeals/{id}`), used when a field value or list
    /// membership names a contact, field or list that does not exist.
    pub(crate) fn related_missing(attribute: &str) -> Self {
        Self::unprocessable(
            &format!("The related {attribute} does not exist."),
            "",
            "related_missing",
            attribute,
        )
    }

    /// 422 for an absent, empty or malformed email on `POST /contact/sync`, `POST /contacts`
    /// and `PUT /contacts/{id}`. Not in the spec (it shows only 400 `{}` for sync); this is the
    /// body AC sends for an invalid address, in the spec's `errors[]` shape.
    pub(crate) fn email_invalid() -> Self {
        let mut error = Self::unprocessable(
            "Contact Email Address is not valid.",
            "",
            "email_invalid",
            "email",
        );
        error.body["errors"][0]["error"] = json!("must_be_valid_email_address");
        error
    }

    /// 422 of `POST /contacts` for an email another contact has (spec example).
    pub(crate) fn duplicate_email() -> Self {
        Self::unprocessable(
            "Email address already exists in the system",
            "",
            "duplicate",
            "email",
        )
    }

    /// 422 of `POST /fields` for a title another field has (spec example, which carries no
    /// `source`).
    pub(crate) fn duplicate_field_title(title: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": [{
                "title": "There is already a field with this title",
                "detail": format!("There is already a field named '{title}' -- choose another name"),
                "code": "duplicate"
            }]}),
        )
    }

    /// 422 for a perstag another field has. Not in the spec: AC rejects it, and the wording
    /// mirrors its duplicate-title answer.
    pub(crate) fn duplicate_perstag(perstag: &str) -> Self {
        Self::unprocessable(
            "There is already a field with this personalization tag",
            &format!("There is already a field with the tag '%{perstag}%' -- choose another tag"),
            "duplicate",
            "perstag",
        )
    }

    /// 422 for a tag name that exists (AC compares tag names case-insensitively). Not in the
    /// spec; shaped like its `duplicate` answers (`POST /accounts`, `POST /contacts`).
    pub(crate) fn duplicate_tag(tag: &str) -> Self {
        Self::unprocessable(
            &format!("A tag named \"{tag}\" already exists."),
            "",
            "duplicate",
            "tag",
        )
    }

    /// 422 for a list whose `stringid` another list has. Not in the spec; `stringid` is the
    /// list's URL slug, so AC keeps it unique. Shaped like the spec's `duplicate` answers.
    pub(crate) fn duplicate_list(stringid: &str) -> Self {
        Self::unprocessable(
            &format!("A list with the stringid \"{stringid}\" already exists."),
            "",
            "duplicate",
            "stringid",
        )
    }

    /// 422 of `POST /connections` for a `(service, externalid)` another connection has. Not in
    /// the spec; AC refuses a second connection of one external account, and the body takes
    /// the spec's `duplicate` shape.
    pub(crate) fn duplicate_connection() -> Self {
        Self::unprocessable(
            "The integration already exists in the system.",
            "",
            "duplicate",
            "externalid",
        )
    }

    /// 422 for an e-commerce customer whose `(connectionid, externalid)` is taken. Not in the
    /// spec; shaped like its `duplicate` answers.
    pub(crate) fn duplicate_ecom_customer() -> Self {
        Self::unprocessable(
            "The customer already exists in the system.",
            "",
            "duplicate",
            "externalid",
        )
    }

    /// 422 for an order whose `(connectionid, externalid)` (or cart whose
    /// `externalcheckoutid`) is taken. Not in the spec; shaped like its `duplicate` answers.
    pub(crate) fn duplicate_ecom_order() -> Self {
        Self::unprocessable(
            "The order already exists in the system.",
            "",
            "duplicate",
            "externalid",
        )
    }

    /// 400 of `POST /import/bulk_import` for a request that did not pass validation: nothing
    /// is queued. The spec's "Contact Create Fail" example: `failureReasons` holds
    /// `{contact, failureReason}` per failing contact (`contact` is its index in
    /// `contacts`), or plain strings for what is wrong with the request as a whole (the
    /// "Other Error" shape).
    pub(crate) fn import_invalid(reasons: Vec<Value>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            json!({
                "success": 0,
                "message": "JSON payload did not pass validation. Please fix failure Reasons and retry. The import was not queued for processing.",
                "failureReasons": reasons
            }),
        )
    }

    /// 400 of `POST /import/bulk_import` past the importer's own rate limit (the spec's "Other
    /// Error" example; AC's docs: 100 imports per minute, 20 for single-contact ones).
    pub(crate) fn import_rate_limited(per_minute: u32, single_contact: bool) -> Self {
        let what = if single_contact {
            "single-contact imports"
        } else {
            "imports"
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            json!({
                "success": 0,
                "message": "Rate limit exceeded.",
                "failureReasons": [format!(
                    "Up to {per_minute} {what} may be requested per minute.Please batch contacts into larger requests, or retry this request in a minute."
                )]
            }),
        )
    }

    /// 400 of `GET /import/info` without a `batchId` (spec example).
    pub(crate) fn batch_id_required() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            json!({"success": 0, "message": "'batchId' is a required field."}),
        )
    }

    /// 429 once an account's requests-per-second budget is spent. The spec declares no 429;
    /// AC's rate-limit page says 429 with `Retry-After` in whole seconds. The body is not
    /// documented, so it is a plain message.
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({"message": "Too Many Requests"}),
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }

    /// 500 injected by `AcFaults::fail_next`.
    pub(crate) fn injected_failure() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "Internal Server Error (injected by the sandbox)"}),
        )
    }

    fn unprocessable(title: &str, detail: &str, code: &str, attribute: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": [{
                "title": title,
                "detail": detail,
                "code": code,
                "source": {"pointer": format!("/data/attributes/{attribute}")}
            }]}),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::kit::error_reply(self.status, self.body, self.retry_after_secs)
    }
}
