//! `#[cluster_message]`: actix `Message`, `ClusterMessage` and the inventory entry.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::Target;
use crate::attr;
use crate::ctxt::Ctxt;
use crate::fallback;
use crate::validate;

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = attr::parse_message_args(&mut cx, args);
    let mut target = match Target::parse(input) {
        Ok(t) => t,
        Err(e) => return e.to_compile_error(),
    };
    validate::struct_or_enum(&mut cx, &target, "cluster_message");
    validate::not_generic(&mut cx, &target, "cluster_message");
    validate::stable_name(&mut cx, args.name.as_ref());
    if args.result.is_none() {
        if let Some(ident) = target.ident() {
            cx.error_spanned_by(
                ident,
                format!(
                    "#[cluster_message] needs the reply type: add `result = \"...\"`, e.g. \
                     #[cluster_message(result = \"()\")] for a message without a reply to `{ident}`"
                ),
            );
        }
    }
    let (Some(result), true) = (args.result.as_ref(), cx.is_empty()) else {
        return fallback::message(&target, args.result.as_ref(), cx.into_compile_errors());
    };
    target.route_serde_derives();
    let Some(ident) = target.ident().cloned() else {
        return fallback::message(&target, None, TokenStream::new());
    };
    let item = &target.item;
    let name = super::stable_name(&ident, args.name.as_ref());
    let rust_path = super::rust_path(&ident);
    let p = quote!(::actix_cluster::__private);
    // Bounds checked with the user's own spans, so a missing derive points at the type
    // and a non-serializable result at the `result` argument.
    let assert_message = quote_spanned! {ident.span()=>
        #p::assert_wire_type::<#ident>();
    };
    let assert_result = quote_spanned! {result.span()=>
        #p::assert_wire_type::<#result>();
    };
    quote! {
        #item

        impl #p::actix::Message for #ident {
            type Result = #result;
        }

        impl ::actix_cluster::ClusterMessage for #ident {
            const NAME: &'static str = #name;
            const WIRE_ID: u64 = #p::wire_id(<Self as ::actix_cluster::ClusterMessage>::NAME);
        }

        const _: () = {
            #[allow(dead_code)]
            fn assert_wire_types() {
                #assert_message
                #assert_result
            }
            #p::inventory::submit! {
                #p::MessageRegistration {
                    name: <#ident as ::actix_cluster::ClusterMessage>::NAME,
                    wire_id: <#ident as ::actix_cluster::ClusterMessage>::WIRE_ID,
                    rust_path: #rust_path,
                }
            }
        };
    }
}
