//! Request and response bodies of the ActiveCampaign endpoints billsync calls.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize)]
pub struct ContactSyncRequest<'a> {
    pub contact: ContactInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactInput<'a> {
    pub email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<&'a str>,
    /// Custom field values, by field id.
    #[serde(rename = "fieldValues", skip_serializing_if = "Vec::is_empty")]
    pub field_values: Vec<FieldValueInput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldValueInput {
    pub field: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldRequest<'a> {
    pub field: FieldInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldInput<'a> {
    pub title: &'a str,
    #[serde(rename = "type")]
    pub field_type: &'a str,
    pub perstag: &'a str,
    pub descript: &'a str,
    pub visible: u8,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldEnvelope {
    pub field: Field,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldPage {
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub perstag: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactListRequest<'a> {
    #[serde(rename = "contactList")]
    pub contact_list: ContactListInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactListInput<'a> {
    pub list: &'a str,
    pub contact: &'a str,
    /// 1 subscribes, 2 unsubscribes.
    pub status: u8,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactEnvelope {
    pub contact: Contact,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagRequest<'a> {
    pub tag: TagInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagInput<'a> {
    pub tag: &'a str,
    pub tag_type: &'a str,
    pub description: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TagEnvelope {
    pub tag: Tag,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TagList {
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    pub id: String,
    pub tag: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactTagRequest<'a> {
    #[serde(rename = "contactTag")]
    pub contact_tag: ContactTagInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactTagInput<'a> {
    pub contact: &'a str,
    pub tag: &'a str,
}
