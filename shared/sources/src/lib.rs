//! Source views: how a billing object is read from events, the same for every CRM.
//!
//! Events carry vendor objects as they were when each event happened, and several objects
//! carry copies of one customer. These are the rules a destination applies before its own
//! mapping, so ActiveCampaign, Zoho CRM and Pipedrive read one customer the same way:
//!
//! - [`chargebee`]: the newest copy of a customer by `resource_version`, whichever event
//!   brings it; the subscription shown when a customer has several; deletions are final.
//! - [`stripe`]: the customer data every event type carries, shaped like a Stripe customer
//!   so one mapping serves all of them.
//!
//! Each view names the fields a mapping expression may start with, so a configured
//! mapping is checked against what the view really holds: [`sync`] reads every sync's
//! options and mapping against what its destination declares.

pub mod chargebee;
pub mod stripe;
pub mod sync;

#[cfg(any(test, feature = "test-support"))]
pub mod test_events;
