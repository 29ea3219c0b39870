//! Checks on the item and arguments, one rule per function.

use syn::LitStr;

use crate::ast::Target;
use crate::ctxt::Ctxt;

/// The attribute applies to structs and enums only.
pub(crate) fn struct_or_enum(cx: &mut Ctxt, target: &Target, attr: &str) {
    if target.ident().is_none() {
        let (span, what) = target.kind_span();
        cx.push(syn::Error::new(span, format!("#[{attr}] cannot be applied to {what}; use it on a struct or an enum")));
    }
}

/// Wire ids name one concrete type, so generic items are refused.
pub(crate) fn not_generic(cx: &mut Ctxt, target: &Target, attr: &str) {
    if let Some(g) = target.generics() {
        if !g.params.is_empty() {
            cx.error_spanned_by(
                g,
                format!("#[{attr}] does not support generic types: a wire id names one concrete type; wrap each instantiation in its own type"),
            );
        }
    }
}

/// A stable name is non-empty and printable.
pub(crate) fn stable_name(cx: &mut Ctxt, name: Option<&LitStr>) {
    if let Some(n) = name {
        let v = n.value();
        if v.trim().is_empty() || v.chars().any(char::is_control) {
            cx.error_spanned_by(n, "`name` must be a non-empty, printable string such as \"shop.v1.Add\"");
        }
    }
}

/// `replicas` and `snapshot_every` belong to `recovery = "restart"`; snapshots need replicas.
pub(crate) fn recovery(cx: &mut Ctxt, args: &crate::attr::ActorArgs) {
    let restart = args.recovery.is_some_and(|(r, _)| r);
    if let (Some((_, span)), false) = (args.replicas, restart) {
        cx.push(syn::Error::new(span, "`replicas` needs `recovery = \"restart\"`"));
    }
    if let Some((_, span)) = args.snapshot_every {
        if args.replicas.is_none_or(|(n, _)| n == 0) {
            cx.push(syn::Error::new(
                span,
                "`snapshot_every` needs `replicas = 1` or more (snapshots go to the replicas)",
            ));
        }
    }
}
