//! One ActiveCampaign account's records and the rules AC enforces when they change.
//!
//! Records carry AC's string ids so a snapshot reads like the API's own JSON; the maps are
//! keyed by the numeric id (or the `(contact, other)` pair for links) so lookups and
//! uniqueness checks stay cheap when a benchmark pushes thousands of contacts.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::bulk_import::{AcBulkImport, BulkImports};
use super::ecommerce::{AcConnection, AcEcomCustomer, AcEcomOrder, AcTrackedEvent, EcomData};
use super::error::ApiError;

/// A contact, unique per account by email (compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcContact {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: String,
    pub cdate: String,
    pub udate: String,
}

/// A custom contact field; `perstag` is unique per account, and so is `title`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcField {
    pub id: String,
    pub title: String,
    #[serde(rename = "type")]
    pub field_type: String,
    pub perstag: String,
    pub descript: Option<String>,
    pub defval: Option<String>,
    pub cdate: String,
}

/// A contact's value for one custom field; at most one per `(contact, field)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcFieldValue {
    pub id: String,
    pub contact: String,
    pub field: String,
    pub value: String,
    pub cdate: String,
    pub udate: String,
}

/// A tag; names are unique per account, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcTag {
    pub id: String,
    pub tag: String,
    pub tag_type: String,
    pub description: String,
    pub cdate: String,
}

/// A tag applied to a contact; at most one per `(contact, tag)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcContactTag {
    pub id: String,
    pub contact: String,
    pub tag: String,
    pub cdate: String,
}

/// A mailing list; `stringid` is unique per account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcList {
    pub id: String,
    pub name: String,
    pub stringid: String,
    pub sender_url: String,
    pub sender_reminder: String,
    pub cdate: String,
}

/// A contact's status on one list (1 active, 2 unsubscribed); one per `(list, contact)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcContactList {
    pub id: String,
    pub list: String,
    pub contact: String,
    pub status: u8,
    pub sdate: String,
    pub udate: String,
}

/// Everything one account holds, for assertions and for `GET /__sandbox/activecampaign/{account}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcSnapshot {
    pub contacts: Vec<AcContact>,
    pub fields: Vec<AcField>,
    pub field_values: Vec<AcFieldValue>,
    pub tags: Vec<AcTag>,
    pub contact_tags: Vec<AcContactTag>,
    pub lists: Vec<AcList>,
    pub contact_lists: Vec<AcContactList>,
    /// Deep data: e-commerce connections, customers and orders.
    #[serde(default)]
    pub connections: Vec<AcConnection>,
    #[serde(default)]
    pub ecom_customers: Vec<AcEcomCustomer>,
    #[serde(default)]
    pub ecom_orders: Vec<AcEcomOrder>,
    /// Events accepted by `trackcmp.net/event`, oldest first.
    #[serde(default)]
    pub tracked_events: Vec<AcTrackedEvent>,
    /// Batches queued by `POST /import/bulk_import`, oldest first.
    #[serde(default)]
    pub bulk_imports: Vec<AcBulkImport>,
}

impl AcSnapshot {
    /// The contact with this email, compared case-insensitively as AC does.
    pub fn contact_by_email(&self, email: &str) -> Option<&AcContact> {
        let wanted = email.trim().to_lowercase();
        self.contacts
            .iter()
            .find(|c| c.email.to_lowercase() == wanted)
    }

    /// Names of the tags on a contact, in the order they were applied.
    pub fn tags_of(&self, contact_id: &str) -> Vec<String> {
        let mut applied: Vec<&AcContactTag> = self
            .contact_tags
            .iter()
            .filter(|ct| ct.contact == contact_id)
            .collect();
        applied.sort_by_key(|ct| numeric(&ct.id));
        applied
            .into_iter()
            .filter_map(|ct| self.tags.iter().find(|t| t.id == ct.tag))
            .map(|t| t.tag.clone())
            .collect()
    }

    /// A contact's value for the field whose perstag (case-insensitive, with or without the
    /// surrounding `%`) or title matches.
    pub fn field_value(&self, contact_id: &str, perstag_or_title: &str) -> Option<String> {
        let key = perstag_or_title.trim_matches('%');
        let field = self
            .fields
            .iter()
            .find(|f| f.perstag.eq_ignore_ascii_case(key))
            .or_else(|| self.fields.iter().find(|f| f.title == key))?;
        self.field_values
            .iter()
            .find(|fv| fv.contact == contact_id && fv.field == field.id)
            .map(|fv| fv.value.clone())
    }

    /// `(list id, status)` for every list the contact is on; status 1 active, 2 unsubscribed.
    pub fn lists_of(&self, contact_id: &str) -> Vec<(String, u8)> {
        self.contact_lists
            .iter()
            .filter(|cl| cl.contact == contact_id)
            .map(|cl| (cl.list.clone(), cl.status))
            .collect()
    }
}

fn numeric(id: &str) -> u64 {
    id.parse().unwrap_or(u64::MAX)
}

/// What a contact write carries; `None` leaves the stored value as it is.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContactInput {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    /// `(field id, value)`; ids of fields that do not exist are ignored, as AC does.
    pub field_values: Vec<(u64, String)>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct FieldInput {
    pub title: Option<String>,
    pub field_type: Option<String>,
    pub perstag: Option<String>,
    pub descript: Option<String>,
    pub defval: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ListInput {
    pub name: Option<String>,
    pub stringid: Option<String>,
    pub sender_url: Option<String>,
    pub sender_reminder: Option<String>,
}

/// Filters of `GET /contacts` that the sandbox honours.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContactFilter {
    pub email: Option<String>,
    pub email_like: Option<String>,
    pub search: Option<String>,
    pub id_greater: Option<u64>,
    pub tag: Option<u64>,
    pub list: Option<u64>,
}

/// Field types `POST /fields` accepts (spec: "Possible Values: dropdown, hidden, checkbox,
/// date, text, datetime, textarea, NULL, listbox, radio"; its examples add `number`).
const FIELD_TYPES: &[&str] = &[
    "dropdown", "hidden", "checkbox", "date", "text", "datetime", "textarea", "NULL", "listbox",
    "radio", "number",
];

#[derive(Debug, Default)]
struct NextIds {
    contact: u64,
    field: u64,
    field_value: u64,
    tag: u64,
    contact_tag: u64,
    list: u64,
    contact_list: u64,
}

fn take(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

/// The records of one account.
#[derive(Debug, Default)]
pub(crate) struct AccountData {
    next: NextIds,
    contacts: BTreeMap<u64, AcContact>,
    /// Lower-cased email → contact id.
    emails: HashMap<String, u64>,
    fields: BTreeMap<u64, AcField>,
    /// Keyed by `(contact, field)`.
    field_values: BTreeMap<(u64, u64), AcFieldValue>,
    tags: BTreeMap<u64, AcTag>,
    /// Keyed by `(contact, tag)`.
    contact_tags: BTreeMap<(u64, u64), AcContactTag>,
    lists: BTreeMap<u64, AcList>,
    /// Keyed by `(contact, list)`.
    contact_lists: BTreeMap<(u64, u64), AcContactList>,
    /// Connections, e-commerce customers and orders, and tracked events.
    pub(crate) ecom: EcomData,
    /// Bulk import batches, queued and processed.
    pub(crate) imports: BulkImports,
    /// When each contact was created, to the microsecond (AC's `cdate` has seconds): what a
    /// load test measures latency against.
    created_at: HashMap<u64, std::time::SystemTime>,
}

/// AC's timestamp format: local time with offset, e.g. `2022-04-14T10:03:23-05:00`.
pub(crate) fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A deliberately plain check: one `@`, something before it, a dotted domain after it, no
/// whitespace. It rejects what AC rejects in practice (missing `@`, `a@b`, spaces).
pub(crate) fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && email.len() <= 255
        && !email.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

fn valid_email(email: Option<&str>) -> Result<String, ApiError> {
    match email.map(str::trim) {
        Some(email) if is_valid_email(email) => Ok(email.to_owned()),
        _ => Err(ApiError::email_invalid()),
    }
}

/// AC stores personalization tags upper-case with `_` for separators (a field titled
/// "Another Test Title" gets `ANOTHER_TEST_TITLE` in the spec's example).
fn normalize_perstag(raw: &str) -> String {
    raw.trim()
        .trim_matches('%')
        .chars()
        .filter_map(|c| match c {
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_uppercase()),
            ' ' | '-' | '_' => Some('_'),
            _ => None,
        })
        .collect()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl AccountData {
    // ----- contacts -------------------------------------------------------------------

    pub(crate) fn contact(&self, id: u64) -> Option<&AcContact> {
        self.contacts.get(&id)
    }

    pub(crate) fn contact_id_by_email(&self, email: &str) -> Option<u64> {
        self.emails.get(&email.trim().to_lowercase()).copied()
    }

    /// `POST /contact/sync`: creates the contact for this email or updates the one that has
    /// it. Returns the contact id and whether it was created.
    pub(crate) fn sync_contact(&mut self, input: ContactInput) -> Result<(u64, bool), ApiError> {
        let email = valid_email(input.email.as_deref())?;
        match self.contact_id_by_email(&email) {
            Some(id) => {
                self.apply(id, input)?;
                Ok((id, false))
            }
            None => Ok((self.insert_contact(email, input), true)),
        }
    }

    /// `POST /contacts`: creates a contact; an email in use is a 422 `duplicate`.
    pub(crate) fn create_contact(&mut self, input: ContactInput) -> Result<u64, ApiError> {
        let email = valid_email(input.email.as_deref())?;
        if self.contact_id_by_email(&email).is_some() {
            return Err(ApiError::duplicate_email());
        }
        Ok(self.insert_contact(email, input))
    }

    /// `PUT /contacts/{id}`.
    pub(crate) fn update_contact(&mut self, id: u64, input: ContactInput) -> Result<(), ApiError> {
        if !self.contacts.contains_key(&id) {
            return Err(ApiError::no_result("Subscriber", id));
        }
        self.apply(id, input)
    }

    /// `DELETE /contacts/{id}`; its field values, tags and list memberships go with it.
    pub(crate) fn delete_contact(&mut self, id: u64) -> Result<(), ApiError> {
        let contact = self
            .contacts
            .remove(&id)
            .ok_or_else(|| ApiError::contact_not_deleted(id))?;
        self.emails.remove(&contact.email.to_lowercase());
        self.field_values.retain(|&(c, _), _| c != id);
        self.contact_tags.retain(|&(c, _), _| c != id);
        self.contact_lists.retain(|&(c, _), _| c != id);
        Ok(())
    }

    pub(crate) fn contacts_matching(&self, filter: &ContactFilter) -> Vec<&AcContact> {
        let lower = |s: &Option<String>| s.as_ref().map(|s| s.trim().to_lowercase());
        let (email, email_like, search) = (
            lower(&filter.email),
            lower(&filter.email_like),
            lower(&filter.search),
        );
        // `GET /contacts?email=` is how a sync finds a contact: one probe of the email
        // index, not a scan of every contact.
        let candidates: Box<dyn Iterator<Item = (&u64, &AcContact)>> = match &email {
            Some(email) => Box::new(
                self.emails
                    .get(email)
                    .and_then(|id| self.contacts.get_key_value(id))
                    .into_iter(),
            ),
            None => Box::new(self.contacts.iter()),
        };
        candidates
            .filter(|(&id, c)| {
                email.as_ref().is_none_or(|e| c.email.to_lowercase() == *e)
                    && email_like
                        .as_ref()
                        .is_none_or(|e| c.email.to_lowercase().contains(e.as_str()))
                    && search.as_ref().is_none_or(|s| {
                        [&c.email, &c.first_name, &c.last_name, &c.phone]
                            .iter()
                            .any(|v| v.to_lowercase().contains(s.as_str()))
                    })
                    && filter.id_greater.is_none_or(|min| id > min)
                    && filter
                        .tag
                        .is_none_or(|tag| self.contact_tags.contains_key(&(id, tag)))
                    && filter
                        .list
                        .is_none_or(|list| self.contact_lists.contains_key(&(id, list)))
            })
            .map(|(_, c)| c)
            .collect()
    }

    fn insert_contact(&mut self, email: String, input: ContactInput) -> u64 {
        let id = take(&mut self.next.contact);
        let stamp = now();
        self.created_at.insert(id, std::time::SystemTime::now());
        self.emails.insert(email.to_lowercase(), id);
        self.contacts.insert(
            id,
            AcContact {
                id: id.to_string(),
                email,
                first_name: String::new(),
                last_name: String::new(),
                phone: String::new(),
                cdate: stamp.clone(),
                udate: stamp,
            },
        );
        self.apply_fields(id, input);
        id
    }

    fn apply(&mut self, id: u64, mut input: ContactInput) -> Result<(), ApiError> {
        if let Some(email) = input.email.take() {
            let email = valid_email(Some(&email))?;
            match self.contact_id_by_email(&email) {
                Some(owner) if owner != id => return Err(ApiError::duplicate_email()),
                Some(_) => {}
                None => {
                    if let Some(contact) = self.contacts.get_mut(&id) {
                        self.emails.remove(&contact.email.to_lowercase());
                        self.emails.insert(email.to_lowercase(), id);
                        contact.email = email;
                    }
                }
            }
        }
        self.apply_fields(id, input);
        Ok(())
    }

    fn apply_fields(&mut self, id: u64, input: ContactInput) {
        let stamp = now();
        if let Some(contact) = self.contacts.get_mut(&id) {
            if let Some(v) = input.first_name {
                contact.first_name = v;
            }
            if let Some(v) = input.last_name {
                contact.last_name = v;
            }
            if let Some(v) = input.phone {
                contact.phone = v;
            }
            contact.udate = stamp;
        }
        for (field, value) in input.field_values {
            if self.fields.contains_key(&field) {
                self.upsert_field_value(id, field, value);
            } else {
                tracing::info!(
                    contact = id,
                    field,
                    "Ignored a value for a field that does not exist"
                );
            }
        }
    }

    // ----- custom fields --------------------------------------------------------------

    pub(crate) fn fields(&self) -> impl Iterator<Item = &AcField> {
        self.fields.values()
    }

    pub(crate) fn field(&self, id: u64) -> Option<&AcField> {
        self.fields.get(&id)
    }

    /// `POST /fields`: `title` and `type` are required; title and perstag must be unused.
    pub(crate) fn create_field(&mut self, input: FieldInput) -> Result<u64, ApiError> {
        let title =
            non_empty(input.title).ok_or_else(|| ApiError::field_missing("field", "title"))?;
        let field_type =
            non_empty(input.field_type).ok_or_else(|| ApiError::field_missing("field", "type"))?;
        if !FIELD_TYPES.contains(&field_type.as_str()) {
            return Err(ApiError::field_invalid(
                "type",
                &format!("The field type \"{field_type}\" is not supported."),
            ));
        }
        if self
            .fields
            .values()
            .any(|f| f.title.eq_ignore_ascii_case(&title))
        {
            return Err(ApiError::duplicate_field_title(&title));
        }
        let perstag = normalize_perstag(input.perstag.as_deref().unwrap_or(&title));
        let perstag = if perstag.is_empty() {
            normalize_perstag(&title)
        } else {
            perstag
        };
        if self.fields.values().any(|f| f.perstag == perstag) {
            return Err(ApiError::duplicate_perstag(&perstag));
        }
        let id = take(&mut self.next.field);
        self.fields.insert(
            id,
            AcField {
                id: id.to_string(),
                title,
                field_type,
                perstag,
                descript: input.descript,
                defval: input.defval,
                cdate: now(),
            },
        );
        Ok(id)
    }

    // ----- field values ---------------------------------------------------------------

    pub(crate) fn field_values_of(&self, contact: u64) -> impl Iterator<Item = &AcFieldValue> {
        self.field_values
            .range((contact, 0)..=(contact, u64::MAX))
            .map(|(_, fv)| fv)
    }

    pub(crate) fn all_field_values(&self) -> impl Iterator<Item = &AcFieldValue> {
        self.field_values.values()
    }

    /// `POST /fieldValues`: one value per `(contact, field)`, replaced on repeat.
    pub(crate) fn set_field_value(
        &mut self,
        contact: u64,
        field: u64,
        value: String,
    ) -> Result<&AcFieldValue, ApiError> {
        if !self.contacts.contains_key(&contact) {
            return Err(ApiError::related_missing("contact"));
        }
        if !self.fields.contains_key(&field) {
            return Err(ApiError::related_missing("field"));
        }
        self.upsert_field_value(contact, field, value);
        if let Some(c) = self.contacts.get_mut(&contact) {
            c.udate = now();
        }
        Ok(&self.field_values[&(contact, field)])
    }

    fn upsert_field_value(&mut self, contact: u64, field: u64, value: String) {
        let stamp = now();
        match self.field_values.get_mut(&(contact, field)) {
            Some(existing) => {
                existing.value = value;
                existing.udate = stamp;
            }
            None => {
                let id = take(&mut self.next.field_value);
                self.field_values.insert(
                    (contact, field),
                    AcFieldValue {
                        id: id.to_string(),
                        contact: contact.to_string(),
                        field: field.to_string(),
                        value,
                        cdate: stamp.clone(),
                        udate: stamp,
                    },
                );
            }
        }
    }

    // ----- tags -----------------------------------------------------------------------

    pub(crate) fn tags(&self) -> impl Iterator<Item = &AcTag> {
        self.tags.values()
    }

    pub(crate) fn tag(&self, id: u64) -> Option<&AcTag> {
        self.tags.get(&id)
    }

    pub(crate) fn tag_subscribers(&self, tag: u64) -> usize {
        self.contact_tags.keys().filter(|&&(_, t)| t == tag).count()
    }

    /// `POST /tags`: names are required, free of commas and unique ignoring case.
    pub(crate) fn create_tag(
        &mut self,
        name: Option<String>,
        tag_type: Option<String>,
        description: Option<String>,
    ) -> Result<u64, ApiError> {
        let name = non_empty(name).ok_or_else(|| ApiError::field_missing("tag", "tag"))?;
        if name.contains(',') {
            return Err(ApiError::field_invalid(
                "tag",
                "Tag names may not contain commas.",
            ));
        }
        let tag_type = non_empty(tag_type).unwrap_or_else(|| "contact".to_owned());
        if tag_type != "contact" && tag_type != "template" {
            return Err(ApiError::field_invalid(
                "tagType",
                "The tag type must be \"contact\" or \"template\".",
            ));
        }
        if self
            .tags
            .values()
            .any(|t| t.tag.to_lowercase() == name.to_lowercase())
        {
            return Err(ApiError::duplicate_tag(&name));
        }
        let id = take(&mut self.next.tag);
        self.tags.insert(
            id,
            AcTag {
                id: id.to_string(),
                tag: name,
                tag_type,
                description: description.unwrap_or_default(),
                cdate: now(),
            },
        );
        Ok(id)
    }

    pub(crate) fn contact_tags_of(&self, contact: u64) -> impl Iterator<Item = &AcContactTag> {
        self.contact_tags
            .range((contact, 0)..=(contact, u64::MAX))
            .map(|(_, ct)| ct)
    }

    /// `POST /contactTags`: applying a tag the contact already has returns the existing link
    /// instead of a second one. Returns the link and whether it was created.
    pub(crate) fn tag_contact(
        &mut self,
        contact: u64,
        tag: u64,
    ) -> Result<(&AcContactTag, bool), ApiError> {
        if !self.contacts.contains_key(&contact) {
            return Err(ApiError::related_not_found("Contact"));
        }
        if !self.tags.contains_key(&tag) {
            return Err(ApiError::related_not_found("Tag"));
        }
        let created = !self.contact_tags.contains_key(&(contact, tag));
        if created {
            let id = take(&mut self.next.contact_tag);
            self.contact_tags.insert(
                (contact, tag),
                AcContactTag {
                    id: id.to_string(),
                    contact: contact.to_string(),
                    tag: tag.to_string(),
                    cdate: now(),
                },
            );
        }
        Ok((&self.contact_tags[&(contact, tag)], created))
    }

    /// `DELETE /contactTags/{id}`.
    pub(crate) fn untag_contact(&mut self, contact_tag: u64) -> Result<(), ApiError> {
        let id = contact_tag.to_string();
        let key = self
            .contact_tags
            .iter()
            .find(|(_, ct)| ct.id == id)
            .map(|(&key, _)| key)
            .ok_or_else(|| ApiError::no_result("SubscriberTag", contact_tag))?;
        self.contact_tags.remove(&key);
        Ok(())
    }

    // ----- lists ----------------------------------------------------------------------

    pub(crate) fn lists(&self) -> impl Iterator<Item = &AcList> {
        self.lists.values()
    }

    pub(crate) fn list(&self, id: u64) -> Option<&AcList> {
        self.lists.get(&id)
    }

    /// `POST /lists`: `name`, `stringid`, `sender_url` and `sender_reminder` are required
    /// (the spec's `required`), and `stringid` must be unused.
    pub(crate) fn create_list(&mut self, input: ListInput) -> Result<u64, ApiError> {
        let name = non_empty(input.name).ok_or_else(|| ApiError::field_missing("list", "name"))?;
        let stringid =
            non_empty(input.stringid).ok_or_else(|| ApiError::field_missing("list", "stringid"))?;
        let sender_url = non_empty(input.sender_url)
            .ok_or_else(|| ApiError::field_missing("list", "sender_url"))?;
        let sender_reminder = non_empty(input.sender_reminder)
            .ok_or_else(|| ApiError::field_missing("list", "sender_reminder"))?;
        if self
            .lists
            .values()
            .any(|l| l.stringid.eq_ignore_ascii_case(&stringid))
        {
            return Err(ApiError::duplicate_list(&stringid));
        }
        let id = take(&mut self.next.list);
        self.lists.insert(
            id,
            AcList {
                id: id.to_string(),
                name,
                stringid,
                sender_url,
                sender_reminder,
                cdate: now(),
            },
        );
        Ok(id)
    }

    pub(crate) fn contact_lists_of(&self, contact: u64) -> impl Iterator<Item = &AcContactList> {
        self.contact_lists
            .range((contact, 0)..=(contact, u64::MAX))
            .map(|(_, cl)| cl)
    }

    /// `POST /contactLists`: sets the contact's status on the list, one record per pair.
    pub(crate) fn set_list_status(
        &mut self,
        contact: u64,
        list: u64,
        status: u8,
    ) -> Result<&AcContactList, ApiError> {
        if !self.contacts.contains_key(&contact) {
            return Err(ApiError::related_missing("contact"));
        }
        if !self.lists.contains_key(&list) {
            return Err(ApiError::related_missing("list"));
        }
        let stamp = now();
        match self.contact_lists.get_mut(&(contact, list)) {
            Some(existing) => {
                existing.status = status;
                existing.udate = stamp;
            }
            None => {
                let id = take(&mut self.next.contact_list);
                self.contact_lists.insert(
                    (contact, list),
                    AcContactList {
                        id: id.to_string(),
                        list: list.to_string(),
                        contact: contact.to_string(),
                        status,
                        sdate: stamp.clone(),
                        udate: stamp,
                    },
                );
            }
        }
        Ok(&self.contact_lists[&(contact, list)])
    }

    // ----- read-back ------------------------------------------------------------------

    /// Lower-cased email of each contact → when it was created.
    pub(crate) fn contact_creation_times(&self) -> HashMap<String, std::time::SystemTime> {
        self.contacts
            .iter()
            .filter_map(|(id, c)| Some((c.email.to_lowercase(), *self.created_at.get(id)?)))
            .collect()
    }

    pub(crate) fn snapshot(&self) -> AcSnapshot {
        let mut field_values: Vec<AcFieldValue> = self.field_values.values().cloned().collect();
        field_values.sort_by_key(|fv| numeric(&fv.id));
        let mut contact_tags: Vec<AcContactTag> = self.contact_tags.values().cloned().collect();
        contact_tags.sort_by_key(|ct| numeric(&ct.id));
        let mut contact_lists: Vec<AcContactList> = self.contact_lists.values().cloned().collect();
        contact_lists.sort_by_key(|cl| numeric(&cl.id));
        let mut snapshot = AcSnapshot {
            contacts: self.contacts.values().cloned().collect(),
            fields: self.fields.values().cloned().collect(),
            field_values,
            tags: self.tags.values().cloned().collect(),
            contact_tags,
            lists: self.lists.values().cloned().collect(),
            contact_lists,
            ..AcSnapshot::default()
        };
        self.ecom.fill(&mut snapshot);
        self.imports.fill(&mut snapshot);
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(email: &str) -> ContactInput {
        ContactInput {
            email: Some(email.to_owned()),
            ..ContactInput::default()
        }
    }

    #[test]
    fn sync_matches_email_ignoring_case_and_keeps_unsent_values() {
        let mut data = AccountData::default();
        let (id, created) = data
            .sync_contact(ContactInput {
                first_name: Some("Ada".into()),
                ..input("Ada@Example.com")
            })
            .unwrap();
        assert!(created);
        let (again, created) = data
            .sync_contact(ContactInput {
                last_name: Some("Lovelace".into()),
                ..input("ada@example.com")
            })
            .unwrap();
        assert_eq!((again, created), (id, false));
        let snapshot = data.snapshot();
        assert_eq!(snapshot.contacts.len(), 1);
        let contact = snapshot.contact_by_email("ADA@example.com").unwrap();
        assert_eq!(
            (contact.first_name.as_str(), contact.last_name.as_str()),
            ("Ada", "Lovelace")
        );
    }

    #[test]
    fn rejects_invalid_emails() {
        let mut data = AccountData::default();
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
        ] {
            let err = data.sync_contact(input(bad)).unwrap_err();
            assert_eq!(err, ApiError::email_invalid(), "{bad:?}");
        }
        assert!(data.sync_contact(ContactInput::default()).is_err());
        assert!(data.snapshot().contacts.is_empty());
    }

    #[test]
    fn create_refuses_a_duplicate_email_and_update_cannot_steal_one() {
        let mut data = AccountData::default();
        let first = data.create_contact(input("a@example.com")).unwrap();
        let second = data.create_contact(input("b@example.com")).unwrap();
        assert_eq!(
            data.create_contact(input("A@example.com")),
            Err(ApiError::duplicate_email())
        );
        assert_eq!(
            data.update_contact(second, input("a@example.com")),
            Err(ApiError::duplicate_email())
        );
        data.update_contact(first, input("c@example.com")).unwrap();
        assert_eq!(data.contact_id_by_email("c@example.com"), Some(first));
        assert_eq!(data.contact_id_by_email("a@example.com"), None);
    }

    #[test]
    fn the_email_filter_follows_create_update_and_delete_ignoring_case() {
        let mut data = AccountData::default();
        let by_email = |data: &AccountData, email: &str| -> Vec<String> {
            let filter = ContactFilter {
                email: Some(email.to_owned()),
                ..ContactFilter::default()
            };
            let found = data.contacts_matching(&filter);
            found.into_iter().map(|c| c.id.clone()).collect()
        };
        let ada = data.create_contact(input("Ada@Example.com")).unwrap();
        data.create_contact(input("bob@example.com")).unwrap();
        let ada_id = ada.to_string();
        assert_eq!(by_email(&data, " ada@EXAMPLE.com "), [ada_id.as_str()]);

        data.update_contact(ada, input("Lovelace@Example.com"))
            .unwrap();
        assert!(by_email(&data, "ada@example.com").is_empty());
        assert_eq!(by_email(&data, "lovelace@example.com"), [ada_id.as_str()]);

        data.delete_contact(ada).unwrap();
        assert!(by_email(&data, "lovelace@example.com").is_empty());
        let again = data.create_contact(input("lovelace@example.com")).unwrap();
        assert_eq!(by_email(&data, "LOVELACE@example.com"), [again.to_string()]);
    }

    #[test]
    fn fields_are_unique_by_title_and_perstag_and_values_upsert() {
        let mut data = AccountData::default();
        let field = data
            .create_field(FieldInput {
                title: Some("Cb Plan Id".into()),
                field_type: Some("text".into()),
                perstag: Some("cb_plan_id".into()),
                ..FieldInput::default()
            })
            .unwrap();
        assert_eq!(data.field(field).unwrap().perstag, "CB_PLAN_ID");
        let same_title = data.create_field(FieldInput {
            title: Some("CB PLAN ID".into()),
            field_type: Some("text".into()),
            perstag: Some("OTHER".into()),
            ..FieldInput::default()
        });
        assert_eq!(
            same_title.unwrap_err().status(),
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
        let same_tag = data.create_field(FieldInput {
            title: Some("Another".into()),
            field_type: Some("text".into()),
            perstag: Some("%CB_PLAN_ID%".into()),
            ..FieldInput::default()
        });
        assert_eq!(same_tag, Err(ApiError::duplicate_perstag("CB_PLAN_ID")));

        let (contact, _) = data
            .sync_contact(ContactInput {
                field_values: vec![(field, "basic".into()), (99, "ignored".into())],
                ..input("a@example.com")
            })
            .unwrap();
        data.set_field_value(contact, field, "pro".into()).unwrap();
        let snapshot = data.snapshot();
        assert_eq!(snapshot.field_values.len(), 1);
        let id = contact.to_string();
        assert_eq!(
            snapshot.field_value(&id, "CB_PLAN_ID").as_deref(),
            Some("pro")
        );
        assert_eq!(
            snapshot.field_value(&id, "Cb Plan Id").as_deref(),
            Some("pro")
        );
    }

    #[test]
    fn tags_lists_and_deletion() {
        let mut data = AccountData::default();
        let contact = data.create_contact(input("a@example.com")).unwrap();
        let tag = data
            .create_tag(Some("Customer".into()), None, None)
            .unwrap();
        assert_eq!(
            data.create_tag(Some("customer".into()), None, None),
            Err(ApiError::duplicate_tag("customer"))
        );
        let (first, created) = data.tag_contact(contact, tag).unwrap();
        let first = first.id.clone();
        assert!(created);
        let (second, created) = data.tag_contact(contact, tag).unwrap();
        assert_eq!((second.id.clone(), created), (first, false));

        let list = data
            .create_list(ListInput {
                name: Some("Customers".into()),
                stringid: Some("customers".into()),
                sender_url: Some("https://example.com".into()),
                sender_reminder: Some("You bought something".into()),
            })
            .unwrap();
        data.set_list_status(contact, list, 1).unwrap();
        data.set_list_status(contact, list, 2).unwrap();
        let snapshot = data.snapshot();
        let id = contact.to_string();
        assert_eq!(snapshot.tags_of(&id), vec!["Customer".to_owned()]);
        assert_eq!(snapshot.lists_of(&id), vec![(list.to_string(), 2)]);

        data.delete_contact(contact).unwrap();
        let snapshot = data.snapshot();
        assert!(snapshot.contacts.is_empty());
        assert!(snapshot.contact_tags.is_empty());
        assert!(snapshot.contact_lists.is_empty());
        assert_eq!(snapshot.tags.len(), 1);
        assert_eq!(
            data.delete_contact(contact),
            Err(ApiError::contact_not_deleted(contact))
        );
    }
}
