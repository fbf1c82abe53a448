//! A labelled value card; the value element carries the id tests and scripts look for.

use dioxus::prelude::*;

/// One labelled figure. `children` is the value, already wrapped in its identified element.
#[component]
pub fn Stat(label: String, children: Element) -> Element {
    rsx! {
        div { class: "stat",
            div { class: "stat-label", "{label}" }
            div { class: "stat-value", {children} }
        }
    }
}
