//! Page handlers. A page renders its shell and who is signed in; its script loads the data
//! from the REST API. Templates live in `crates/server/templates/` and are compiled in.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::auth::{ACCESS_COOKIE, CurrentUser, cookie_of, user_from_access_token};
use crate::error::ApiError;
use crate::state::AppState;

use super::assets;

/// What every page's frame needs: title, header (when signed in), scripts.
pub struct Layout {
    pub title: &'static str,
    /// Which header link is current: "flows", "settings", "admin" or "".
    pub section: &'static str,
    pub user: Option<Arc<CurrentUser>>,
    /// Page scripts, after `app.js`.
    pub scripts: &'static [&'static str],
}

impl Layout {
    pub fn asset(&self, name: &str) -> String {
        assets::url(name)
    }

    /// The avatar letter: the username's first character, upper-cased.
    pub fn initial(&self) -> String {
        self.user
            .as_ref()
            .and_then(|u| u.username.chars().next())
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    layout: Layout,
}

#[derive(Template)]
#[template(path = "variables.html")]
struct VariablesPage {
    layout: Layout,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    me: String,
}

#[derive(Template)]
#[template(path = "flows.html")]
struct FlowsPage {
    layout: Layout,
}

#[derive(Template)]
#[template(path = "flow.html")]
struct FlowPage {
    layout: Layout,
    /// The flow's id (canonical, whatever the URL named it by); the script loads the rest.
    flow_id: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: &'static str,
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::Internal(anyhow::anyhow!("rendering a page: {e}")).into_response(),
    }
}

/// The signed-in user, from the access cookie. `Ok(None)` when there is no valid session.
async fn signed_in(state: &AppState, parts: &Parts) -> Result<Option<Arc<CurrentUser>>, ApiError> {
    let Some(token) = cookie_of(parts, ACCESS_COOKIE) else {
        return Ok(None);
    };
    match user_from_access_token(state, token).await {
        Ok(user) => Ok(Some(user)),
        Err(ApiError::Unauthorized(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A page for when the server itself failed (the database is down, say).
fn server_error(err: ApiError) -> Response {
    tracing::warn!(error = %err, "a page could not be served");
    let status = match err.status() {
        StatusCode::SERVICE_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let page = ErrorPage {
        layout: Layout {
            title: "Something went wrong",
            section: "",
            user: None,
            scripts: &[],
        },
        heading: "Something went wrong",
        message: "flowgate could not load this page. Try again in a moment.",
    };
    render(status, &page)
}

/// `/login?next=<this page>`.
fn to_login(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let query = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
    Redirect::to(&format!("/login?{query}")).into_response()
}

/// Where to go after logging in: a path on this site, never another origin (`//evil`,
/// `/\evil`), never the login page itself.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 2048
                && !n.chars().any(char::is_control)
                && n != "/login"
                && !n.starts_with("/login?") =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The page signed-in people start from.
const HOME: &str = "/flows";

pub async fn home(State(state): State<AppState>, parts: Parts) -> Response {
    match signed_in(&state, &parts).await {
        Ok(Some(_)) => Redirect::to(HOME).into_response(),
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) => server_error(e),
    }
}

pub async fn login(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    parts: Parts,
) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let next = safe_next(
        pairs
            .iter()
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.as_str()),
    );
    match signed_in(&state, &parts).await {
        Ok(Some(_)) => return Redirect::to(&next).into_response(),
        Ok(None) => {}
        Err(e) => return server_error(e),
    }
    let page = LoginPage {
        layout: Layout {
            title: "Log in",
            section: "",
            user: None,
            scripts: &["login.js"],
        },
        next,
    };
    render(StatusCode::OK, &page)
}

pub async fn settings() -> Redirect {
    // The first settings page; `/settings/variables` sits beside it.
    Redirect::to("/settings/api-keys")
}

pub async fn api_keys(State(state): State<AppState>, parts: Parts) -> Response {
    let user = match signed_in(&state, &parts).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_login(&parts),
        Err(e) => return server_error(e),
    };
    let page = ApiKeysPage {
        layout: Layout {
            title: "Langflow API",
            section: "settings",
            user: Some(user),
            scripts: &["api-keys.js"],
        },
    };
    render(StatusCode::OK, &page)
}

/// Settings → Global Variables. Credential values never reach the page: the API does not
/// return them and the script masks them.
pub async fn variables(State(state): State<AppState>, parts: Parts) -> Response {
    let user = match signed_in(&state, &parts).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_login(&parts),
        Err(e) => return server_error(e),
    };
    let page = VariablesPage {
        layout: Layout {
            title: "Global Variables",
            section: "settings",
            user: Some(user),
            scripts: &["variables.js"],
        },
    };
    render(StatusCode::OK, &page)
}

pub async fn flows(State(state): State<AppState>, parts: Parts) -> Response {
    let user = match signed_in(&state, &parts).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_login(&parts),
        Err(e) => return server_error(e),
    };
    let page = FlowsPage {
        layout: Layout {
            title: "Flows",
            section: "flows",
            user: Some(user),
            scripts: &["flows.js"],
        },
    };
    render(StatusCode::OK, &page)
}

/// One flow: its graph, endpoint name, API snippets and playground. The flow is looked up here
/// (by id or endpoint name, the caller's only) so a missing one is a real 404 page.
pub async fn flow(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    parts: Parts,
) -> Response {
    let user = match signed_in(&state, &parts).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_login(&parts),
        Err(e) => return server_error(e),
    };
    let record = match crate::routes::flows::find_flow(&state, &user.id, &ident).await {
        Ok(record) => record,
        Err(ApiError::NotFound(_)) => {
            let page = ErrorPage {
                layout: Layout {
                    title: "Flow not found",
                    section: "flows",
                    user: Some(user),
                    scripts: &[],
                },
                heading: "Flow not found",
                message: "There is no flow of yours at this address. It may have been deleted.",
            };
            return render(StatusCode::NOT_FOUND, &page);
        }
        Err(e) => return server_error(e),
    };
    let page = FlowPage {
        flow_id: record.id,
        layout: Layout {
            title: "Flow",
            section: "flows",
            user: Some(user),
            scripts: &["flow.js"],
        },
    };
    render(StatusCode::OK, &page)
}

pub async fn users(State(state): State<AppState>, parts: Parts) -> Response {
    let user = match signed_in(&state, &parts).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_login(&parts),
        Err(e) => return server_error(e),
    };
    if !user.is_superuser {
        let page = ErrorPage {
            layout: Layout {
                title: "Not allowed",
                section: "",
                user: Some(user),
                scripts: &[],
            },
            heading: "You don't have access to this page",
            message: "Managing users is for superusers. Ask a superuser of this flowgate \
                      if you need an account changed.",
        };
        return render(StatusCode::FORBIDDEN, &page);
    }
    let page = UsersPage {
        me: user.id.clone(),
        layout: Layout {
            title: "Users",
            section: "admin",
            user: Some(user),
            scripts: &["users.js"],
        },
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/settings/api-keys")), "/settings/api-keys");
        assert_eq!(safe_next(Some("/admin/users?x=1")), "/admin/users?x=1");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "",
            "/login",
            "/login?next=/",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
