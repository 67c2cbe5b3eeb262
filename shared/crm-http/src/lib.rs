//! The CRM HTTP transport of the destination kit: what every CRM client would otherwise
//! write again around `reqwest` — vector's `sinks/util/{http,retries}` for billsync.
//!
//! A vendor client holds its endpoints, its types and its one [`Vendor::classify`]; it sends
//! every request through a [`CrmTransport`], which
//! - paces requests at the account's rate, in this process ([`RateLimiter`]) or across every
//!   replica (`billsync_bus::SharedRateLimiter`), and after a `Retry-After` holds back every
//!   caller, not only the one refused;
//! - charges budgets that are not requests per second ([`Budget`]: Pipedrive's daily tokens,
//!   Zoho's credits) and bounds concurrent calls per connection (Zoho's concurrency limit);
//! - counts and times each request (`billsync_crm_requests_total{destination, connection,
//!   endpoint, method, status}`, `billsync_crm_request_seconds{destination, connection,
//!   endpoint}`) with a bounded endpoint template, ids replaced (`/contacts/{id}`);
//! - runs each request in a `crm_request` span (destination, connection, method, endpoint,
//!   status; never a credential or a body);
//! - says in every error which call failed: method, endpoint template, status and the
//!   vendor's reason, never a secret.

mod budget;
pub mod endpoint;
mod rate_limit;
mod transport;

pub use budget::{Budget, CostFn, Overspent};
pub use rate_limit::RateLimiter;
pub use transport::{http_client, reword, Answer, Call, CrmTransport, Vendor};
