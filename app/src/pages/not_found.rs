//! Any other path: say so and point home, instead of a blank page.

use dioxus::prelude::*;

use crate::Route;

/// The page for unknown paths.
#[component]
pub fn NotFound(segments: Vec<String>) -> Element {
    let path = format!("/{}", segments.join("/"));
    rsx! {
        section { class: "panel",
            h1 { "Nothing at {path}" }
            p {
                "Try "
                Link { to: Route::Contribute {}, "Contribute" }
                " or the "
                Link { to: Route::Dashboard {}, "Dashboard" }
                "."
            }
        }
    }
}
