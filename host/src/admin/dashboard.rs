//! The live dashboard: `GET /` (the page), its script and style, `GET /history` (what changed since
//! the page last asked, bounded) and `GET /decision/SEQ` (one decision's full record).
//!
//! Everything the page needs is compiled into the binary: no CDN, font or other origin is ever
//! contacted, and a Content-Security-Policy of `'self'` makes the browser hold to that.
//!
//! With a token set, a browser signs in once: `POST /login` with the token (the login form, or the
//! page's script reading it from a `#token=...` fragment, which never reaches the server's logs)
//! sets an HttpOnly, SameSite=Strict session cookie. The cookie carries a digest of the token, not
//! the token, and only opens read-only requests (GET): `POST /policy` still needs the bearer token.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use super::AdminState;
use crate::server::history::{HistoryQuery, Lookup};
use crate::server::shell_status::unix_ms;

const PAGE: &str = include_str!("dashboard/page.html");
const SCRIPT: &str = include_str!("dashboard/page.js");
const STYLE: &str = include_str!("dashboard/page.css");
const LOGIN: &str = include_str!("dashboard/login.html");
const LOGIN_SCRIPT: &str = include_str!("dashboard/login.js");

/// The session cookie's name.
const COOKIE: &str = "ebbtide_session";
/// The largest `POST /login` body read.
const MAX_LOGIN_BYTES: usize = 4096;
/// Only this origin, and no framing: the page never talks to anything but the scheduler.
const CSP: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Routes behind the admin authorization (a token, or a session from `POST /login`).
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(|| async { asset(PAGE, "text/html; charset=utf-8") }))
        .route("/dashboard.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/history", get(history))
        .route("/decision/{seq}", get(decision))
}

/// Routes anyone may reach: signing in and out, and the style the login form shares.
pub(super) fn public_routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/login",
            get(|| async { login_page(StatusCode::OK, "") })
                .post(login)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BYTES)),
        )
        .route("/login.js", get(|| async { asset(LOGIN_SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/dashboard.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/logout", post(logout))
}

/// Whether a read-only request carries the session cookie of this token.
pub(super) fn session_allows(request: &Request, token: &str) -> bool {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return false;
    }
    let expected = session_value(token);
    cookie(request.headers()).is_some_and(|v| crate::scheduler::constant_time_eq(v.as_bytes(), expected.as_bytes()))
}

/// For a refused request for the page itself, the login form (a browser lands there first).
pub(super) fn login_instead(request: &Request) -> Option<Response> {
    (request.method() == Method::GET && request.uri().path() == "/").then(|| login_page(StatusCode::UNAUTHORIZED, ""))
}

fn login_page(code: StatusCode, message: &str) -> Response {
    let page = LOGIN.replace("<!--message-->", message);
    let mut response = (code, page).into_response();
    headers(response.headers_mut(), "text/html; charset=utf-8");
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    headers(response.headers_mut(), content_type);
    response
}

fn headers(h: &mut HeaderMap, content_type: &'static str) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

async fn history(State(state): State<AdminState>, Query(query): Query<HistoryQuery>) -> Response {
    // Copy the bounded page out under the lock; serialize after releasing it.
    let page = state.scheduler.history().page(&query, unix_ms());
    let mut response = axum::Json(page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn decision(State(state): State<AdminState>, Path(seq): Path<u64>) -> Response {
    let lookup = state.scheduler.history().lookup(seq);
    match lookup {
        Lookup::Found(line) => {
            let mut response = line.to_string().into_response();
            headers(response.headers_mut(), "application/json");
            response
        }
        Lookup::NoRecord(detail) => (
            StatusCode::NOT_FOUND,
            format!(
                "decision {seq} is in the history but its full record is not kept ({}); raise history_detail_mib, or read it in the --decision-log file\n",
                serde_json::to_value(detail).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            ),
        )
            .into_response(),
        Lookup::Unknown => (
            StatusCode::NOT_FOUND,
            format!("decision {seq} is not in the history, which keeps the last history_decisions decisions\n"),
        )
            .into_response(),
    }
}

/// `POST /login` with `token=...` (a form) or the bare token: sets the session cookie and sends the
/// browser to the page.
async fn login(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = &state.token else {
        return see_other("/", None);
    };
    let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let given = if form.starts_with("application/x-www-form-urlencoded") {
        form_field(&body, "token").unwrap_or_default()
    } else {
        String::from_utf8_lossy(&body).trim().to_owned()
    };
    if !crate::scheduler::constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return login_page(StatusCode::UNAUTHORIZED, "That token is not this scheduler's.");
    }
    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", session_value(token));
    see_other("/", Some(cookie))
}

async fn logout() -> Response {
    see_other("/", Some(format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")))
}

fn see_other(location: &'static str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(location));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, value);
    }
    response
}

/// The cookie's value: a digest of the token, so the cookie alone never reveals it.
fn session_value(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"ebbtide-dashboard-session\0");
    hash.update(token.as_bytes());
    hex::encode(hash.finalize())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')))
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let value = text.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_percent_decoded() {
        assert_eq!(form_field(b"token=a%2Bb+c%25", "token").as_deref(), Some("a+b c%"));
        assert_eq!(form_field(b"other=1&token=x", "token").as_deref(), Some("x"));
        assert_eq!(form_field(b"token=%zz", "token"), None);
        assert_eq!(form_field(b"token=%2", "token"), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; ebbtide_session=abc; b=2"));
        assert_eq!(cookie(&h), Some("abc"));
        assert_ne!(session_value("t"), "t");
    }
}
