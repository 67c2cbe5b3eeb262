//! Writing one billing customer into one ActiveCampaign contact: standard and custom
//! fields in one `contact/sync`, list membership, and what billsync remembers in NATS KV
//! (customer → contact links, and which customer owns an email).

use crate::api::types::{BulkContact, BulkField, BulkList, Contact, ContactInput, FieldValueInput};
use crate::api::ActiveCampaignClient;
use crate::bulk::{bulk_contacts, imports_pay, BulkContacts, Imported};
use billsync_events::{BillingEventV1, FailureClass, RecordVersion};
use billsync_worker::{DeliveryError, Pass, RecordStore, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Mutex;

/// ActiveCampaign's standard contact fields; every other mapped field is a custom field.
pub const STANDARD_FIELDS: &[&str] = &["email", "firstName", "lastName", "phone"];

/// Whether a custom field a mapping names may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingFields {
    /// Chargebee's integration creates the fields it needs.
    Create,
    /// Stripe's integration maps only to fields that already exist (seed 001).
    Refuse,
}

/// How one upsert treats the contact.
#[derive(Debug, Clone, Copy)]
pub struct UpsertRules<'a> {
    pub missing: MissingFields,
    /// The list the contact joins, if the sync names one.
    pub list_id: Option<&'a str>,
    /// The email belongs to one customer only (Chargebee: two customers of one email are an
    /// error, not a merge).
    pub exclusive_email: bool,
    /// A replay writes the contact even when billsync remembers it unchanged.
    pub pass: Pass,
    /// The version of the event the data comes from, when events of several objects carry
    /// the customer's data (Stripe: a charge's billing name, the customer's own name): an
    /// event older than the one the contact last took its data from writes none of it.
    pub version: Option<&'a RecordVersion>,
    /// The event is about the customer itself, so its data is the customer's own: the
    /// worker already checked it against the customer's newer events, and copies carried
    /// by other objects' events (an invoice's frozen `customer_email`) never hold it back.
    pub own_data: bool,
    /// The tags the event puts on the contact, which a bulk import carries with the
    /// contact (then [`Upserted::tagged`] says so, and they are remembered as applied).
    pub tags: &'a [String],
}

/// The contact an upsert wrote (or found unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub contact_id: String,
    /// The rules' tags were put on the contact with it (by a bulk import).
    pub tagged: bool,
}

impl Upserted {
    fn untagged(contact_id: String) -> Self {
        Self {
            contact_id,
            tagged: false,
        }
    }
}

/// The newer of the version the contact's data came from and this event's.
fn newest_version(
    held: Option<&RecordVersion>,
    event: Option<&RecordVersion>,
) -> Option<RecordVersion> {
    match (held, event) {
        (Some(held), Some(event)) if event.is_older_than(held) => Some(held.clone()),
        (held, event) => event.or(held).cloned(),
    }
}

/// What billsync remembers about a synced customer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContactLink {
    pub contact_id: String,
    pub email: String,
    /// The list the contact was last subscribed to by billsync.
    #[serde(default)]
    pub list_id: Option<String>,
    /// Digest of the contact data last written, so an event that changes none of it (a
    /// payment, a redelivery) costs no `contact/sync` for [`UNCHANGED_FOR`].
    #[serde(default)]
    pub synced: Option<String>,
    /// When that write was made (Unix seconds).
    #[serde(default)]
    pub synced_at: Option<i64>,
    /// The newest event the contact's data came from (see [`UpsertRules::version`]).
    #[serde(default)]
    pub data_version: Option<RecordVersion>,
}

/// How long a contact whose data did not change goes without a `contact/sync`. Within it,
/// events that change none of its data cost no call; after it, the next event writes the
/// contact again, bringing back one a person deleted in ActiveCampaign.
pub const UNCHANGED_FOR_SECS: i64 = 3600;

pub struct ContactBook {
    pub client: Arc<ActiveCampaignClient>,
    /// New and changed contacts of concurrent events, imported together (see [`crate::bulk`]);
    /// none when the account's rate makes single writes faster than any import.
    bulk: Option<BulkContacts>,
    /// Links, email claims and applied tags, under the destination connection.
    records: RecordStore,
    /// Custom field title → id, loaded on first use.
    fields: Mutex<Option<HashMap<String, String>>>,
}

/// One customer of one source connection, as the key of its link.
pub struct CustomerRef<'a> {
    pub source: &'a str,
    pub connection: &'a str,
    pub customer_id: &'a str,
}

impl<'a> CustomerRef<'a> {
    pub fn of(event: &'a BillingEventV1, customer_id: &'a str) -> Self {
        Self {
            source: event.source.as_str(),
            connection: &event.connection,
            customer_id,
        }
    }

    fn label(&self) -> String {
        format!(
            "{}/{}/customer/{}",
            self.source, self.connection, self.customer_id
        )
    }
}

impl ContactBook {
    pub fn new(
        client: ActiveCampaignClient,
        records: RecordStore,
        requests_per_second: u32,
    ) -> Self {
        let client = Arc::new(client);
        Self {
            bulk: imports_pay(requests_per_second)
                .then(|| bulk_contacts(Arc::clone(&client), requests_per_second)),
            client,
            records,
            fields: Mutex::new(None),
        }
    }

    /// Emails are hashed into the record's name: KV keys cannot hold `@`, and a hash keeps
    /// them short.
    fn email_record(email: &str) -> String {
        let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
        format!("email/{}", &hex::encode(digest)[..32])
    }

    /// The tags billsync has put on a contact, so an event type seen before costs no call.
    /// A tag an ActiveCampaign user removes by hand is therefore not put back by a later
    /// event of the same type.
    pub async fn applied_tags(&self, contact_id: &str) -> Result<Vec<String>, DeliveryError> {
        let tags = self
            .records
            .get(&format!("contact-tags/{contact_id}"))
            .await?;
        Ok(tags.unwrap_or_default())
    }

    pub async fn save_applied_tags(
        &self,
        contact_id: &str,
        tags: &[String],
    ) -> Result<(), DeliveryError> {
        self.records
            .put(&format!("contact-tags/{contact_id}"), &tags)
            .await
    }

    pub async fn link(
        &self,
        customer: &CustomerRef<'_>,
    ) -> Result<Option<ContactLink>, DeliveryError> {
        self.records.get(&customer.label()).await
    }

    /// Saves the link only if nobody saved it since it was read at `revision`: two
    /// replicas writing one customer's contact at once must not leave a digest of data the
    /// contact does not have. The loser is retried, reads the winner's link and writes again.
    async fn save_link_if_unchanged(
        &self,
        customer: &CustomerRef<'_>,
        link: &ContactLink,
        revision: Option<u64>,
    ) -> Result<(), DeliveryError> {
        let conflict = || {
            format!(
                "another worker wrote the contact of {} at the same time; writing it again",
                customer.label()
            )
        };
        self.records
            .save_if_unchanged(&customer.label(), link, revision, conflict)
            .await
            .map(|_| ())
    }

    pub async fn forget(
        &self,
        customer: &CustomerRef<'_>,
        email: Option<&str>,
    ) -> Result<(), DeliveryError> {
        self.records.delete(&customer.label()).await?;
        if let Some(email) = email {
            self.release_email(customer, email).await?;
        }
        Ok(())
    }

    /// Claims `email` for `customer`: ActiveCampaign keeps one contact per email, so a
    /// second customer with the same email would silently overwrite the first's contact.
    pub async fn claim_email(
        &self,
        customer: &CustomerRef<'_>,
        email: &str,
    ) -> Result<(), DeliveryError> {
        let record = Self::email_record(email);
        let me = customer.label();
        if self.records.create_text(&record, &me).await? {
            return Ok(());
        }
        let owner = self.records.get_text(&record).await?.unwrap_or_default();
        if owner.is_empty() {
            self.records.put_text(&record, &me).await?;
            return Ok(());
        }
        if owner == me {
            return Ok(());
        }
        let other = owner.rsplit('/').next().unwrap_or(&owner).to_string();
        Err(DeliveryError::permanent(
            FailureClass::Rejected,
            format!(
                "{} customers {other} and {} share the email {email}; ActiveCampaign keeps \
                 one contact per email, so billsync will not merge them. Give one of them \
                 another email in {}, then retry",
                capitalised(customer.source),
                customer.customer_id,
                capitalised(customer.source),
            ),
        ))
    }

    /// The customer id of another customer holding `email`, if one does.
    pub async fn email_held_by_another(
        &self,
        customer: &CustomerRef<'_>,
        email: &str,
    ) -> Result<Option<String>, DeliveryError> {
        let owner = self
            .records
            .get_text(&Self::email_record(email))
            .await?
            .filter(|owner| !owner.is_empty() && *owner != customer.label());
        Ok(owner.map(|o| o.rsplit('/').next().unwrap_or(&o).to_string()))
    }

    pub async fn release_email(
        &self,
        customer: &CustomerRef<'_>,
        email: &str,
    ) -> Result<(), DeliveryError> {
        let record = Self::email_record(email);
        if self.records.get_text(&record).await? == Some(customer.label()) {
            self.records.delete(&record).await?;
        }
        Ok(())
    }

    /// Upserts the contact with `fields` (destination field → value; `null` empties a custom
    /// field) and returns its id.
    pub async fn upsert(
        &self,
        customer: &CustomerRef<'_>,
        fields: &BTreeMap<String, Value>,
        rules: UpsertRules<'_>,
    ) -> Result<Upserted, DeliveryError> {
        let UpsertRules {
            missing,
            list_id,
            exclusive_email,
            pass,
            version,
            own_data,
            tags,
        } = rules;
        let text = |name: &str| fields.get(name).and_then(Value::as_str);
        let email = text("email").ok_or_else(|| {
            DeliveryError::permanent(
                FailureClass::InvalidEvent,
                format!(
                    "{} customer {} has no email; ActiveCampaign identifies contacts by email. Add \
                     an email in {} (or map another field to email), then retry",
                    capitalised(customer.source),
                    customer.customer_id,
                    capitalised(customer.source)
                ),
            )
        })?;
        let Versioned {
            value: previous,
            revision,
        } = self.records.load::<ContactLink>(&customer.label()).await?;
        if let (Some(previous), Some(version), false) = (&previous, version, own_data) {
            if previous
                .data_version
                .as_ref()
                .is_some_and(|newest| version.is_older_than(newest))
            {
                // A newer event (of another object of this customer) already wrote the
                // contact: this one's copy of the customer's data is out of date.
                return Ok(Upserted::untagged(previous.contact_id.clone()));
            }
        }
        if exclusive_email {
            self.claim_email(customer, email).await?;
        }
        let mut field_values = Vec::new();
        for (name, value) in fields {
            if STANDARD_FIELDS.contains(&name.as_str()) {
                continue;
            }
            let id = self.field_id(name, missing).await?;
            let value = match value {
                Value::String(s) => s.clone(),
                // A field the data no longer has a value for is emptied, not left as it was.
                Value::Null => String::new(),
                other => other.to_string(),
            };
            field_values.push(FieldValueInput { field: id, value });
        }
        let input = ContactInput {
            email,
            first_name: text("firstName"),
            last_name: text("lastName"),
            phone: text("phone"),
            field_values,
        };
        let digest = digest(&input);
        let now = chrono::Utc::now().timestamp();
        if let Some(previous) = &previous {
            let listed = list_id.is_none_or(|list| previous.list_id.as_deref() == Some(list));
            let unchanged = previous.synced.as_deref() == Some(digest.as_str())
                && previous
                    .synced_at
                    .is_some_and(|at| now - at < UNCHANGED_FOR_SECS);
            if listed && unchanged && pass == Pass::Live {
                let newest = newest_version(previous.data_version.as_ref(), version);
                if newest != previous.data_version {
                    // Nothing to write, but later events must know this one is the newest.
                    let mut newer = previous.clone();
                    newer.data_version = newest;
                    self.save_link_if_unchanged(customer, &newer, revision)
                        .await?;
                }
                return Ok(Upserted::untagged(previous.contact_id.clone()));
            }
        }
        let (contact_id, imported) = match previous
            .as_ref()
            .filter(|p| !p.email.eq_ignore_ascii_case(email))
        {
            Some(previous) => (
                self.change_email(&previous.contact_id, input).await?.id,
                false,
            ),
            None => {
                let known = previous.as_ref().map(|p| p.contact_id.clone());
                self.write_contact(input, known, list_id, tags).await?
            }
        };
        let mut link = ContactLink {
            contact_id: contact_id.clone(),
            email: email.to_string(),
            list_id: previous.as_ref().and_then(|p| p.list_id.clone()),
            synced: Some(digest),
            synced_at: Some(now),
            data_version: newest_version(
                previous.as_ref().and_then(|p| p.data_version.as_ref()),
                version,
            ),
        };
        if let Some(list) = list_id {
            if !imported
                && (link.list_id.as_deref() != Some(list)
                    || previous.as_ref().map(|p| &p.contact_id) != Some(&contact_id))
            {
                self.client.set_list_status(list, &contact_id, 1).await?;
            }
            link.list_id = Some(list.to_string());
        }
        self.save_link_if_unchanged(customer, &link, revision)
            .await?;
        if let Some(previous) = previous {
            if exclusive_email && !previous.email.eq_ignore_ascii_case(email) {
                // The customer changed email: the old one is free for another customer.
                self.release_email(customer, &previous.email).await?;
            }
        }
        let tagged = imported && !tags.is_empty();
        if tagged {
            let mut applied = self.applied_tags(&contact_id).await?;
            let new: Vec<String> = tags
                .iter()
                .filter(|t| !applied.contains(t))
                .cloned()
                .collect();
            if !new.is_empty() {
                applied.extend(new);
                self.save_applied_tags(&contact_id, &applied).await?;
            }
        }
        Ok(Upserted { contact_id, tagged })
    }

    /// Writes the contact of this email (an upsert): through the bulk importer when other
    /// events write contacts at the same time, else with `contact/sync`. Returns its id, and
    /// whether an import wrote it (then with the list and the tags).
    async fn write_contact(
        &self,
        input: ContactInput<'_>,
        known_id: Option<String>,
        list: Option<&str>,
        tags: &[String],
    ) -> Result<(String, bool), DeliveryError> {
        let importable = self.bulk.as_ref().zip(importable(&input, list, tags));
        if let Some((bulk, mut contact)) = importable {
            contact.known_id = known_id;
            if let Imported::Contact(id) = bulk.submit((), contact).await? {
                return Ok((id, true));
            }
        }
        Ok((self.client.sync_contact(input).await?.id, false))
    }

    /// Writes a customer whose email changed to the contact it already has, so the contact
    /// keeps its tags, lists and history under the new email; `contact/sync` would match on
    /// the new email and start a second contact. When that contact is gone (deleted in
    /// ActiveCampaign) or another contact has the new email (ActiveCampaign keeps one contact
    /// per email), the data goes where `contact/sync` puts it.
    async fn change_email(
        &self,
        contact_id: &str,
        input: ContactInput<'_>,
    ) -> Result<Contact, DeliveryError> {
        match self.client.update_contact(contact_id, input.clone()).await {
            Ok(contact) => Ok(contact),
            Err(DeliveryError::Permanent {
                http_status: Some(status @ (404 | 422)),
                message,
                ..
            }) => {
                tracing::info!(
                    contact = contact_id,
                    status,
                    reason = %message,
                    "The customer's contact could not take the new email; writing to the contact that has it."
                );
                self.client.sync_contact(input).await
            }
            Err(other) => Err(other),
        }
    }

    /// Forgets what was last written to the customer's contact, so the next upsert writes it
    /// again (the contact may have been deleted in ActiveCampaign).
    pub async fn resync(&self, customer: &CustomerRef<'_>) -> Result<(), DeliveryError> {
        if let Some(mut link) = self.link(customer).await? {
            if link.synced.take().is_some() {
                self.records.put(&customer.label(), &link).await?;
            }
        }
        Ok(())
    }

    /// Makes sure every custom field of a mapping exists, as Chargebee's integration does
    /// before its first sync; after the first call this is a few map lookups.
    pub async fn ensure_fields<'f>(
        &self,
        names: impl Iterator<Item = &'f str>,
    ) -> Result<(), DeliveryError> {
        for name in names.filter(|n| !STANDARD_FIELDS.contains(n)) {
            self.field_id(name, MissingFields::Create).await?;
        }
        Ok(())
    }

    /// The id of custom field `title`, created (as a text field) when allowed.
    pub async fn field_id(
        &self,
        title: &str,
        missing: MissingFields,
    ) -> Result<String, DeliveryError> {
        let mut guard = self.fields.lock().await;
        if guard.is_none() {
            let fields = self.client.fields().await?;
            let mut by_name = HashMap::new();
            for field in fields {
                by_name.insert(field.perstag.to_uppercase(), field.id.clone());
                by_name.insert(field.title.clone(), field.id);
            }
            *guard = Some(by_name);
        }
        let known = guard.as_mut().expect("loaded above");
        if let Some(id) = known
            .get(title)
            .or_else(|| known.get(&title.to_uppercase()))
        {
            return Ok(id.clone());
        }
        match missing {
            MissingFields::Refuse => {
                // Someone may have created it in ActiveCampaign since the catalogue was read.
                for field in self.client.fields().await? {
                    known.insert(field.perstag.to_uppercase(), field.id.clone());
                    known.insert(field.title.clone(), field.id);
                }
                if let Some(id) = known
                    .get(title)
                    .or_else(|| known.get(&title.to_uppercase()))
                {
                    return Ok(id.clone());
                }
                Err(DeliveryError::permanent(
                FailureClass::Configuration,
                format!(
                    "ActiveCampaign has no custom field {title:?}; the Stripe integration maps only \
                     to existing fields. Create the field in ActiveCampaign (Contacts > Manage \
                     Fields) or remove it from syncs[].mapping, then retry"
                    ),
                ))
            }
            MissingFields::Create => {
                let perstag = title.to_uppercase();
                let field = match self.client.create_field(title, &perstag).await {
                    Ok(field) => field,
                    // Another replica created it first: read the catalogue again.
                    Err(DeliveryError::Permanent {
                        http_status: Some(422),
                        ..
                    }) => {
                        let fields = self.client.fields().await?;
                        let found = fields
                            .into_iter()
                            .find(|f| f.title == title || f.perstag.eq_ignore_ascii_case(&perstag));
                        found.ok_or_else(|| {
                            DeliveryError::permanent(
                                FailureClass::Rejected,
                                format!("ActiveCampaign refused to create custom field {title:?} and has none of that name"),
                            )
                        })?
                    }
                    Err(other) => return Err(other),
                };
                known.insert(field.title.clone(), field.id.clone());
                known.insert(field.perstag.to_uppercase(), field.id.clone());
                Ok(field.id)
            }
        }
    }
}

/// The contact as the bulk importer takes it (custom fields by numeric id; `None` if one is
/// not numeric). An emptied field is sent as an empty value, as `contact/sync` takes it: the
/// spec asks only for a string, and the sandbox's importer empties the field with it, as
/// `contact/sync` does.
fn importable(
    input: &ContactInput<'_>,
    list: Option<&str>,
    tags: &[String],
) -> Option<BulkContact> {
    let fields = input
        .field_values
        .iter()
        .map(|f| {
            Some(BulkField {
                id: f.field.parse().ok()?,
                value: f.value.clone(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(BulkContact {
        email: input.email.to_string(),
        first_name: input.first_name.map(str::to_string),
        last_name: input.last_name.map(str::to_string),
        phone: input.phone.map(str::to_string),
        fields,
        tags: tags.to_vec(),
        subscribe: list
            .map(|list| BulkList {
                listid: list.to_string(),
            })
            .into_iter()
            .collect(),
        known_id: None,
    })
}

/// A digest of the data a `contact/sync` would send.
fn digest(input: &ContactInput<'_>) -> String {
    let bytes = serde_json::to_vec(input).expect("contact input encodes");
    hex::encode(&Sha256::digest(&bytes)[..16])
}

fn capitalised(source: &str) -> String {
    let mut chars = source.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
