//! A small typed client for ActiveCampaign v3 with one `classify` for every response; the
//! kit's CRM transport paces, times and reports its requests.

use super::turns::Turns;
use super::types::*;
use billsync_crm_http::{Call, CrmTransport, Vendor};
use billsync_events::FailureClass;
use billsync_worker::DeliveryError;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What billsync knows of an e-commerce record before writing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior<'a> {
    /// AC has it under this id, as far as billsync remembers.
    Id(&'a str),
    /// billsync never started creating it: create at once (a 422 duplicate is still read
    /// again, so a record someone else created is updated, not doubled).
    None,
    /// A create may have happened (an attempt died before its result was remembered, or
    /// the memory was lost): look it up by external id first.
    Unknown,
}

/// ActiveCampaign's v3 API, as the transport knows it.
pub struct ActiveCampaignApi;

impl Vendor for ActiveCampaignApi {
    const DESTINATION: &'static str = "activecampaign";
    const NAME: &'static str = "ActiveCampaign";

    fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError> {
        classify(status, headers, body)
    }
}

pub struct ActiveCampaignClient {
    /// To `{base_url}/api/3`, at the account's rate.
    transport: CrmTransport<ActiveCampaignApi>,
    /// Tag name → id; tags are never deleted by billsync, so the cache never goes stale
    /// in a way that matters (a deleted tag makes contactTags fail, and the entry is dropped).
    tags: Mutex<HashMap<String, String>>,
    /// Serialises the lookup-or-create of tags missing from the cache.
    tag_creation: tokio::sync::Mutex<()>,
    /// Events making calls at once (see [`Turns`]).
    turns: Turns,
}

impl ActiveCampaignClient {
    pub fn new(base_url: &str, token: &str, requests_per_second: u32, timeout: Duration) -> Self {
        let api = format!("{}/api/3", base_url.trim_end_matches('/'));
        Self {
            transport: CrmTransport::new(&api, timeout)
                .auth_header("api-token", SecretString::from(token.to_string()))
                .rate(requests_per_second),
            tags: Mutex::new(HashMap::new()),
            tag_creation: tokio::sync::Mutex::new(()),
            turns: Turns::new(requests_per_second.min(billsync_worker::MAX_CALLING as u32)),
        }
    }

    /// Names the destination connection in the request metrics, so that one account's 429s
    /// or errors can be told from another's.
    pub fn for_connection(mut self, name: &str) -> Self {
        self.transport = self.transport.for_connection(name);
        self
    }

    /// Spaces requests by a rate shared with every replica (ActiveCampaign's limit is per
    /// account, whatever the number of workers).
    pub fn with_shared_limiter(mut self, limiter: billsync_bus::SharedRateLimiter) -> Self {
        self.transport = self.transport.with_shared_limiter(limiter);
        self
    }

    /// `POST /contact/sync`: creates or updates the contact with this email (email is unique
    /// per ActiveCampaign account, so this is an upsert).
    pub async fn sync_contact(&self, contact: ContactInput<'_>) -> Result<Contact, DeliveryError> {
        let envelope: ContactEnvelope = self
            .call(
                Method::POST,
                "/contact/sync",
                Some(&ContactSyncRequest { contact }),
            )
            .await?;
        Ok(envelope.contact)
    }

    /// `PUT /contacts/{id}`: rewrites this contact, email included (an email another contact
    /// has is a 422).
    pub async fn update_contact(
        &self,
        id: &str,
        contact: ContactInput<'_>,
    ) -> Result<Contact, DeliveryError> {
        let envelope: ContactEnvelope = self
            .call(
                Method::PUT,
                &format!("/contacts/{id}"),
                Some(&ContactSyncRequest { contact }),
            )
            .await?;
        Ok(envelope.contact)
    }

    /// The id of the contact tag `name`, creating the tag if the account lacks it.
    pub async fn ensure_tag(&self, name: &str) -> Result<String, DeliveryError> {
        if let Some(id) = self.tags.lock().expect("tag cache poisoned").get(name) {
            return Ok(id.clone());
        }
        // One lookup-or-create at a time: without this, every customer's lane that meets a
        // new tag at once looks it up and tries to create it (measured: 19 creates and 40
        // lookups for 5 tag names over 4 customers).
        let _single_flight = self.tag_creation.lock().await;
        if let Some(id) = self.tags.lock().expect("tag cache poisoned").get(name) {
            return Ok(id.clone());
        }
        let id = match self.find_tag(name).await? {
            Some(id) => id,
            None => match self.create_tag(name).await {
                Ok(id) => id,
                // Another replica created it between our lookup and our create.
                Err(DeliveryError::Permanent { http_status: Some(422), .. }) => {
                    self.find_tag(name).await?.ok_or_else(|| {
                        DeliveryError::permanent(
                            FailureClass::Rejected,
                            format!("ActiveCampaign refused to create tag {name:?} and has no tag of that name"),
                        )
                    })?
                }
                Err(other) => return Err(other),
            },
        };
        self.tags
            .lock()
            .expect("tag cache poisoned")
            .insert(name.to_string(), id.clone());
        Ok(id)
    }

    async fn find_tag(&self, name: &str) -> Result<Option<String>, DeliveryError> {
        let path = format!("/tags?search={}&limit=100", urlencode(name));
        let list: TagList = self.call(Method::GET, &path, None::<&()>).await?;
        // `search` matches substrings; only an exact name is the same tag.
        Ok(list.tags.into_iter().find(|t| t.tag == name).map(|t| t.id))
    }

    async fn create_tag(&self, name: &str) -> Result<String, DeliveryError> {
        let request = TagRequest {
            tag: TagInput {
                tag: name,
                tag_type: "contact",
                description: "Added by billsync",
            },
        };
        let envelope: TagEnvelope = self.call(Method::POST, "/tags", Some(&request)).await?;
        Ok(envelope.tag.id)
    }

    /// `POST /contactTags`; ActiveCampaign answers with the existing link when the contact
    /// already has the tag, so this is idempotent.
    pub async fn tag_contact(&self, contact_id: &str, tag_id: &str) -> Result<(), DeliveryError> {
        let request = ContactTagRequest {
            contact_tag: ContactTagInput {
                contact: contact_id,
                tag: tag_id,
            },
        };
        let result: Result<Value, _> = self
            .call(Method::POST, "/contactTags", Some(&request))
            .await;
        let Err(DeliveryError::Permanent {
            http_status: Some(404),
            message,
            detail,
            ..
        }) = result
        else {
            return result.map(|_| ());
        };
        // Either side of the link can be gone. Both answers stay retryable 404s: the caller
        // writes the customer's contact again before the retry (it cannot tell whether AC
        // still has it), and a forgotten tag is looked up or created again.
        let message = match missing_side(&detail) {
            Some(MissingSide::Contact) => format!(
                "contact {contact_id} no longer exists in ActiveCampaign (deleted there?); \
                 the retry writes the contact again before tagging it ({message})"
            ),
            Some(MissingSide::Tag) => {
                self.forget_tag(tag_id);
                format!(
                    "tag {tag_id} no longer exists in ActiveCampaign; recreating it ({message})"
                )
            }
            None => {
                self.forget_tag(tag_id);
                format!(
                    "contact {contact_id} or tag {tag_id} is gone from ActiveCampaign; the retry \
                     writes the contact again and looks the tag up again ({message})"
                )
            }
        };
        Err(DeliveryError::Retryable {
            message,
            retry_after: None,
            http_status: Some(404),
        })
    }

    /// Drops a tag from the cache, so the next `ensure_tag` looks it up (or creates it) again.
    fn forget_tag(&self, tag_id: &str) {
        self.tags
            .lock()
            .expect("tag cache poisoned")
            .retain(|_, id| id != tag_id);
    }

    /// Every custom field of the account, keyed by title and by perstag (both as AC shows them).
    pub async fn fields(&self) -> Result<Vec<Field>, DeliveryError> {
        let mut all = Vec::new();
        loop {
            let path = format!("/fields?limit=100&offset={}", all.len());
            let page: FieldPage = self.call(Method::GET, &path, None::<&()>).await?;
            let done = page.fields.len() < 100;
            all.extend(page.fields);
            if done {
                return Ok(all);
            }
        }
    }

    /// Creates a text custom field.
    pub async fn create_field(&self, title: &str, perstag: &str) -> Result<Field, DeliveryError> {
        let request = FieldRequest {
            field: FieldInput {
                title,
                field_type: "text",
                perstag,
                descript: "Synced by billsync",
                visible: 1,
            },
        };
        let envelope: FieldEnvelope = self.call(Method::POST, "/fields", Some(&request)).await?;
        Ok(envelope.field)
    }

    /// `POST /contactLists`: subscribes (1) or unsubscribes (2); an upsert per list and contact.
    pub async fn set_list_status(
        &self,
        list: &str,
        contact: &str,
        status: u8,
    ) -> Result<(), DeliveryError> {
        let request = ContactListRequest {
            contact_list: ContactListInput {
                list,
                contact,
                status,
            },
        };
        let _: Value = self
            .call(Method::POST, "/contactLists", Some(&request))
            .await?;
        Ok(())
    }

    pub async fn find_contact(&self, email: &str) -> Result<Option<Contact>, DeliveryError> {
        let path = format!("/contacts?email={}", urlencode(email));
        let list: ContactList = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(list
            .contacts
            .into_iter()
            .find(|c| c.email.eq_ignore_ascii_case(email)))
    }

    /// `POST /import/bulk_import`: queues `contacts` (at most 250) for the asynchronous
    /// importer and returns the batch id.
    pub async fn bulk_import(&self, contacts: &[BulkContact]) -> Result<String, DeliveryError> {
        let queued: BulkImportQueued = self
            .call(
                Method::POST,
                "/import/bulk_import",
                Some(&BulkImportRequest { contacts }),
            )
            .await?;
        Ok(queued.batch_id)
    }

    /// `GET /import/info?batchId=`: how far the importer is with a batch.
    pub async fn import_info(&self, batch_id: &str) -> Result<ImportInfo, DeliveryError> {
        let path = format!("/import/info?batchId={}", urlencode(batch_id));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /contacts?id_greater=`: up to 100 contacts with a larger id, in id order (how the
    /// contacts a bulk import created are found without a lookup each).
    pub async fn contacts_after(&self, id: u64) -> Result<Vec<Contact>, DeliveryError> {
        let path = format!("/contacts?id_greater={id}&orders%5Bid%5D=ASC&limit=100");
        let list: ContactList = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(list.contacts)
    }

    /// Deletes a contact; one that is already gone counts as deleted.
    pub async fn delete_contact(&self, id: &str) -> Result<(), DeliveryError> {
        match self
            .call::<Value>(Method::DELETE, &format!("/contacts/{id}"), None::<&()>)
            .await
        {
            Ok(_)
            | Err(DeliveryError::Permanent {
                http_status: Some(404),
                ..
            }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// The id of the deep data connection of `service` with this `externalid`, creating it
    /// when the account has none. Looked up first, so restarts and replicas find the one that
    /// exists; a 422 on create means another replica won the race, so it is read again.
    pub async fn ensure_connection(
        &self,
        connection: ConnectionInput<'_>,
    ) -> Result<String, DeliveryError> {
        if let Some(found) = self
            .find_connection(connection.service, connection.externalid)
            .await?
        {
            return Ok(found.id);
        }
        let request = ConnectionRequest {
            connection: connection.clone(),
        };
        match self
            .call::<ConnectionEnvelope>(Method::POST, "/connections", Some(&request))
            .await
        {
            Ok(created) => Ok(created.connection.id),
            Err(DeliveryError::Permanent {
                http_status: Some(422),
                ..
            }) => self
                .find_connection(connection.service, connection.externalid)
                .await?
                .map(|c| c.id)
                .ok_or_else(|| {
                    DeliveryError::permanent(
                        FailureClass::Rejected,
                        format!(
                            "ActiveCampaign refused to create the {} connection {:?} and has none \
                             of that id",
                            connection.service, connection.externalid
                        ),
                    )
                }),
            Err(other) => Err(other),
        }
    }

    async fn find_connection(
        &self,
        service: &str,
        externalid: &str,
    ) -> Result<Option<Connection>, DeliveryError> {
        let path = format!(
            "/connections?filters[service]={}&filters[externalid]={}",
            urlencode(service),
            urlencode(externalid)
        );
        let list: ConnectionList = self.call(Method::GET, &path, None::<&()>).await?;
        // Filters are exact in AC; checking again costs nothing and guards a lenient server.
        Ok(list
            .connections
            .into_iter()
            .find(|c| c.service == service && c.externalid == externalid))
    }

    /// The e-commerce customer `externalid` of connection `connectionid`, if AC has it.
    pub async fn find_ecom_customer(
        &self,
        connectionid: &str,
        externalid: &str,
    ) -> Result<Option<EcomCustomer>, DeliveryError> {
        let path = format!(
            "/ecomCustomers?filters[connectionid]={}&filters[externalid]={}",
            urlencode(connectionid),
            urlencode(externalid)
        );
        let list: EcomCustomerList = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(list
            .ecom_customers
            .into_iter()
            .find(|c| c.externalid == externalid))
    }

    /// Finds the e-commerce customer or creates it (a 422 duplicate is read again). Returns
    /// it and whether it had to be created. With [`Prior::None`] the create comes first: one
    /// call instead of two for a customer billsync never started creating.
    pub async fn ensure_ecom_customer(
        &self,
        customer: EcomCustomerInput<'_>,
        prior: Prior<'_>,
    ) -> Result<(EcomCustomer, bool), DeliveryError> {
        if prior != Prior::None {
            if let Some(found) = self
                .find_ecom_customer(customer.connectionid, customer.externalid)
                .await?
            {
                return Ok((found, false));
            }
        }
        let request = EcomCustomerRequest {
            ecom_customer: customer.clone(),
        };
        match self
            .call::<EcomCustomerEnvelope>(Method::POST, "/ecomCustomers", Some(&request))
            .await
        {
            Ok(created) => Ok((created.ecom_customer, true)),
            Err(DeliveryError::Permanent {
                http_status: Some(422),
                message,
                detail,
                class,
            }) => {
                let found = self
                    .find_ecom_customer(customer.connectionid, customer.externalid)
                    .await?;
                // No customer of that id: AC refused the customer itself.
                found.map(|c| (c, false)).ok_or(DeliveryError::Permanent {
                    class,
                    message,
                    http_status: Some(422),
                    detail,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// `PUT /ecomCustomers/{id}`.
    pub async fn update_ecom_customer(
        &self,
        id: &str,
        customer: EcomCustomerInput<'_>,
    ) -> Result<(), DeliveryError> {
        let request = EcomCustomerRequest {
            ecom_customer: customer,
        };
        let _: Value = self
            .call(Method::PUT, &format!("/ecomCustomers/{id}"), Some(&request))
            .await?;
        Ok(())
    }

    /// The order `externalid` of connection `connectionid`, if AC has it.
    pub async fn find_ecom_order(
        &self,
        connectionid: &str,
        externalid: &str,
    ) -> Result<Option<EcomOrder>, DeliveryError> {
        let path = format!(
            "/ecomOrders?filters[connectionid]={}&filters[externalid]={}",
            urlencode(connectionid),
            urlencode(externalid)
        );
        let list: EcomOrderList = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(list
            .ecom_orders
            .into_iter()
            .find(|o| o.externalid.as_deref() == Some(externalid)))
    }

    /// Writes `order` and returns its id: a `PUT` to the id billsync remembers, else a
    /// lookup by external id (skipped for [`Prior::None`]), then `PUT` or `POST`. An order
    /// deleted in AC (404 on the `PUT`) is looked up again; a 422 duplicate on `POST`
    /// (another replica, or a lookup that raced a create) is read again and updated. No path
    /// creates a second order of one external id.
    pub async fn upsert_ecom_order(
        &self,
        order: &EcomOrderInput,
        prior: Prior<'_>,
    ) -> Result<String, DeliveryError> {
        if let Prior::Id(id) = prior {
            match self.update_ecom_order(id, order).await {
                Ok(()) => return Ok(id.to_string()),
                Err(DeliveryError::Permanent {
                    http_status: Some(404),
                    ..
                }) => {}
                Err(other) => return Err(other),
            }
        }
        if prior != Prior::None {
            if let Some(found) = self
                .find_ecom_order(&order.connectionid, &order.externalid)
                .await?
            {
                self.update_ecom_order(&found.id, order).await?;
                return Ok(found.id);
            }
        }
        let request = EcomOrderRequest { ecom_order: order };
        match self
            .call::<EcomOrderEnvelope>(Method::POST, "/ecomOrders", Some(&request))
            .await
        {
            Ok(created) => Ok(created.ecom_order.id),
            Err(DeliveryError::Permanent {
                http_status: Some(422),
                message,
                detail,
                class,
            }) => {
                let Some(found) = self
                    .find_ecom_order(&order.connectionid, &order.externalid)
                    .await?
                else {
                    // Not a duplicate: AC refused the order itself.
                    return Err(DeliveryError::Permanent {
                        class,
                        message,
                        http_status: Some(422),
                        detail,
                    });
                };
                self.update_ecom_order(&found.id, order).await?;
                Ok(found.id)
            }
            Err(other) => Err(other),
        }
    }

    async fn update_ecom_order(
        &self,
        id: &str,
        order: &EcomOrderInput,
    ) -> Result<(), DeliveryError> {
        let request = EcomOrderUpdateRequest {
            ecom_order: EcomOrderUpdate::from(order),
        };
        let _: Value = self
            .call(Method::PUT, &format!("/ecomOrders/{id}"), Some(&request))
            .await?;
        Ok(())
    }

    /// A cheap authenticated call, for readiness and start-up checks.
    pub async fn check(&self) -> Result<(), DeliveryError> {
        let _: Value = self
            .call(Method::GET, "/fields?limit=1", None::<&()>)
            .await?;
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, DeliveryError> {
        self.turns.take().await;
        let mut call = Call::new(method, path);
        if let Some(body) = body {
            call = call.json(body);
        }
        self.transport.json(call).await
    }
}

/// Decides what an ActiveCampaign response means: success, worth retrying, or permanent.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError> {
    let detail: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status.is_success() {
        // A 2xx with an `errors` array is still a refusal.
        if let Some(errors) = detail.get("errors").and_then(Value::as_array) {
            if !errors.is_empty() {
                return Err(DeliveryError::Permanent {
                    class: FailureClass::Rejected,
                    message: format!(
                        "ActiveCampaign reported errors: {}",
                        describe(&detail, body)
                    ),
                    http_status: Some(status.as_u16()),
                    detail,
                });
            }
        }
        // Event tracking (trackcmp) answers 200 with `success: 0` when it refuses an event;
        // what it refuses (actid, key, tracking switched off) is the account's set-up.
        let refused = matches!(detail.get("success"), Some(Value::Number(n)) if n.as_i64() == Some(0))
            || detail.get("success").and_then(Value::as_str) == Some("0");
        if refused {
            return Err(DeliveryError::Permanent {
                class: FailureClass::Configuration,
                message: format!(
                    "ActiveCampaign's event tracking refused the event: {}; check the event \
                     tracking actid and key (Settings > Tracking > Event Tracking) and that \
                     event tracking is on",
                    describe(&detail, body)
                ),
                http_status: Some(status.as_u16()),
                detail,
            });
        }
        return Ok(());
    }
    let code = status.as_u16();
    match status {
        StatusCode::TOO_MANY_REQUESTS => Err(DeliveryError::Retryable {
            message: "ActiveCampaign rate limit reached".into(),
            retry_after: retry_after(headers).or(Some(Duration::from_secs(1))),
            http_status: Some(code),
        }),
        StatusCode::REQUEST_TIMEOUT => Err(DeliveryError::Retryable {
            message: "ActiveCampaign timed out the request".into(),
            retry_after: retry_after(headers),
            http_status: Some(code),
        }),
        s if s.is_server_error() => Err(DeliveryError::Retryable {
            message: format!("ActiveCampaign failed: {}", describe(&detail, body)),
            retry_after: retry_after(headers),
            http_status: Some(code),
        }),
        StatusCode::UNAUTHORIZED => Err(token_refused(code, detail)),
        StatusCode::FORBIDDEN if refuses_credentials(&detail, body) => {
            Err(token_refused(code, detail))
        }
        // The token works; what it asked for is not allowed. Nothing about the connection's
        // credentials to fix, so it is the record's failure, with AC's reason.
        StatusCode::FORBIDDEN => Err(DeliveryError::Permanent {
            class: FailureClass::Rejected,
            message: format!(
                "ActiveCampaign forbade the request: {}; the API token's user may lack \
                 this permission (Settings > Users) or the account's plan this feature",
                describe(&detail, body)
            ),
            http_status: Some(code),
            detail,
        }),
        _ => Err(DeliveryError::Permanent {
            class: FailureClass::Rejected,
            message: format!(
                "ActiveCampaign refused the record: {}",
                describe(&detail, body)
            ),
            http_status: Some(code),
            detail,
        }),
    }
}

/// Which record a 404 of `POST /contactTags` says is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingSide {
    Contact,
    Tag,
}

/// Reads the 404 body of `POST /contactTags`. The spec's example is `{"errors": [{"status":
/// 404, "title": "Not Found", "detail": "Contact not found"}]}`; AC's `No Result found for
/// <Entity> with id <id>` messages call a contact `Subscriber`. The spec shows no body for
/// a missing tag; the sandbox answers `Tag not found`, by analogy. `None` when the body names
/// neither (an unknown path answers `{"message": "Not Found"}`).
fn missing_side(detail: &Value) -> Option<MissingSide> {
    let reason = describe(detail, b"").to_ascii_lowercase();
    if reason.contains("subscribertag") {
        // The link itself (`DELETE /contactTags/{id}`), which a create never reports.
        return None;
    }
    if reason.contains("contact") || reason.contains("subscriber") {
        Some(MissingSide::Contact)
    } else if reason.contains("tag") {
        Some(MissingSide::Tag)
    } else {
        None
    }
}

/// The connection's API token was refused: the operator must fix the configuration.
fn token_refused(code: u16, detail: Value) -> DeliveryError {
    DeliveryError::Permanent {
        class: FailureClass::Configuration,
        message: "ActiveCampaign refused the API token; check the connection's api_token \
                  and base_url (Settings > Developer in ActiveCampaign)"
            .into(),
        http_status: Some(code),
        detail,
    }
}

/// Whether a 403 refuses the credentials themselves rather than one request.
///
/// The spec declares no authentication failure. AC's docs say a missing or wrong token gets
/// 403, and the body it sends then says nothing more than `{"message": "Forbidden"}` (the
/// spec's generic 403 body; the sandbox sends it for a bad token) or is empty. A token that
/// works but may not do something gets a 403 that says why: `{"errors": [{"title":
/// "Forbidden", "detail": "You do not have permission to create lists."}]}` (`POST /lists`),
/// `{"message": "You don't have permission to access this resource"}`, and the like. Only a
/// bare refusal, or one that names the token or key, is a credentials problem.
fn refuses_credentials(detail: &Value, body: &[u8]) -> bool {
    if String::from_utf8_lossy(body).trim().is_empty() {
        return true;
    }
    let reason = describe(detail, body).to_ascii_lowercase();
    reason.trim_end_matches('.') == "forbidden"
        || [
            "token",
            "api key",
            "api_key",
            "apikey",
            "authenticat",
            "unauthori",
        ]
        .iter()
        .any(|word| reason.contains(word))
}

/// The human part of an error body: `errors[].title/detail`, or `message`, or the raw text.
pub(crate) fn describe(detail: &Value, body: &[u8]) -> String {
    if let Some(errors) = detail.get("errors").and_then(Value::as_array) {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                let title = e.get("title").and_then(Value::as_str).unwrap_or_default();
                let more = e.get("detail").and_then(Value::as_str).unwrap_or_default();
                let pointer = e.pointer("/source/pointer").and_then(Value::as_str);
                let mut text = [title, more]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(": ");
                if let Some(pointer) = pointer {
                    text.push_str(&format!(" (at {pointer})"));
                }
                text
            })
            .filter(|t| !t.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    if let Some(message) = detail.get("message").and_then(Value::as_str) {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "empty response body".into()
    } else {
        text.chars().take(300).collect()
    }
}

/// `Retry-After`, clamped (a hint of `inf` or `1e20` once panicked the conversion).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    billsync_bus::retry_after_header(headers, std::time::SystemTime::now())
}

pub(crate) fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::RETRY_AFTER;

    #[test]
    fn a_success_status_with_an_errors_body_is_a_refusal() {
        let body = br#"{"errors":[{"title":"Field is invalid","source":{"pointer":"/data/attributes/x"}}]}"#;
        match classify(StatusCode::OK, &HeaderMap::new(), body) {
            Err(DeliveryError::Permanent { message, .. }) => {
                assert!(
                    message.contains("Field is invalid (at /data/attributes/x)"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(classify(StatusCode::CREATED, &HeaderMap::new(), br#"{"contact":{}}"#).is_ok());
    }

    fn refusal(status: StatusCode, body: &[u8]) -> (FailureClass, String) {
        match classify(status, &HeaderMap::new(), body) {
            Err(DeliveryError::Permanent {
                class,
                message,
                http_status,
                ..
            }) => {
                assert_eq!(http_status, Some(status.as_u16()));
                (class, message)
            }
            other => panic!("expected a permanent failure for {status}, got {other:?}"),
        }
    }

    #[test]
    fn only_a_refused_token_is_a_credentials_problem() {
        // A bad or missing token: 401, or 403 with nothing but "Forbidden" (or nothing).
        for (status, body) in [
            (StatusCode::UNAUTHORIZED, &b""[..]),
            (StatusCode::FORBIDDEN, br#"{"message": "Forbidden"}"#),
            (StatusCode::FORBIDDEN, b""),
            (
                StatusCode::FORBIDDEN,
                br#"{"message": "Invalid API token"}"#,
            ),
        ] {
            let (class, message) = refusal(status, body);
            assert_eq!(class, FailureClass::Configuration, "{status} {message}");
            assert!(message.contains("refused the API token"), "{message}");
        }
        // A working token that may not do this (the spec's `POST /lists` and
        // `PUT /lists/exclusions/{id}` examples): AC's reason, and no word of the token.
        for (body, reason) in [
            (
                &br#"{"errors":[{"status":403,"title":"Forbidden","detail":"You do not have permission to create lists."}]}"#[..],
                "You do not have permission to create lists.",
            ),
            (
                br#"{"message": "You don't have permission to access this resource"}"#,
                "You don't have permission to access this resource",
            ),
        ] {
            let (class, message) = refusal(StatusCode::FORBIDDEN, body);
            assert_eq!(class, FailureClass::Rejected, "{message}");
            assert!(message.contains(reason), "{message}");
            assert!(!message.contains("API token ("), "{message}");
            assert!(!message.contains("api_token"), "{message}");
        }
    }

    #[test]
    fn a_contact_tag_404_says_which_side_is_missing() {
        let body = |text: &str| serde_json::from_str::<Value>(text).expect("JSON");
        assert_eq!(
            missing_side(&body(
                r#"{"errors":[{"status":404,"title":"Not Found","detail":"Contact not found"}]}"#
            )),
            Some(MissingSide::Contact)
        );
        assert_eq!(
            missing_side(&body(
                r#"{"message":"No Result found for Subscriber with id 12"}"#
            )),
            Some(MissingSide::Contact)
        );
        assert_eq!(
            missing_side(&body(
                r#"{"errors":[{"status":404,"title":"Not Found","detail":"Tag not found"}]}"#
            )),
            Some(MissingSide::Tag)
        );
        assert_eq!(missing_side(&body(r#"{"message":"Not Found"}"#)), None);
        assert_eq!(missing_side(&Value::Null), None);
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        match classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"") {
            Err(DeliveryError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_huge_retry_after_is_clamped_not_a_panic() {
        for hint in ["1e20", "inf"] {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, hint.parse().expect("header"));
            match classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"") {
                Err(DeliveryError::Retryable { retry_after, .. }) => {
                    assert_eq!(retry_after, Some(billsync_bus::MAX_RETRY_AFTER), "{hint}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
