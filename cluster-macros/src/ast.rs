//! A borrowed view of the item an attribute is placed on, keeping the original syn nodes
//! for spans.

use proc_macro2::{Span, TokenStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Generics, Ident, Item, Path, Token};

/// True if a `#[derive(...)]` lists `Serialize` or `Deserialize` (by the last segment of
/// each path, so `serde::Serialize` counts and `MySerializeExt` does not).
fn derives_serde_trait(attr: &Attribute) -> bool {
    let Ok(list) = attr.meta.require_list() else { return false };
    let Ok(paths) = list.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) else { return false };
    paths.iter().any(|p| p.segments.last().is_some_and(|s| s.ident == "Serialize" || s.ident == "Deserialize"))
}

/// The item an attribute applies to: a struct or an enum.
pub(crate) struct Target {
    pub(crate) item: Item,
}

impl Target {
    /// Parses the attribute's input. A non-item (which rustc would already reject) is an error.
    pub(crate) fn parse(input: TokenStream) -> syn::Result<Self> {
        Ok(Self { item: syn::parse2(input)? })
    }

    pub(crate) fn ident(&self) -> Option<&Ident> {
        match &self.item {
            Item::Struct(s) => Some(&s.ident),
            Item::Enum(e) => Some(&e.ident),
            _ => None,
        }
    }

    pub(crate) fn generics(&self) -> Option<&Generics> {
        match &self.item {
            Item::Struct(s) => Some(&s.generics),
            Item::Enum(e) => Some(&e.generics),
            _ => None,
        }
    }

    fn attrs_mut(&mut self) -> Option<&mut Vec<Attribute>> {
        match &mut self.item {
            Item::Struct(s) => Some(&mut s.attrs),
            Item::Enum(e) => Some(&mut e.attrs),
            _ => None,
        }
    }

    /// A span covering the item's keyword (`fn`, `trait`, …), for "wrong item" errors.
    pub(crate) fn kind_span(&self) -> (Span, &'static str) {
        match &self.item {
            Item::Fn(f) => (f.sig.fn_token.span, "a function"),
            Item::Trait(t) => (t.trait_token.span, "a trait"),
            Item::Union(u) => (u.union_token.span, "a union"),
            Item::Impl(i) => (i.impl_token.span, "an impl block"),
            Item::Mod(m) => (m.mod_token.span, "a module"),
            Item::Type(t) => (t.type_token.span, "a type alias"),
            Item::Const(c) => (c.const_token.span, "a constant"),
            Item::Static(s) => (s.static_token.span, "a static"),
            Item::Enum(e) => (e.enum_token.span, "an enum"),
            Item::Struct(s) => (s.struct_token.span, "a struct"),
            other => (other.span(), "this item"),
        }
    }

    /// Points `#[derive(Serialize, Deserialize)]` on the item at the serde that
    /// actix-cluster re-exports, so the user's crate needs no direct serde dependency.
    /// Left alone if the item has no serde derive or already names a serde crate.
    pub(crate) fn route_serde_derives(&mut self) {
        let Some(attrs) = self.attrs_mut() else { return };
        let derives_serde = attrs.iter().any(|a| a.path().is_ident("derive") && derives_serde_trait(a));
        let names_crate = attrs.iter().any(|a| {
            a.path().is_ident("serde")
                && a.meta.require_list().map(|l| l.tokens.to_string().contains("crate")).unwrap_or(false)
        });
        if derives_serde && !names_crate {
            attrs.push(syn::parse_quote!(#[serde(crate = "::actix_cluster::__private::serde")]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(item: TokenStream) -> bool {
        let mut target = Target::parse(item).expect("item");
        target.route_serde_derives();
        let attrs = match &target.item {
            Item::Struct(s) => &s.attrs,
            _ => panic!("a struct"),
        };
        attrs.iter().any(|a| a.path().is_ident("serde") && quote::quote!(#a).to_string().contains("__private"))
    }

    #[test]
    fn serde_derives_are_recognized_by_their_trait_name_not_a_substring() {
        assert!(routed(quote::quote!(
            #[derive(Serialize)]
            struct A;
        )));
        assert!(routed(quote::quote!(
            #[derive(Clone, serde::Deserialize)]
            struct A;
        )));
        assert!(!routed(quote::quote!(
            #[derive(Clone, MySerializeExt)]
            struct A;
        )));
        assert!(!routed(quote::quote!(
            #[derive(DeserializeWith)]
            struct A;
        )));
        assert!(
            !routed(quote::quote!(
                #[derive(Serialize)]
                #[serde(crate = "x")]
                struct A;
            )),
            "a named crate is kept"
        );
    }
}
