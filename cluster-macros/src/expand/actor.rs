//! `#[distributed_actor]`: `DistributedActor`, `Handles<M>` per listed message, and the
//! inventory entries for the factory and the dispatch table.

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
    let args = attr::parse_actor_args(&mut cx, args);
    let mut target = match Target::parse(input) {
        Ok(t) => t,
        Err(e) => return e.to_compile_error(),
    };
    validate::struct_or_enum(&mut cx, &target, "distributed_actor");
    validate::not_generic(&mut cx, &target, "distributed_actor");
    validate::stable_name(&mut cx, args.name.as_ref());
    validate::recovery(&mut cx, &args);
    if !cx.is_empty() {
        return fallback::actor(&mut target, args.manual_actor, cx.into_compile_errors());
    }
    target.route_serde_derives();
    let Some(ident) = target.ident().cloned() else {
        return fallback::actor(&mut target, args.manual_actor, TokenStream::new());
    };
    let item = &target.item;
    let p = quote!(::actix_cluster::__private);
    let name = super::stable_name(&ident, args.name.as_ref());
    let rust_path = super::rust_path(&ident);

    let actor_impl = if args.manual_actor {
        TokenStream::new()
    } else {
        quote! {
            impl #p::actix::Actor for #ident {
                type Context = #p::actix::Context<Self>;
            }
        }
    };
    let format = args.format.as_ref().map(|(f, span)| {
        let variant = match f.as_str() {
            "json" => quote_spanned!(*span=> Json),
            _ => quote_spanned!(*span=> Postcard),
        };
        quote! {
            fn format() -> ::actix_cluster::Format {
                ::actix_cluster::Format::#variant
            }
        }
    });
    let placement = args.placement.as_ref().map(|(v, span)| {
        let p = quote!(::actix_cluster::Placement);
        let value = match v.as_str() {
            "round_robin" => quote_spanned!(*span=> #p::RoundRobin),
            "random" => quote_spanned!(*span=> #p::Random),
            "least_loaded" => quote_spanned!(*span=> #p::LeastLoaded),
            "consistent_hash" => quote_spanned!(*span=> #p::ConsistentHash),
            other => match (other.strip_prefix("node:"), other.strip_prefix("role:"), other.strip_prefix("custom:")) {
                (Some(node), _, _) => quote_spanned!(*span=> #p::Node(::std::string::String::from(#node))),
                (_, Some(role), _) => quote_spanned!(*span=> #p::Role(::std::string::String::from(#role))),
                (_, _, Some(name)) => quote_spanned!(*span=> #p::Custom(::std::string::String::from(#name))),
                _ => quote_spanned!(*span=> #p::Local),
            },
        };
        quote! {
            fn placement() -> ::actix_cluster::Placement {
                #value
            }
        }
    });
    // Spanned at the type, so a missing serde derive is reported there.
    let distributed_actor_impl = quote_spanned! {ident.span()=>
        impl ::actix_cluster::DistributedActor for #ident {
            const NAME: &'static str = #name;
            const TYPE_ID: u64 = #p::wire_id(<Self as ::actix_cluster::DistributedActor>::NAME);
            #format
            #placement
        }
    };
    // The flow-control probe: handled in mailbox order, so once it is answered everything
    // sent before it has been handled.
    let probe_impl = quote! {
        impl #p::actix::Handler<#p::Probe> for #ident {
            type Result = ();
            fn handle(&mut self, _: #p::Probe, _: &mut #p::actix::Context<Self>) {}
        }
    };
    // The actor's state, serialized in mailbox order (migration, snapshots).
    let take_state_impl = quote! {
        impl #p::actix::Handler<#p::TakeState> for #ident {
            type Result = ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String>;
            fn handle(&mut self, _: #p::TakeState, _: &mut #p::actix::Context<Self>) -> Self::Result {
                #p::encode_state::<Self>(self)
            }
        }
    };
    // A keyed actor: any node can activate its keys (the attribute implements
    // `KeyedActor` when it is told the key's field).
    let keyed_impl = args.keyed.as_ref().map(|field| {
        let from_key = field.as_ref().map(|field| {
            let field = syn::Ident::new(&field.value(), field.span());
            quote! {
                impl ::actix_cluster::KeyedActor for #ident {
                    fn from_key(key: &str) -> Self {
                        let mut actor = <Self as ::std::default::Default>::default();
                        actor.#field = ::std::convert::From::from(key);
                        actor
                    }
                }
            }
        });
        quote! {
            #from_key
            #p::inventory::submit! {
                #p::KeyedRegistration {
                    type_id: <#ident as ::actix_cluster::DistributedActor>::TYPE_ID,
                    activate: #p::spawn_keyed::<#ident>,
                    passivate_after: <#ident as ::actix_cluster::KeyedActor>::passivate_after,
                    placement: <#ident as ::actix_cluster::DistributedActor>::placement,
                }
            }
        }
    });
    // A recovery policy: followed by the node's recovery service.
    let recovery = args.recovery.map(|(restart, span)| {
        let replicas = args.replicas.map_or(0, |(n, _)| n);
        let every = args.snapshot_every.map_or(0, |(ms, _)| ms);
        let keyed = args.keyed.is_some();
        // Without replicas a non-keyed actor restarts from its `Default` (spanned at the
        // argument, so a missing `Default` is reported there).
        let restart_state = if restart && replicas == 0 && args.keyed.is_none() {
            quote_spanned!(span=> ::std::option::Option::Some(#p::default_state::<#ident>))
        } else {
            quote!(::std::option::Option::None)
        };
        quote! {
            #p::inventory::submit! {
                #p::RecoveryRegistration {
                    type_id: <#ident as ::actix_cluster::DistributedActor>::TYPE_ID,
                    restart: #restart,
                    replicas: #replicas,
                    snapshot_every_ms: #every,
                    restart_state: #restart_state,
                    placement: <#ident as ::actix_cluster::DistributedActor>::placement,
                    format: <#ident as ::actix_cluster::DistributedActor>::format,
                    keyed: #keyed,
                }
            }
        }
    });
    let handles = args.messages.iter().map(|m| {
        // Spanned at the listed message, so a missing `Handler<M>` impl points there.
        quote_spanned! {m.span()=>
            impl ::actix_cluster::Handles<#m> for #ident {}
        }
    });
    let handler_entries = args.messages.iter().map(|m| {
        quote! {
            #p::inventory::submit! {
                #p::HandlerRegistration {
                    actor_type_id: <#ident as ::actix_cluster::DistributedActor>::TYPE_ID,
                    message_wire_id: <#m as ::actix_cluster::ClusterMessage>::WIRE_ID,
                    message_name: <#m as ::actix_cluster::ClusterMessage>::NAME,
                    dispatch: #p::dispatch::<#ident, #m>,
                    handled_in_order: #p::handled_in_order::<#ident, #m>,
                }
            }
        }
    });
    quote! {
        #item

        #actor_impl

        #distributed_actor_impl

        #probe_impl

        #take_state_impl

        #(#handles)*

        const _: () = {
            #p::inventory::submit! {
                #p::ActorRegistration {
                    name: <#ident as ::actix_cluster::DistributedActor>::NAME,
                    type_id: <#ident as ::actix_cluster::DistributedActor>::TYPE_ID,
                    rust_path: #rust_path,
                    spawn: #p::spawn_from_state::<#ident>,
                    probe: #p::probe::<#ident>,
                    take_state: #p::take_state::<#ident>,
                }
            }
            #(#handler_entries)*
            #keyed_impl
            #recovery
        };
    }
}
