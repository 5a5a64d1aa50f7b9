//! The App's webhook deliveries: every attempt the stand-in made at sending a webhook to the
//! App's webhook URL, listed newest first with GitHub's `cursor` pages, and redelivered on
//! request. A redelivery is really sent: the signed webhook is POSTed to the URL the test set,
//! under the event's same `X-GitHub-Delivery`, and its outcome is another attempt in the list.
//! (GitHub answers 202 and sends it soon after; the stand-in sends it before answering, so a
//! test sees redeliveries arrive in the order they were asked for.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

use super::request::{ApiRequest, Handled};
use super::response::ApiResponse;
use crate::state::{HookDelivery, Shared};

/// What a webhook is, before an attempt at sending it.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub guid: String,
    pub event: String,
    pub body: Vec<u8>,
}

/// Sends `webhook` to the App's webhook URL once and records the attempt: the receiver's
/// status, or 0 and "failed to connect" when it could not be reached (or no URL is set).
pub(crate) async fn attempt(shared: &Arc<Shared>, webhook: &Webhook, redelivery: bool) -> u64 {
    let target = shared.lock().webhook_target.clone();
    let started = Instant::now();
    let (status_code, status) = match target {
        None => (0, "failed to connect".to_owned()),
        Some(target) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(target.secret.as_bytes())
                .expect("HMAC takes any key");
            mac.update(&webhook.body);
            let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            let sent = reqwest::Client::new()
                .post(&target.url)
                .timeout(Duration::from_secs(10))
                .header("content-type", "application/json")
                .header("user-agent", "GitHub-Hookshot/standin")
                .header("x-github-event", &webhook.event)
                .header("x-github-delivery", &webhook.guid)
                .header("x-github-hook-installation-target-type", "integration")
                .header("x-hub-signature-256", signature)
                .body(webhook.body.clone())
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let code = response.status().as_u16();
                    let status = if response.status().is_success() {
                        "OK".to_owned()
                    } else {
                        format!("Invalid HTTP Response: {code}")
                    };
                    (code, status)
                }
                Err(error) if error.is_timeout() => (0, "timed out".to_owned()),
                Err(_) => (0, "failed to connect".to_owned()),
            }
        }
    };
    record(
        shared,
        webhook,
        redelivery,
        status_code,
        status,
        started.elapsed().as_secs_f64(),
    )
}

/// Records an attempt at `webhook` that ended with `status_code`; answers its id.
pub(crate) fn record(
    shared: &Shared,
    webhook: &Webhook,
    redelivery: bool,
    status_code: u16,
    status: String,
    duration: f64,
) -> u64 {
    let parsed: Value = serde_json::from_slice(&webhook.body).unwrap_or(Value::Null);
    let mut state = shared.lock();
    let id = state.next_hook_delivery_id;
    state.next_hook_delivery_id += 1;
    state.hook_deliveries.push(HookDelivery {
        id,
        guid: webhook.guid.clone(),
        event: webhook.event.clone(),
        action: parsed["action"].as_str().map(str::to_owned),
        installation_id: parsed["installation"]["id"].as_u64(),
        repository_id: parsed["repository"]["id"].as_u64(),
        body: webhook.body.clone(),
        delivered_at: OffsetDateTime::now_utc(),
        redelivery,
        status_code,
        status,
        duration,
    });
    id
}

/// `GET /app/hook/deliveries`: newest first, `per_page` at a time (30 unless asked, at most
/// 100), from the attempt the `cursor` names; `status` keeps successes (2xx and 3xx) or
/// failures (4xx and 5xx) only, as GitHub does.
pub(super) fn list_deliveries(request: &ApiRequest<'_>) -> Handled {
    request.require_app()?;
    let per_page = request
        .query_value("per_page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|value| *value > 0)
        .unwrap_or(30)
        .min(100);
    let from = match request.query_value("cursor") {
        None => u64::MAX,
        Some(cursor) => cursor
            .strip_prefix("v1_")
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| ApiResponse::error(400, "Invalid cursor"))?,
    };
    let status = request.query_value("status").map(str::to_owned);
    let matching: Vec<HookDelivery> = request
        .shared
        .lock()
        .hook_deliveries
        .iter()
        .rev()
        .filter(|delivery| delivery.id <= from)
        .filter(|delivery| match status.as_deref() {
            Some("success") => (200..400).contains(&delivery.status_code),
            Some("failure") => (400..600).contains(&delivery.status_code),
            _ => true,
        })
        .take(per_page + 1)
        .cloned()
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .take(per_page)
        .map(HookDelivery::object)
        .collect();
    let mut response = ApiResponse::json(200, Value::Array(page));
    if let Some(next) = matching.get(per_page) {
        response = response.with_header(
            "link",
            format!(
                "<{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
                request.api_url(),
                next.id
            ),
        );
    }
    Ok(response)
}

/// `POST /app/hook/deliveries/{delivery_id}/attempts`: sends that attempt's webhook again.
pub(super) async fn redeliver(request: &ApiRequest<'_>, id: &str) -> Handled {
    request.require_app()?;
    let id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let webhook = request
        .shared
        .lock()
        .hook_deliveries
        .iter()
        .find(|delivery| delivery.id == id)
        .map(|delivery| Webhook {
            guid: delivery.guid.clone(),
            event: delivery.event.clone(),
            body: delivery.body.clone(),
        })
        .ok_or_else(ApiResponse::not_found)?;
    attempt(request.shared, &webhook, true).await;
    Ok(ApiResponse::json(202, json!({})))
}
