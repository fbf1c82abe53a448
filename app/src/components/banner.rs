//! A one-line notice at the top of a page (edge unreachable, stream interrupted, …).

use dioxus::prelude::*;

/// Shows `message` when there is one; `tone` is a CSS class (`error`, `warn`, `info`).
#[component]
pub fn Banner(message: Option<String>, tone: String) -> Element {
    rsx! {
        if let Some(message) = message {
            p { class: "banner {tone}", role: "status", "{message}" }
        }
    }
}
