//! `roamgate billing`: the debiting service (placeholder; replaced by the
//! service's own module at merge).

pub mod radius;
