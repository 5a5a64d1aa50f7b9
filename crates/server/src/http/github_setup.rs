//! `GET /api/github/setup?installation_id=…&setup_action=…`: where GitHub sends a user's
//! browser after they install the App. The core records the installation as GitHub describes
//! it (nothing in the query is trusted), then the browser goes to the dashboard.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Redirect;
use axum::routing::get;
use serde::Deserialize;

use crate::core::Core;
use crate::http::HttpError;

pub(crate) fn router() -> Router<Core> {
    Router::new().route("/api/github/setup", get(setup))
}

#[derive(Deserialize)]
struct SetupQuery {
    installation_id: Option<String>,
    setup_action: Option<String>,
}

async fn setup(
    State(core): State<Core>,
    Query(query): Query<SetupQuery>,
) -> Result<Redirect, HttpError> {
    core.installation_set_up(
        query.setup_action.as_deref(),
        query.installation_id.as_deref(),
    )
    .await?;
    Ok(Redirect::to("/"))
}
