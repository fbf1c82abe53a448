//! The roles a native peer plays. Each is a set of async tasks that talk to the network
//! through a [`crate::net::Client`], never to the swarm.

pub mod attest;
pub mod coordinator;
pub mod gossiped;
pub mod join;
pub mod reducer;
pub mod seed;
pub mod trainer;
pub mod validator;
