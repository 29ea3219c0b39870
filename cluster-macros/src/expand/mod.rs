//! Code generation for both attributes.

pub(crate) mod actor;
pub(crate) mod message;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Ident, LitStr};

/// The expression of an item's stable name: the override, or its module path and name.
pub(crate) fn stable_name(ident: &Ident, name: Option<&LitStr>) -> TokenStream {
    match name {
        Some(n) => quote!(#n),
        None => {
            let text = ident.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #text))
        }
    }
}

/// Where the item is defined, for error messages.
pub(crate) fn rust_path(ident: &Ident) -> TokenStream {
    let text = ident.to_string();
    quote!(::core::concat!(::core::module_path!(), "::", #text))
}
