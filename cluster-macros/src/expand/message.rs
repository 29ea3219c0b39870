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
    if !args.result_given {
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
        return fallback::message(&mut target, args.result.as_ref(), cx.into_compile_errors());
    };
    target.route_serde_derives();
    let Some(ident) = target.ident().cloned() else {
        return fallback::message(&mut target, None, TokenStream::new());
    };
    let item = &target.item;
    let name = super::stable_name(&ident, args.name.as_ref());
    let rust_path = super::rust_path(&ident);
    let p = quote!(::actix_cluster::__private);
    // The impl carries the type's span, so a missing derive is reported at the type; the
    // result type is also checked on its own span, at the `result` argument.
    let cluster_message_impl = quote_spanned! {ident.span()=>
        impl ::actix_cluster::ClusterMessage for #ident {
            const NAME: &'static str = #name;
            const WIRE_ID: u64 = #p::wire_id(<Self as ::actix_cluster::ClusterMessage>::NAME);
        }
    };
    let assert_result = quote_spanned! {result.span()=>
        #p::assert_wire_type::<#result>();
    };
    quote! {
        #item

        impl #p::actix::Message for #ident {
            type Result = #result;
        }

        #cluster_message_impl

        const _: () = {
            #[allow(dead_code)]
            fn assert_wire_types() {
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
