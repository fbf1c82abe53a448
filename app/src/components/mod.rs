//! Widgets shared by the pages: the page shell, stat cards, charts, banners and event lines.

mod banner;
mod line_chart;
mod network_event;
mod shell;
mod sparkline;
mod stat;

pub use banner::Banner;
pub use line_chart::{Axis, LineChart, Series};
pub use network_event::NetworkEventItem;
pub use shell::Shell;
pub use sparkline::Sparkline;
pub use stat::Stat;
