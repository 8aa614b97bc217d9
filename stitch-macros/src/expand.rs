//! Model → tokens. The only place that writes Rust: one descriptor constant per stitch and a thin
//! body that fills a request and awaits one generic runtime call. On error, the item is emitted
//! anyway with bodies that never run, so the rest of the user's crate keeps type-checking.

use crate::diag::Errors;
use crate::input::{self, FnItem, StitchTarget};
use crate::model::{self, HttpMethod, Output, PoolModel, Role, Stitch, Target, ThrottleModel};
use crate::spec::Piece;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Ident, TraitItem, Type};

/// `#[stitch(...)]`: a free function, or a mistaken use on a trait or lone trait method.
pub(crate) fn stitch(args: TokenStream, item: TokenStream) -> TokenStream {
    match input::parse_stitch_target(item) {
        StitchTarget::Fn(f) => free_fn(args, f),
        StitchTarget::Trait(mut t) => {
            let err = syn::Error::new(
                t.trait_token.span,
                "use `#[stitch::seam(...)]` on a trait, and `#[stitch(...)]` on its methods",
            )
            .to_compile_error();
            // The methods' `#[stitch]`/`#[query]`/... would be unknown attributes without a seam to
            // consume them; strip them so the one real error is all the user sees.
            for entry in &mut t.items {
                if let TraitItem::Fn(method) = entry {
                    method.attrs.retain(|a| !input::is_stitch_attr(a));
                    input::strip_arg_attrs(&mut method.sig);
                }
            }
            quote!(#err #t)
        }
        StitchTarget::Other(tokens) => {
            let err = syn::Error::new(
                Span::call_site(),
                "`#[stitch]` goes on an `async fn` without a body, or on a method of a `#[stitch::seam]` trait",
            )
            .to_compile_error();
            quote!(#err #tokens)
        }
    }
}

fn free_fn(args: TokenStream, mut item: FnItem) -> TokenStream {
    let mut errors = Errors::new();
    // A second `#[stitch]` would run again on this expansion and report a confusing "has a body".
    while let Some(again) = item.attrs.iter().position(input::is_stitch_attr) {
        let again = item.attrs.remove(again);
        errors.spanned(
            &again,
            "a function takes one `#[stitch(...)]`: merge the two attributes into one",
        );
    }
    let is_method = item.sig.receiver().is_some();
    if is_method {
        // A receiver means this is a trait method whose trait has no `#[seam]`: there is no client
        // to carry the runtime, so nothing could implement the method.
        let span = item
            .attrs
            .first()
            .map(|a| a.span())
            .unwrap_or_else(|| item.sig.ident.span());
        errors.at(
            item.sig.fn_token.span,
            "`#[stitch]` on a trait method requires `#[stitch::seam(...)]` on the enclosing trait: add it above `trait`",
        );
        let _ = span;
    } else {
        if let Some(body) = &item.body {
            errors.at(
                body.brace_token.span.join(),
                "a stitch has no body: the request is generated from the attribute; end the signature with `;`",
            );
        }
        crate::check::signature(&item.sig, false, &mut errors);
    }
    let mut model = model::stitch(args, &item.sig, None, &mut errors);
    if !is_method {
        crate::check::stitch(&mut model, &mut errors);
    }
    input::strip_arg_attrs(&mut item.sig);
    let FnItem {
        attrs, vis, sig, ..
    } = &item;
    let model = checked(model, &mut errors);
    let model = match (errors.finish(), model) {
        (Ok(()), Some(model)) => model,
        (result, _) => {
            let err = result.err().map(|e| e.to_compile_error());
            // The never-run body uses no argument; silence that so only the real errors show.
            return quote!(#err #(#attrs)* #[allow(unused_variables)] #vis #sig { ::core::unreachable!() });
        }
    };
    // The descriptor's holder exists exactly when the function does.
    let cfgs = attrs.iter().filter(|a| a.path().is_ident("cfg"));
    let cfgs = quote!(#(#cfgs)*);
    let ident = &sig.ident;
    let endpoint = descriptor(endpoint(&model, None));
    let body = body(&model, quote!(#ident::ENDPOINT), None);
    quote! {
        #cfgs
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}
        #cfgs
        impl #ident {
            /// The stitch's descriptor (see `stitch::Endpoint::describe`).
            #vis const ENDPOINT: &'static ::stitch::Endpoint = #endpoint;
        }
        #(#attrs)* #vis #sig #body
    }
}

/// `#[stitch::seam(...)]` on a trait: the trait plus a `<Trait>Client` implementing it.
pub(crate) fn seam(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut trait_item = match syn::parse2::<syn::ItemTrait>(item.clone()) {
        Ok(t) => t,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "`#[stitch::seam]` goes on a trait whose methods carry `#[stitch(...)]`",
            )
            .to_compile_error();
            return quote!(#err #item);
        }
    };
    let mut errors = Errors::new();
    let seam = model::seam_config(args, &mut errors);
    if !trait_item.generics.params.is_empty() {
        errors.spanned(
            &trait_item.generics,
            "a seam trait cannot be generic: the generated client implements it for concrete types",
        );
    }
    // The generated client implements the trait with safe code: an `unsafe trait` would need an
    // `unsafe impl` whose safety contract nothing generated can uphold.
    if let Some(unsafety) = trait_item.unsafety.take() {
        errors.at(
            unsafety.span,
            "a seam trait cannot be `unsafe`: the generated client implements it and can promise no safety contract; remove `unsafe`",
        );
    }
    let mut stitches = Vec::new();
    let mut signatures = Vec::new();
    let mut method_cfgs = Vec::new();
    // Methods missing their `#[stitch]` (an error): implemented with never-run bodies anyway, so
    // the only error is ours, not "not all trait items implemented".
    let mut unstitched = Vec::new();
    for trait_entry in &mut trait_item.items {
        let TraitItem::Fn(method) = trait_entry else {
            errors.spanned(
                &*trait_entry,
                "a seam trait holds only stitched methods (and provided methods with a body)",
            );
            continue;
        };
        let attr_at = method.attrs.iter().position(input::is_stitch_attr);
        let Some(attr_at) = attr_at else {
            if method.default.is_none() {
                errors.at(
                    method.sig.ident.span(),
                    format!(
                        "method `{}` has no `#[stitch(...)]`: the generated client cannot implement it; add e.g. `#[stitch(get, path = \"/...\")]` or give it a body",
                        method.sig.ident
                    ),
                );
                input::strip_arg_attrs(&mut method.sig);
                unstitched.push(method.sig.clone());
            }
            continue;
        };
        let attr = method.attrs.remove(attr_at);
        // A second `#[stitch]` would describe another request for the same method.
        while let Some(again) = method.attrs.iter().position(input::is_stitch_attr) {
            let again = method.attrs.remove(again);
            errors.spanned(
                &again,
                "a method takes one `#[stitch(...)]`: merge the two attributes into one",
            );
        }
        let tokens = match &attr.meta {
            syn::Meta::List(l) => l.tokens.clone(),
            _ => TokenStream::new(),
        };
        if let Some(default) = &method.default {
            errors.at(
                default.brace_token.span.join(),
                "a stitched method has no body: the request is generated from the attribute; end the signature with `;`",
            );
        }
        crate::check::signature(&method.sig, true, &mut errors);
        let mut model = model::stitch(
            tokens,
            &method.sig,
            Some((&trait_item.ident, &seam)),
            &mut errors,
        );
        crate::check::stitch(&mut model, &mut errors);
        input::strip_arg_attrs(&mut method.sig);
        stitches.push(model);
        signatures.push(method.sig.clone());
        // A `#[cfg]`-ed out method must be absent from the impl and `ENDPOINTS` too.
        let cfgs = method.attrs.iter().filter(|a| a.path().is_ident("cfg"));
        method_cfgs.push(quote!(#(#cfgs)*));
        // A method with a body is already an error; rewritten, the body would add a false one.
        if method.default.is_none() {
            send_future(&mut method.sig);
        }
    }

    crate::check::names(&stitches, &mut errors);
    let stitches: Vec<model::Checked> = if errors.is_empty() {
        stitches
            .into_iter()
            .map(|s| checked(s, &mut errors))
            .collect::<Option<_>>()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let vis = &trait_item.vis;
    let trait_ident = &trait_item.ident;
    let client = match &seam.client {
        Some(name) => name.clone(),
        None => format_ident!("{}Client", trait_ident),
    };
    let client_doc = format!("Client for [`{trait_ident}`], generated by `#[stitch::seam]`.");
    descriptor_names(&signatures, &method_cfgs, &mut errors);
    let ok = errors.is_empty();
    // Never-run fallback bodies use no argument; silence that so only the real errors show.
    let allow_unused = (!ok).then(|| quote!(#[allow(unused_variables)]));
    let error_tokens = errors.finish().err().map(|e| e.to_compile_error());

    let consts: Vec<Ident> = stitches
        .iter()
        .map(|s| descriptor_ident(&s.ident))
        .collect();
    let const_docs = stitches.iter().map(|s| {
        format!(
            "The descriptor of [`{trait_ident}::{}`]: `describe()` it, or invalidate its entries with `Runtime::invalidate_stitch`.",
            s.ident
        )
    });
    let pv = private();
    let seam_throttle_const = Ident::new("__STITCH_SEAM_THROTTLE", Span::mixed_site());
    let seam_throttle = seam
        .throttle
        .as_ref()
        .filter(|t| t.delegate.is_none())
        .map(|t| throttle_spec(t, true, Some(&trait_item.ident.to_string())));
    let seam_throttle_ref = seam_throttle
        .as_ref()
        // By the client's name: the descriptor's `static` is an item of its own, where `Self`
        // is not in scope.
        .map(|_| quote!(#client::#seam_throttle_const));
    let seam_throttle_item = seam_throttle.map(|spec| {
        quote!(const #seam_throttle_const: ::stitch::__private::ThrottleSpec = { use ::stitch::__private as #pv; #spec };)
    });
    let (bodies, endpoints): (Vec<TokenStream>, Vec<TokenStream>) = if ok {
        stitches
            .iter()
            .zip(&consts)
            .map(|(s, c)| {
                (
                    body(s, quote!(Self::#c), Some(quote!(&self.__stitch))),
                    endpoint(s, seam_throttle_ref.as_ref()),
                )
            })
            .unzip()
    } else {
        let never = quote!({ ::core::unreachable!() });
        (vec![never; signatures.len()], Vec::new())
    };
    // Each descriptor is a `static` (see `descriptor`), at module level where its initializer fits
    // the expansion's line budget, named after the client (unique in the module) and its index.
    let client_upper = client
        .to_string()
        .trim_start_matches("r#")
        .to_ascii_uppercase();
    let statics: Vec<Ident> = (0..endpoints.len())
        .map(|i| format_ident!("__STITCH_{}_{}", client_upper, i, span = Span::mixed_site()))
        .collect();
    let descriptor_statics = quote! {
        #( #method_cfgs static #statics: ::stitch::Endpoint = { use ::stitch::__private as #pv; #endpoints }; )*
    };
    let endpoint_consts = if ok {
        quote! {
            #seam_throttle_item
            #( #method_cfgs #[doc = #const_docs] #vis const #consts: &'static ::stitch::Endpoint = &#statics; )*
            /// Descriptors of every stitch of this client, in declaration order.
            #vis const ENDPOINTS: &'static [&'static ::stitch::Endpoint] = &[#(#method_cfgs Self::#consts),*];
        }
    } else {
        quote!(#vis const ENDPOINTS: &'static [&'static ::stitch::Endpoint] = &[];)
    };

    quote! {
        #error_tokens
        #[allow(async_fn_in_trait)]
        #trait_item

        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            __stitch: ::stitch::__private::ClientCore,
        }
        #descriptor_statics

        impl #client {
            /// Builds a client over `runtime`; cheap to clone, every clone shares the runtime.
            #vis fn new(runtime: &::stitch::Runtime) -> ::stitch::Result<Self> {
                ::stitch::__private::ClientCore::new(runtime, Self::ENDPOINTS)
                    .map(|__stitch| Self { __stitch })
            }
            #endpoint_consts
        }

        impl ::stitch::Client for #client {
            const STITCHES: &'static [&'static ::stitch::Endpoint] = Self::ENDPOINTS;
            fn __core(&self) -> &::stitch::__private::ClientCore {
                &self.__stitch
            }
            fn __with_core(&self, core: ::stitch::__private::ClientCore) -> Self {
                Self { __stitch: core }
            }
        }

        #allow_unused
        impl #trait_ident for #client {
            #( #method_cfgs #signatures #bodies )*
            #( #unstitched { ::core::unreachable!() } )*
        }
    }
}

/// A descriptor as a reference to its own `static`: the runtime keys per-stitch state (the
/// in-process cache tier, throttle pools) by the descriptor's address, which a `const` does not
/// fix (each use may be a fresh promoted copy, and equal constants may be merged). A `static` has
/// exactly one address, and a constant may refer to it (Rust 1.83).
fn descriptor(endpoint: TokenStream) -> TokenStream {
    let pv = private();
    let item = Ident::new("__STITCH_DESCRIPTOR", Span::mixed_site());
    quote!({
        use ::stitch::__private as #pv;
        static #item: #pv::Endpoint = #endpoint;
        &#item
    })
}

/// The public name of a stitch's descriptor: its method's name in upper case, as associated
/// constants are named (`user` → `AcmeClient::USER`).
fn descriptor_ident(method: &Ident) -> Ident {
    let upper = method
        .to_string()
        .trim_start_matches("r#")
        .to_ascii_uppercase();
    Ident::new(&upper, method.span())
}

/// Descriptor names that would collide are refused here, naming the methods, rather than left to
/// rustc's "duplicate definitions" on generated items the user never wrote.
fn descriptor_names(signatures: &[syn::Signature], cfgs: &[TokenStream], errors: &mut Errors) {
    let mut seen: Vec<(String, &Ident)> = Vec::new();
    for (sig, cfg) in signatures.iter().zip(cfgs) {
        // Methods under `#[cfg]` may share a name with each other: only one of them exists.
        if !cfg.is_empty() {
            continue;
        }
        let name = descriptor_ident(&sig.ident).to_string();
        if name == "ENDPOINTS" || name == "STITCHES" {
            errors.at(
                sig.ident.span(),
                format!(
                    "method `{}` would name its descriptor `{name}`, which lists every descriptor of the client: rename the method",
                    sig.ident
                ),
            );
        } else if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            errors.at(
                sig.ident.span(),
                format!(
                    "methods `{first}` and `{}` would both name their descriptor `{name}`: rename one of them",
                    sig.ident
                ),
            );
        } else {
            seen.push((name, &sig.ident));
        }
    }
}

/// `async fn m(..) -> R` becomes `fn m(..) -> impl Future<Output = R> + Send` in the trait (as
/// `trait_variant` does), so code generic over the trait can spawn its calls; implementations,
/// the generated client's and a test's fake alike, still write plain `async fn`.
fn send_future(sig: &mut syn::Signature) {
    let Some(async_token) = sig.asyncness.take() else {
        return;
    };
    let output = match &sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let span = async_token.span;
    sig.output = syn::parse_quote_spanned!(span=>
        -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
    );
}

/// The checked model; a model with no errors is always complete, so `None` here would be a bug in
/// this crate, reported as a compile error rather than a panic.
fn checked(model: Stitch, errors: &mut Errors) -> Option<model::Checked> {
    let span = model.ident.span();
    let checked = model.checked();
    if checked.is_none() && errors.is_empty() {
        errors.at(
            span,
            "internal error in `stitch-macros`: an incomplete stitch passed every check; please report this",
        );
    }
    checked
}

/// The descriptor constant: only the settings that differ from the defaults are written.
fn endpoint(s: &model::Checked, seam_throttle: Option<&TokenStream>) -> TokenStream {
    let pv = private();
    let name = &s.display_name;
    let method = Ident::new(s.method_const(), Span::call_site());
    let method_call =
        (s.method != HttpMethod::Get).then(|| quote!(.with_method(#pv::Method::#method)));
    let target = &s.target;
    let template = target.literal();
    // The literal text around the placeholders: one more piece than there are placeholders.
    let mut pieces = vec![String::new()];
    for piece in &target.template().pieces {
        match piece {
            Piece::Literal(l) => match pieces.last_mut() {
                Some(last) => last.push_str(l),
                None => pieces.push(l.clone()),
            },
            Piece::Placeholder(_) => pieces.push(String::new()),
        }
    }
    let mut chain = Vec::new();
    if matches!(target, Target::Url(..)) {
        chain.push(quote!(.absolute()));
    } else if let Some(base) = &s.base_url {
        chain.push(quote!(.base_url(#base)));
    }
    if let Some(q) = &target.template().static_query {
        chain.push(quote!(.static_query(#q)));
    }
    if !s.headers.is_empty() {
        let (n, v): (Vec<_>, Vec<_>) = s
            .headers
            .iter()
            .map(|(n, v)| (n.value().to_ascii_lowercase(), v))
            .unzip();
        chain.push(quote!(.headers(&[#((#n, #v)),*])));
    }
    if !s.pick.is_empty() {
        let p = &s.pick;
        chain.push(quote!(.pick(&[#(#p),*])));
    }
    if let Some(cache) = &s.cache {
        let ttl = millis(cache.ttl);
        let output = &s.output;
        let fingerprint = match &cache.version {
            Some(v) => quote!(#pv::pinned(#v)),
            None => fingerprint(output),
        };
        // The one check that the output can be decoded and cached, spanned at the user's type;
        // the policy decodes and clones values, so the call functions need no bound of their own.
        let t = output.ty();
        let cached = match output {
            Output::Json(_) => quote_spanned!(t.span()=> #pv::cached::<#t>),
            Output::WithMeta(inner) if matches!(**inner, Output::Json(_)) => {
                quote_spanned!(t.span()=> #pv::cached_meta::<#t>)
            }
            // Text, bytes and unit outputs are always cacheable: nothing to report.
            other => {
                let decoder = decoder(other);
                quote_spanned!(t.span()=> #pv::cached_as::<#decoder>)
            }
        };
        let mut policy = quote!(#cached(#pv::ms(#ttl), #fingerprint));
        if cache.app_scope.is_some() {
            let ack = cache.acknowledged.is_some();
            policy.extend(quote!(.app_scope(#ack)));
        }
        if !cache.vary.is_empty() {
            let names = cache.vary.iter().map(|v| v.value().to_ascii_lowercase());
            policy.extend(quote!(.with_vary(&[#(#names),*])));
        }
        if let Some(n) = cache.max_entries {
            policy.extend(quote!(.with_max_entries(#n)));
        }
        if !cache.coalesce {
            policy.extend(quote!(.no_coalesce()));
        }
        chain.push(quote!(.cache(#policy)));
    }
    if s.sensitive.is_some() {
        chain.push(quote!(.sensitive()));
    }
    if let Some(auth) = &s.auth {
        chain.push(quote!(.auth(#auth)));
    }
    let throttles: Vec<(&ThrottleModel, bool)> = s
        .seam_throttle
        .iter()
        .map(|t| (t, true))
        .chain(s.throttle.iter().map(|t| (t, false)))
        .collect();
    let specs: Vec<TokenStream> = throttles
        .iter()
        .filter(|(t, _)| t.delegate.is_none())
        .map(|(t, from_seam)| match (from_seam, seam_throttle) {
            // The seam's declaration is one constant shared by every method.
            (true, Some(shared)) => shared.clone(),
            _ => throttle_spec(t, *from_seam, s.seam_name.as_deref()),
        })
        .collect();
    if !specs.is_empty() {
        chain.push(quote!(.throttles(&[#(#specs),*])));
    }
    if let Some(statuses) = throttles
        .iter()
        .rev()
        .find_map(|(t, _)| t.delegate.as_ref())
    {
        chain.push(quote!(.delegate(&[#(#statuses),*])));
    }
    if let Some(each) = s.each {
        let ms = millis(each);
        chain.push(quote!(.each(#pv::ms(#ms))));
    }
    if let Some(r) = &s.retry {
        let attempts = r.attempts;
        let mut policy = quote!(#pv::RetryPolicy::new(#attempts));
        if let Some(on) = &r.on {
            policy.extend(quote!(.on(&[#(#on),*])));
        }
        if r.backoff.is_some() || r.base.is_some() || r.max.is_some() {
            let curve = Ident::new(r.backoff.unwrap_or("ExpoJitter"), Span::call_site());
            let base = millis(r.base.unwrap_or(std::time::Duration::from_millis(100)));
            let max = millis(r.max.unwrap_or(std::time::Duration::from_secs(10)));
            policy.extend(quote!(.backoff(
                #pv::Backoff::#curve,
                #pv::ms(#base),
                #pv::ms(#max),
            )));
        }
        if !r.respect_retry_after {
            policy.extend(quote!(.ignore_retry_after()));
        }
        chain.push(quote!(.retry(#policy)));
    }
    if let Some(c) = &s.circuit {
        let (failures, ms) = (c.failures, millis(c.cooldown));
        let local = c.local.then(|| quote!(.local()));
        chain.push(quote!(.circuit(#pv::CircuitPolicy::new(#failures, #pv::ms(#ms))#local)));
    }
    if let Some(i) = &s.idempotency {
        let header = &i.header;
        let mut policy = quote!(#pv::IdempotencyPolicy::new(#header));
        if let Some(from) = &i.from {
            let from = from.value();
            policy.extend(quote!(.from_argument(#from)));
        }
        chain.push(quote!(.idempotency(#policy)));
    }
    if let Some(t) = s.timeout {
        let ms = millis(t);
        chain.push(quote!(.timeout(#pv::ms(#ms))));
    }
    let roles = s.arguments.iter().zip(&s.roles).map(|(a, role)| {
        let n = a.ident.to_string();
        let role = match role {
            Role::Path => quote!(Path),
            Role::Query { key, secret: false } => quote!(Query(#key)),
            Role::Query { key, secret: true } => quote!(SecretQuery(#key)),
            Role::Body { form: false } => quote!(JsonBody),
            Role::Body { form: true } => quote!(FormBody),
            Role::Header {
                name,
                secret: false,
            } => quote!(Header(#name)),
            Role::Header { name, secret: true } => quote!(SecretHeader(#name)),
        };
        quote!((#n, #pv::#role))
    });
    let arg_types = s.arguments.iter().map(|a| static_lifetimes(&a.ty));
    let out_ty = static_lifetimes(s.output.ty());
    quote! {
        #pv::Endpoint::get(#pv::name!(#name), #template, &[#(#pieces),*])
            #method_call
            #(#chain)*
            .arguments(&[#(#roles),*])
            .schemas(#pv::schemas!([#(#arg_types),*], #out_ty))
    }
}

/// One `ThrottleSpec`: a seam's throttle shares the seam's pool unless it names another.
fn throttle_spec(t: &ThrottleModel, from_seam: bool, seam: Option<&str>) -> TokenStream {
    let pv = private();
    let pool = match (&t.pool, from_seam) {
        (Some((PoolModel::Stitch, _)), _) | (None, false) => quote!(Stitch),
        (Some((PoolModel::Host, _)), _) => quote!(Host),
        (Some((PoolModel::Seam, _)), _) | (None, true) => {
            let name = seam.unwrap_or_default();
            quote!(Seam(::core::concat!(::core::module_path!(), "::", #name)))
        }
        (Some((PoolModel::Named(n), _)), _) => quote!(Named(#n)),
    };
    let mut spec = quote!(#pv::ThrottleSpec::new(#pv::Pool::#pool));
    if let Some((n, window, _, _)) = &t.rate {
        let n = proc_macro2::Literal::u64_unsuffixed(*n);
        let ms = millis(*window);
        spec.extend(quote!(.rate(#n, #pv::ms(#ms))));
    }
    if let Some(b) = t.burst {
        spec.extend(quote!(.burst(#b)));
    }
    if let Some((c, _)) = t.concurrency {
        spec.extend(quote!(.concurrency(#c)));
    }
    if let Some(w) = t.max_wait {
        let ms = millis(w);
        spec.extend(quote!(.max_wait(#pv::ms(#ms))));
    }
    if t.local {
        spec.extend(quote!(.local()));
    }
    spec
}

/// The argument's type span, and the request variable located there: an argument type missing a
/// bound (`Serialize`, `Display`) is reported at that type instead of on the attribute.
fn at_argument(req: &Ident, arg: &model::Argument) -> (Span, Ident) {
    let span = arg.ty.span();
    (
        span,
        Ident::new(&req.to_string(), Span::mixed_site().located_at(span)),
    )
}

/// The body of a stitch: fill the request from the arguments, await the generic call.
fn body(s: &model::Checked, endpoint: TokenStream, client: Option<TokenStream>) -> TokenStream {
    let pv = private();
    let req = Ident::new("__stitch_request", Span::mixed_site());
    let template = s.target.template();
    // Path values are pushed in template order (a placeholder may repeat).
    let path = template.pieces.iter().filter_map(|p| match p {
        Piece::Placeholder(name) => {
            let arg = s
                .arguments
                .iter()
                .find(|a| a.ident.to_string().trim_start_matches("r#") == name)?;
            let ident = &arg.ident;
            let (span, req) = at_argument(&req, arg);
            Some(quote_spanned!(span=> #req.path(#name, &#ident);))
        }
        Piece::Literal(_) => None,
    });
    let others = s.arguments.iter().zip(&s.roles).filter_map(|(a, role)| {
        let ident = &a.ident;
        let (span, req) = at_argument(&req, a);
        match role {
            Role::Path => None,
            Role::Query { key, secret: false } => {
                Some(quote_spanned!(span=> #req.query(#key, &#ident);))
            }
            Role::Query { key, secret: true } => {
                Some(quote_spanned!(span=> #req.secret_query(#key, &#ident);))
            }
            Role::Body { form: false } => Some(quote_spanned!(span=> #req.json(&#ident);)),
            Role::Body { form: true } => Some(quote_spanned!(span=> #req.form(&#ident);)),
            Role::Header {
                name,
                secret: false,
            } => Some(quote_spanned!(span=> #req.header(#name, &#ident);)),
            Role::Header { name, secret: true } => {
                Some(quote_spanned!(span=> #req.secret_header(#name, &#ident);))
            }
        }
    });
    let idempotency = s
        .idempotency
        .as_ref()
        .and_then(|i| i.from.as_ref())
        .and_then(|from| s.arguments.iter().find(|a| a.name() == from.value()))
        .map(|a| {
            let ident = &a.ident;
            let name = a.name();
            quote!(#req.idempotency_key(#name, &#ident);)
        });
    let decoder = decoder(&s.output);
    let cached = s.cache.is_some() && s.sensitive.is_none();
    // Spanned at the output type: an unmet bound of the call (cached or not) is reported there.
    let t = s.output.ty();
    // The alias too, here and in the decoder: a path whose first token sits on the attribute
    // reported the unmet bound there, away from the type it is about.
    let pv_t = Ident::new("__s", Span::mixed_site().located_at(t.span()));
    let call = match (client, cached) {
        (Some(client), false) => {
            quote_spanned!(t.span()=> #pv_t::call::<#decoder>(#client, #req).await)
        }
        (Some(client), true) => {
            quote_spanned!(t.span()=> #pv_t::call_cached::<#decoder>(#client, #req).await)
        }
        (None, false) => quote_spanned!(t.span()=> #pv_t::call_global::<#decoder>(#req).await),
        (None, true) => {
            quote_spanned!(t.span()=> #pv_t::call_global_cached::<#decoder>(#req).await)
        }
    };
    let body = quote! {
        use ::stitch::__private as #pv;
        let mut #req = #pv::RequestParts::new(#endpoint);
        #(#path)*
        #(#others)*
        #idempotency
        #call
    };
    // The block's own span decides where an unmet bound of its value is reported: the output type.
    let mut block = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, body);
    block.set_span(t.span());
    block.into_token_stream()
}

/// The output's schema fingerprint, spanned at the user's type so a missing `Fingerprint` impl is
/// reported there (with the trait's `on_unimplemented` message).
fn fingerprint(output: &Output) -> TokenStream {
    let pv = private();
    match output {
        Output::WithMeta(inner) => {
            let inner = fingerprint(inner);
            quote!(#pv::ShapeHasher::new("response").u64(#inner).finish())
        }
        other => {
            let t = other.ty();
            quote_spanned!(t.span()=> #pv::fp::<#t>())
        }
    }
}

fn decoder(output: &Output) -> TokenStream {
    let pv = private();
    match output {
        Output::Json(t) => {
            let pv = Ident::new("__s", Span::mixed_site().located_at(t.span()));
            quote_spanned!(t.span()=> #pv::Json<#t>)
        }
        Output::Text(_) => quote!(#pv::Text),
        Output::Bytes(_) => quote!(#pv::RawBytes),
        Output::Unit(_) => quote!(#pv::Unit),
        Output::WithMeta(inner) => {
            let inner = decoder(inner);
            quote!(#pv::WithMeta<#inner>)
        }
    }
}

/// The alias generated code uses for `::stitch::__private` (mixed-site: invisible to user code).
/// Milliseconds as an unsuffixed literal (generated code stays short).
fn millis(d: std::time::Duration) -> proc_macro2::Literal {
    proc_macro2::Literal::u64_unsuffixed(d.as_millis() as u64)
}

fn private() -> Ident {
    Ident::new("__s", Span::mixed_site())
}

/// Types named in a constant cannot use elided or local lifetimes; `'static` stands in for them
/// (only the shape matters for schemas).
fn static_lifetimes(ty: &Type) -> Type {
    struct Staticize;
    impl syn::visit_mut::VisitMut for Staticize {
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            r.lifetime = Some(syn::Lifetime::new("'static", Span::call_site()));
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
        fn visit_lifetime_mut(&mut self, l: &mut syn::Lifetime) {
            *l = syn::Lifetime::new("'static", Span::call_site());
        }
    }
    let mut ty = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Staticize, &mut ty);
    ty
}

impl Stitch {
    fn method_const(&self) -> &'static str {
        match self.method {
            HttpMethod::Get => "Get",
            HttpMethod::Post => "Post",
            HttpMethod::Put => "Put",
            HttpMethod::Patch => "Patch",
            HttpMethod::Delete => "Delete",
            HttpMethod::Head => "Head",
        }
    }
}
