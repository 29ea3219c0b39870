//! What is emitted when the input is invalid: the user's item unchanged, the errors, and
//! stand-in impls that keep the user's other code (handlers) from erroring in cascade.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Target;

/// Item + errors + `impl Message` if the result type is known.
pub(crate) fn message(target: &mut Target, result: Option<&syn::Type>, errors: TokenStream) -> TokenStream {
    target.route_serde_derives();
    let item = &target.item;
    let generic = target.generics().is_some_and(|g| !g.params.is_empty());
    let stub = match (target.ident(), result) {
        (Some(ident), Some(result)) if !generic => quote! {
            impl ::actix_cluster::__private::actix::Message for #ident {
                type Result = #result;
            }
        },
        _ => TokenStream::new(),
    };
    quote! { #item #errors #stub }
}

/// Item + errors + `impl Actor` unless the user writes their own.
pub(crate) fn actor(target: &mut Target, manual_actor: bool, errors: TokenStream) -> TokenStream {
    target.route_serde_derives();
    let item = &target.item;
    let stub = match target.ident() {
        Some(ident) if !manual_actor && target.generics().is_some_and(|g| g.params.is_empty()) => quote! {
            impl ::actix_cluster::__private::actix::Actor for #ident {
                type Context = ::actix_cluster::__private::actix::Context<Self>;
            }
        },
        _ => TokenStream::new(),
    };
    quote! { #item #errors #stub }
}
