//! [`HttpRoute`]: the route template, for servers whose router is not axum's.

use std::sync::Arc;

/// The route template a router matched (`/users/{id}`), given to obs by routers other than
/// axum's (whose `MatchedPath` obs reads itself). Insert it into the request's extensions
/// before `obs.layer()` sees the request; it becomes the `http_route` label, the span's
/// `http.route` and name, and Sentry's `http.route` tag. Give a template, never the raw path:
/// label values must stay few.
///
/// ```
/// use obs::http::HttpRoute;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(HttpRoute::new("/users/{id}")); // no allocation
/// assert_eq!(req.extensions().get::<HttpRoute>().unwrap().as_str(), "/users/{id}");
/// let loaded = HttpRoute::from(String::from("/tenants/{tenant}/orders")); // from a table
/// assert_eq!(loaded.as_str(), "/tenants/{tenant}/orders");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute(Template);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Template {
    Static(&'static str),
    Shared(Arc<str>),
}

impl HttpRoute {
    /// A route from a template known at compile time.
    pub const fn new(template: &'static str) -> Self {
        Self(Template::Static(template))
    }

    /// The template.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Template::Static(s) => s,
            Template::Shared(s) => s,
        }
    }
}

impl From<String> for HttpRoute {
    fn from(template: String) -> Self {
        Self(Template::Shared(template.into()))
    }
}

impl From<Arc<str>> for HttpRoute {
    fn from(template: Arc<str>) -> Self {
        Self(Template::Shared(template))
    }
}
