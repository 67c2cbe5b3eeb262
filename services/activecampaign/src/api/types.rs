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
