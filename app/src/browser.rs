//! Small, infallible views of the browser environment: the URL's query, the page origin and the
//! clock. Everything degrades to a sensible default instead of panicking, because a missing
//! `window` only happens in contexts where the UI cannot run anyway.

use std::cell::RefCell;

thread_local! {
    /// The query string the page was opened with, before the router touched the URL.
    static LAUNCH_QUERY: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the query string of the URL the page was opened with.
pub fn remember_launch_query() {
    let search = current_search();
    LAUNCH_QUERY.with(|q| *q.borrow_mut() = search);
}

fn current_search() -> String {
    web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default()
}

/// The value of `?name=` in the current URL, or else in the URL the page was opened with
/// (navigation inside the app drops the query, but `?experiment=` should stick).
pub fn query_param(name: &str) -> Option<String> {
    let from = |search: &str| {
        web_sys::UrlSearchParams::new_with_str(search)
            .ok()
            .and_then(|params| params.get(name))
            .filter(|value| !value.is_empty())
    };
    from(&current_search()).or_else(|| LAUNCH_QUERY.with(|q| from(&q.borrow())))
}

/// `scheme://host:port` of the page: the edge that served it.
pub fn origin() -> String {
    web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default()
}

/// Local wall-clock time as `HH:MM:SS`, for log lines.
pub fn clock() -> String {
    hms(&js_sys::Date::new_0())
}

/// The local time of a protocol timestamp as `HH:MM:SS`.
pub fn clock_at(at: protocol::UnixMillis) -> String {
    hms(&js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at as f64)))
}

fn hms(date: &js_sys::Date) -> String {
    format!("{:02}:{:02}:{:02}", date.get_hours(), date.get_minutes(), date.get_seconds())
}
