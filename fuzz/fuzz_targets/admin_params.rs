//! The errors service admin API's filter and paging parameters, as query strings and as
//! the JSON bodies of the bulk actions.
//!
//! Input: a query string (also tried as a body). Properties: a refusal is a 400, never
//! anything else; an accepted limit is within 1..=500; a cursor the API accepts is one it
//! could have given out (it re-encodes to the same position); a bulk action's filter is
//! the listing's filter.
#![no_main]

use billsync_errors::api::{
    encode_cursor, read_query, FailureParams, Page, RunListParams, RunParams,
};
use billsync_errors::error::ApiError;
use billsync_errors::store::FailureStatus;
use http::Uri;
use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;

fn refused<T: Debug>(result: &Result<T, ApiError>) {
    if let Err(e) = result {
        assert!(
            matches!(e, ApiError::BadRequest(m) if !m.is_empty()),
            "{e:?}"
        );
    }
}

fn page_is_sound<K: Clone + std::fmt::Display + PartialEq + Debug>(
    page: &Page<K>,
    reread: impl Fn(&str) -> Result<Page<K>, ApiError>,
) {
    assert!((1..=500).contains(&page.limit), "{}", page.limit);
    if let Some((at, key)) = &page.after {
        let cursor = encode_cursor(*at, key);
        let again = reread(&cursor).expect("a cursor the API gives out");
        assert_eq!(again.after, page.after, "cursor {cursor:?}");
    }
}

fn check_failures(params: &FailureParams) {
    let filter = params.filter();
    refused(&filter);
    let page = params.page();
    refused(&page);
    if let Ok(page) = &page {
        page_is_sound(page, |cursor| {
            FailureParams {
                cursor: Some(cursor.to_string()),
                ..FailureParams::default()
            }
            .page()
        });
    }
    for required in [None, Some(FailureStatus::Open)] {
        let action = params.action_filter(required);
        refused(&action);
        if let Ok(action) = action {
            assert_eq!(Some(&action), filter.as_ref().ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let body = FailureParams::from_body(data);
    refused(&body);
    if let Ok(params) = body {
        check_failures(&params);
    }

    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/api/v1/failures?{query}").parse::<Uri>() else {
        return;
    };
    let failures = read_query::<FailureParams>(&uri);
    refused(&failures);
    if let Ok(params) = failures {
        check_failures(&params);
    }
    let runs = read_query::<RunListParams>(&uri);
    refused(&runs);
    if let Ok(runs) = runs {
        let page = runs.page();
        refused(&page);
        if let Ok(page) = page {
            page_is_sound(&page, |cursor| {
                RunListParams {
                    cursor: Some(cursor.to_string()),
                    limit: None,
                }
                .page()
            });
        }
    }
    let run = read_query::<RunParams>(&uri);
    refused(&run);
    if let Ok(run) = run {
        refused(&run.status());
        let page = run.page();
        refused(&page);
        if let Ok((limit, _)) = page {
            assert!((1..=500).contains(&limit));
        }
    }
});
