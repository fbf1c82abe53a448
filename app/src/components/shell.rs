//! The frame around every page: brand, navigation, and a pill that says when this tab is
//! training (so it stays visible from the dashboard).

use dioxus::prelude::*;

use crate::trainer::use_trainer;
use crate::Route;

/// Header and navigation around the routed page.
#[component]
pub fn Shell() -> Element {
    let trainer = use_trainer();
    let training = trainer.view.read().is_active();
    rsx! {
        header { class: "top",
            Link { class: "brand", to: Route::Contribute {},
                span { class: "flame", "aria-hidden": "true" }
                "bonfire"
            }
            nav { class: "nav",
                Link { to: Route::Contribute {}, active_class: "active", "Contribute" }
                Link { to: Route::Dashboard {}, active_class: "active", "Dashboard" }
            }
            if training {
                span { class: "pill training", title: "this tab is training", "training" }
            }
        }
        main { class: "page", Outlet::<Route> {} }
        footer { class: "foot", "Everyone brings a log." }
    }
}
