//! The CRM response classifiers: ActiveCampaign (v3 API and event tracking), Zoho CRM and
//! Pipedrive, i.e. what turns a vendor's answer into success, retryable or permanent.
//!
//! Input: `<status>\n<name: value>...\n\n<body>`. Properties: only a 2xx is a success; 5xx
//! and 429 are retryable; every failure carries the status; a `Retry-After` is never
//! taken beyond the cap.
#![no_main]

use billsync_activecampaign::api::{ActiveCampaignApi, EventTrackingApi};
use billsync_bus::MAX_RETRY_AFTER;
use billsync_crm_http::Vendor;
use billsync_pipedrive::api::PipedriveApi;
use billsync_worker::DeliveryError;
use billsync_zoho::api::ZohoCrm;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

fn check<V: Vendor>(status: StatusCode, headers: &HeaderMap, body: &[u8]) {
    match V::classify(status, headers, body) {
        Ok(()) => assert!(status.is_success(), "{}: {status} is a success", V::NAME),
        Err(DeliveryError::Retryable {
            retry_after,
            http_status,
            ..
        }) => {
            assert_eq!(http_status, Some(status.as_u16()), "{}", V::NAME);
            assert!(
                retry_after.is_none_or(|d| d <= MAX_RETRY_AFTER),
                "{}",
                V::NAME
            );
        }
        Err(DeliveryError::Permanent { http_status, .. }) => {
            assert_eq!(http_status, Some(status.as_u16()), "{}", V::NAME);
            assert!(
                !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS,
                "{}: {status} is permanent",
                V::NAME
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let Some(status) = lines
        .next()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
    else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let body = body.as_bytes();
    check::<ActiveCampaignApi>(status, &headers, body);
    check::<EventTrackingApi>(status, &headers, body);
    check::<ZohoCrm>(status, &headers, body);
    check::<PipedriveApi>(status, &headers, body);
});
