//! Parsing of the attribute arguments, reporting unknown and duplicate keys at their token.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Path, Token};

use crate::ctxt::Ctxt;
use crate::symbol::{
    self, FORMAT, FORMATS, KEYED, MANUAL_ACTOR, MESSAGES, NAME, PLACEMENT, PLACEMENTS, PLACEMENT_FORMS,
    PLACEMENT_PREFIXES, RECOVERIES, RECOVERY, REPLICAS, RESULT, SNAPSHOT_EVERY,
};

/// Arguments of `#[cluster_message(...)]`.
pub(crate) struct MessageArgs {
    pub(crate) result: Option<syn::Type>,
    /// `result` was given, even if its value was rejected (then that error is enough).
    pub(crate) result_given: bool,
    pub(crate) name: Option<LitStr>,
}

/// Arguments of `#[distributed_actor(...)]`.
pub(crate) struct ActorArgs {
    pub(crate) messages: Vec<Path>,
    pub(crate) name: Option<LitStr>,
    pub(crate) format: Option<(String, Span)>,
    pub(crate) manual_actor: bool,
    /// The placement, as written (validated), and where.
    pub(crate) placement: Option<(String, Span)>,
    /// A keyed actor: `Some(None)` for `keyed` (the user implements `KeyedActor`),
    /// `Some(Some(field))` for `keyed = "field"` (the attribute implements it).
    pub(crate) keyed: Option<Option<LitStr>>,
    /// `recovery = "restart"` (true) or `"none"` (false), and where.
    pub(crate) recovery: Option<(bool, Span)>,
    /// `replicas = N`, and where.
    pub(crate) replicas: Option<(usize, Span)>,
    /// `snapshot_every = "500ms"` in milliseconds, and where.
    pub(crate) snapshot_every: Option<(u64, Span)>,
}

/// `"250ms"`, `"2s"` or `"1m"` in milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        _ => return None,
    };
    (ms > 0).then_some(ms)
}

fn int_value(cx: &mut Ctxt, meta: &Meta, example: &str) -> Option<(usize, Span)> {
    match meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<usize>() {
                Ok(n) => Some((n, i.span())),
                Err(e) => {
                    cx.error_spanned_by(i, e.to_string());
                    None
                }
            },
            other => {
                cx.error_spanned_by(other, format!("expected a number, as in {example}"));
                None
            }
        },
        _ => {
            cx.error_spanned_by(meta, format!("expected a value, as in {example}"));
            None
        }
    }
}

/// Parses `key = value, key(...), flag` into metas; a syntax error is reported as is.
fn metas(cx: &mut Ctxt, args: TokenStream) -> Vec<Meta> {
    match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(list) => list.into_iter().collect(),
        Err(e) => {
            cx.push(e);
            Vec::new()
        }
    }
}

fn key_of(meta: &Meta) -> String {
    meta.path().get_ident().map(ToString::to_string).unwrap_or_else(|| quote::quote!(#meta).to_string())
}

/// Records `key` as seen; reports a duplicate at its second occurrence.
fn first_time(cx: &mut Ctxt, seen: &mut Vec<String>, meta: &Meta) -> bool {
    let key = key_of(meta);
    if seen.contains(&key) {
        cx.error_spanned_by(meta.path(), format!("duplicate argument `{key}`"));
        return false;
    }
    seen.push(key);
    true
}

fn unknown(cx: &mut Ctxt, meta: &Meta, valid: &[&str]) {
    cx.error_spanned_by(
        meta.path(),
        format!("unknown argument `{}`; valid arguments are: {}", key_of(meta), symbol::list(valid)),
    );
}

fn string_value(cx: &mut Ctxt, meta: &Meta, example: &str) -> Option<LitStr> {
    match meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.clone()),
            other => {
                cx.error_spanned_by(other, format!("expected a string, as in {example}"));
                None
            }
        },
        _ => {
            cx.error_spanned_by(meta, format!("expected a value, as in {example}"));
            None
        }
    }
}

pub(crate) fn parse_message_args(cx: &mut Ctxt, args: TokenStream) -> MessageArgs {
    let mut out = MessageArgs { result: None, result_given: false, name: None };
    let mut seen = Vec::new();
    for meta in metas(cx, args) {
        if meta.path().is_ident(RESULT) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            out.result_given = true;
            if let Some(s) = string_value(cx, &meta, "`result = \"u64\"`") {
                match s.parse::<syn::Type>() {
                    Ok(ty) => out.result = Some(ty),
                    Err(e) => cx.error_spanned_by(&s, format!("`result` is not a type: {e}")),
                }
            }
        } else if meta.path().is_ident(NAME) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            out.name = string_value(cx, &meta, "`name = \"shop.v1.Add\"`");
        } else {
            unknown(cx, &meta, symbol::MESSAGE_ARGS);
        }
    }
    out
}

pub(crate) fn parse_actor_args(cx: &mut Ctxt, args: TokenStream) -> ActorArgs {
    let mut out = ActorArgs {
        messages: Vec::new(),
        name: None,
        format: None,
        manual_actor: false,
        placement: None,
        keyed: None,
        recovery: None,
        replicas: None,
        snapshot_every: None,
    };
    let mut seen = Vec::new();
    for meta in metas(cx, args) {
        if meta.path().is_ident(MESSAGES) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            match &meta {
                Meta::List(list) => match list.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) {
                    Ok(paths) => out.messages = paths.into_iter().collect(),
                    Err(e) => cx.push(e),
                },
                _ => cx.error_spanned_by(&meta, "expected a list of message types, as in `messages(Add, Get)`"),
            }
        } else if meta.path().is_ident(NAME) {
            if first_time(cx, &mut seen, &meta) {
                out.name = string_value(cx, &meta, "`name = \"shop.v1.Counter\"`");
            }
        } else if meta.path().is_ident(FORMAT) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            if let Some(s) = string_value(cx, &meta, "`format = \"json\"`") {
                if FORMATS.contains(&s.value().as_str()) {
                    out.format = Some((s.value(), s.span()));
                } else {
                    cx.error_spanned_by(
                        &s,
                        format!("unknown format `{}`; valid formats are: {}", s.value(), symbol::list(FORMATS)),
                    );
                }
            }
        } else if meta.path().is_ident(PLACEMENT) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            if let Some(s) = string_value(cx, &meta, "`placement = \"least_loaded\"`") {
                let v = s.value();
                let with_arg =
                    PLACEMENT_PREFIXES.iter().any(|p| v.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
                if PLACEMENTS.contains(&v.as_str()) || with_arg {
                    out.placement = Some((v, s.span()));
                } else {
                    cx.error_spanned_by(
                        &s,
                        format!("unknown placement `{v}`; valid placements are: {}", symbol::list(PLACEMENT_FORMS)),
                    );
                }
            }
        } else if meta.path().is_ident(KEYED) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            match &meta {
                Meta::Path(_) => out.keyed = Some(None),
                _ => {
                    if let Some(field) = string_value(cx, &meta, "`keyed = \"id\"` (the field that holds the key)") {
                        out.keyed = Some(Some(field));
                    }
                }
            }
        } else if meta.path().is_ident(RECOVERY) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            if let Some(s) = string_value(cx, &meta, "`recovery = \"restart\"`") {
                match s.value().as_str() {
                    "restart" => out.recovery = Some((true, s.span())),
                    "none" => out.recovery = Some((false, s.span())),
                    v => cx.error_spanned_by(
                        &s,
                        format!("unknown recovery `{v}`; valid recoveries are: {}", symbol::list(RECOVERIES)),
                    ),
                }
            }
        } else if meta.path().is_ident(REPLICAS) {
            if first_time(cx, &mut seen, &meta) {
                out.replicas = int_value(cx, &meta, "`replicas = 1`");
            }
        } else if meta.path().is_ident(SNAPSHOT_EVERY) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            if let Some(s) = string_value(cx, &meta, "`snapshot_every = \"500ms\"`") {
                match parse_duration_ms(&s.value()) {
                    Some(ms) => out.snapshot_every = Some((ms, s.span())),
                    None => cx.error_spanned_by(
                        &s,
                        "expected a positive duration in `ms`, `s` or `m`, as in `snapshot_every = \"500ms\"`",
                    ),
                }
            }
        } else if meta.path().is_ident(MANUAL_ACTOR) {
            if !first_time(cx, &mut seen, &meta) {
                continue;
            }
            match &meta {
                Meta::Path(_) => out.manual_actor = true,
                _ => cx.error_spanned_by(&meta, "`manual_actor` takes no value"),
            }
        } else {
            unknown(cx, &meta, symbol::ACTOR_ARGS);
        }
    }
    out
}
