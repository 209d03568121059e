//! [`config_setters!`](crate::config_setters) and [`config_getters!`](crate::config_getters):
//! the consuming `with_*` setters and the getters of the workspace's `Config`s (this crate's,
//! `ipfs-formats`' and `bitswap`'s), written once here, the crate all of them depend on. Each
//! entry keeps its own doc, which states the default and the unit, so rustdoc shows the methods
//! as if written by hand.

/// Consuming setters, one per entry: `with_x(arg: T) -> field` stores `arg` in `self.field`,
/// and `with_x(arg: T) -> field = expr` stores `expr` (a clamp, a floor) instead. For the
/// workspace's `Config`s; not part of this crate's API.
#[doc(hidden)]
#[macro_export]
macro_rules! config_setters {
    ($(
        $(#[$doc:meta])*
        $setter:ident($arg:ident: $ty:ty) -> $field:ident $(= $value:expr)?;
    )*) => {$(
        $(#[$doc])*
        pub fn $setter(mut self, $arg: $ty) -> Self {
            self.$field = $crate::config_setters!(@value $arg $(, $value)?);
            self
        }
    )*};
    (@value $arg:ident) => { $arg };
    (@value $arg:ident, $value:expr) => { $value };
}

/// Getters of `Copy` fields, one per entry: `field: T` returns `self.field`. For the
/// workspace's `Config`s; not part of this crate's API.
#[doc(hidden)]
#[macro_export]
macro_rules! config_getters {
    ($(
        $(#[$doc:meta])*
        $field:ident: $ty:ty;
    )*) => {$(
        $(#[$doc])*
        pub fn $field(&self) -> $ty {
            self.$field
        }
    )*};
}
