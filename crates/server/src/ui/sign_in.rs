//! `GET /login` (the form), `POST /login` (the admin token, or a user's name and password,
//! starts a session) and `POST /logout`.
//!
//! The sign-in form is protected against cross-site posts like every other form: `GET /login`
//! sets a short cookie with a random token the form carries back, and `POST /login` refuses a
//! form whose token does not match (a double-submit check, as there is no session yet). A wrong
//! token or password answers 401, which the limits on failed authentication count like any
//! other.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;

use crate::core::Core;
use crate::core::sessions::random_token;
use crate::ui::page::{PageError, frame};
use crate::ui::session::{
    SESSION_COOKIE, cookie, csrf_matches, local_path, same_secret, see_other, see_other_setting,
    session_of, set_cookie,
};

/// The cookie that carries the sign-in form's own CSRF token.
const SIGN_IN_COOKIE: &str = "wharf_sign_in";

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/login", get(form).post(sign_in))
        .route("/logout", post(sign_out))
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn form(
    State(core): State<Core>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, PageError> {
    let next = local_path(query.next.as_deref()).to_owned();
    if session_of(&headers, &core).await?.is_some() {
        return Ok(see_other(&next));
    }
    Ok(form_page(&core, &next, StatusCode::OK, None))
}

/// The form, with a fresh CSRF token in it and in its cookie.
fn form_page(core: &Core, next: &str, status: StatusCode, problem: Option<&str>) -> Response {
    let csrf = random_token();
    let mut response = (status, sign_in_form(&csrf, next, problem)).into_response();
    response.headers_mut().append(
        axum::http::header::SET_COOKIE,
        set_cookie(core, SIGN_IN_COOKIE, &csrf),
    );
    response
}

fn sign_in_form(csrf: &str, next: &str, problem: Option<&str>) -> Markup {
    frame(
        "Sign in",
        None,
        html! {
            form.sign-in method="post" action="/login" {
                h1 { "Sign in to Wharf" }
                @if let Some(problem) = problem {
                    p.error role="alert" { (problem) }
                }
                input type="hidden" name="csrf_token" value=(csrf);
                input type="hidden" name="next" value=(next);
                label { "User (leave empty for the admin token)"
                    input type="text" name="user" autocomplete="username";
                }
                label { "Token or password"
                    input type="password" name="token" required autofocus autocomplete="current-password";
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    user: String,
    next: Option<String>,
}

async fn sign_in(
    State(core): State<Core>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    let next = local_path(form.next.as_deref()).to_owned();
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(expected, &form.csrf_token) {
        return Ok(form_page(
            &core,
            &next,
            StatusCode::FORBIDDEN,
            Some("The sign-in form had expired or came from another site. Sign in again."),
        ));
    }
    let user = Some(form.user.trim()).filter(|user| !user.is_empty());
    match core.sign_in(user, form.token.trim()).await? {
        Some(session) => Ok(see_other_setting(
            &next,
            &[
                set_cookie(&core, SESSION_COOKIE, &session.id),
                set_cookie(&core, SIGN_IN_COOKIE, ""),
            ],
        )),
        None => Ok(form_page(
            &core,
            &next,
            StatusCode::UNAUTHORIZED,
            Some(match user {
                None => "That is not the admin token.",
                Some(_) => "No such user, or not their password.",
            }),
        )),
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf_token: String,
}

async fn sign_out(
    State(core): State<Core>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Result<Response, PageError> {
    if let Some(session) = session_of(&headers, &core).await? {
        if !csrf_matches(&session, Some(&form.csrf_token)) {
            return Err(crate::http::HttpError::Forbidden(
                "the sign-out form came from another site".to_owned(),
            )
            .into());
        }
        core.sign_out(&session.id).await?;
    }
    Ok(see_other_setting(
        "/login",
        &[set_cookie(&core, SESSION_COOKIE, "")],
    ))
}
