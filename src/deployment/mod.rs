//! The StackDeployment controller's decision: one template revision rolled
//! out to many targets through child `Stack`s. Pure: the wiring observes,
//! calls [`decide`], and applies the [`Plan`].

pub mod decide;
pub mod plan;

pub use decide::decide;
pub use plan::{Observed, Plan};
