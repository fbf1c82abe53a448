//! One file per route.

mod contribute;
mod dashboard;
mod not_found;

pub use contribute::Contribute;
pub use dashboard::Dashboard;
pub use not_found::NotFound;
