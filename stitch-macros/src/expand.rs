//! Model → tokens. The only place that writes Rust: one descriptor constant per stitch and a thin
//! body that fills a request and awaits one generic runtime call. On error, the item is emitted
//! anyway with bodies that never run, so the rest of the user's crate keeps type-checking.

use crate::diag::Errors;
use crate::input::{self, FnItem, StitchTarget};
use crate::model::{
    self, Argument, HttpMethod, Output, PoolModel, Role, Stitch, Target, ThrottleModel,
};
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
    if let Err(err) = errors.finish() {
        let err = err.to_compile_error();
        // The never-run body uses no argument; silence that so only the real errors show.
        return quote!(#err #(#attrs)* #[allow(unused_variables)] #vis #sig { ::core::unreachable!() });
    }
    let ident = &sig.ident;
    let endpoint = endpoint(&model, None);
    let body = body(&model, quote!(&#ident::ENDPOINT), None);
    let pv = private();
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}
        impl #ident {
            /// The stitch's descriptor (see `stitch::Endpoint::describe`).
            #vis const ENDPOINT: ::stitch::Endpoint = { use ::stitch::__private as #pv; #endpoint };
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
    let mut stitches = Vec::new();
    let mut signatures = Vec::new();
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
    }

    let vis = &trait_item.vis;
    let trait_ident = &trait_item.ident;
    let client = match &seam.client {
        Some(name) => Ident::new(&name.value(), name.span()),
        None => format_ident!("{}Client", trait_ident),
    };
    let client_doc = format!("Client for [`{trait_ident}`], generated by `#[stitch::seam]`.");
    let ok = errors.is_empty();
    // Never-run fallback bodies use no argument; silence that so only the real errors show.
    let allow_unused = (!ok).then(|| quote!(#[allow(unused_variables)]));
    let error_tokens = errors.finish().err().map(|e| e.to_compile_error());

    let consts: Vec<Ident> = stitches
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // Upper case (no lint to silence) and numbered (`user` and `USER` cannot collide).
            let upper = s
                .ident
                .to_string()
                .trim_start_matches("r#")
                .to_ascii_uppercase();
            format_ident!("__STITCH_{}_{}", i, upper, span = Span::mixed_site())
        })
        .collect();
    let pv = private();
    let seam_throttle_const = Ident::new("__STITCH_SEAM_THROTTLE", Span::mixed_site());
    let seam_throttle = seam
        .throttle
        .as_ref()
        .filter(|t| t.delegate.is_none())
        .map(|t| throttle_spec(t, true, Some(&trait_item.ident.to_string())));
    let seam_throttle_ref = seam_throttle
        .as_ref()
        .map(|_| quote!(Self::#seam_throttle_const));
    let seam_throttle_item = seam_throttle.map(|spec| {
        quote!(const #seam_throttle_const: ::stitch::__private::ThrottleSpec = { use ::stitch::__private as #pv; #spec };)
    });
    let (bodies, endpoints): (Vec<TokenStream>, Vec<TokenStream>) = if ok {
        stitches
            .iter()
            .zip(&consts)
            .map(|(s, c)| {
                (
                    body(s, quote!(&Self::#c), Some(quote!(&self.__stitch))),
                    endpoint(s, seam_throttle_ref.as_ref()),
                )
            })
            .unzip()
    } else {
        let never = quote!({ ::core::unreachable!() });
        (vec![never; stitches.len()], Vec::new())
    };
    let endpoint_consts = if ok {
        quote! {
            #seam_throttle_item
            #( const #consts: ::stitch::Endpoint = { use ::stitch::__private as #pv; #endpoints }; )*
            /// Descriptors of every stitch of this client, in declaration order.
            #vis const ENDPOINTS: &'static [&'static ::stitch::Endpoint] = &[#(&Self::#consts),*];
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
            #( #signatures #bodies )*
            #( #unstitched { ::core::unreachable!() } )*
        }
    }
}

/// The descriptor constant: only the settings that differ from the defaults are written.
fn endpoint(s: &Stitch, seam_throttle: Option<&TokenStream>) -> TokenStream {
    let pv = private();
    let name = &s.display_name;
    let method = Ident::new(s.method_const(), Span::call_site());
    let method_call =
        (s.method != HttpMethod::Get).then(|| quote!(.with_method(#pv::Method::#method)));
    let target = s.target.as_ref().expect("checked: a stitch has a target");
    let template = target.literal();
    // The literal text around the placeholders: one more piece than there are placeholders.
    let mut pieces = vec![String::new()];
    for piece in &target.template().pieces {
        match piece {
            Piece::Literal(l) => pieces.last_mut().expect("never empty").push_str(l),
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
        let output = s.output.as_ref().expect("checked: output");
        let fingerprint = match &cache.version {
            Some(v) => quote!(#pv::pinned(#v)),
            None => fingerprint(output),
        };
        // `fp::<T>()` checks `T` is cacheable; a pinned version checks it separately.
        let t = output.ty();
        let fingerprint = match &cache.version {
            Some(_) => quote_spanned!(t.span()=> #pv::cached::<#t>(#fingerprint)),
            None => fingerprint,
        };
        let mut policy = quote!(#pv::CachePolicy::new(#pv::ms(#ttl), #fingerprint));
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
        chain.push(quote!(.circuit(#pv::CircuitPolicy::new(#failures, #pv::ms(#ms)))));
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
    let roles = s.arguments.iter().map(|a| {
        let n = a.ident.to_string();
        let role = match a.role.as_ref().expect("checked: every argument has a role") {
            Role::Path => quote!(Path),
            Role::Query(k) => quote!(Query(#k)),
            Role::Body { form: false } => quote!(JsonBody),
            Role::Body { form: true } => quote!(FormBody),
            Role::Header(h) => quote!(Header(#h)),
        };
        quote!((#n, #pv::#role))
    });
    let arg_types = s.arguments.iter().map(|a| static_lifetimes(&a.ty));
    let out_ty = static_lifetimes(s.output.as_ref().expect("checked: output").ty());
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
    spec
}

/// The body of a stitch: fill the request from the arguments, await the generic call.
fn body(s: &Stitch, endpoint: TokenStream, client: Option<TokenStream>) -> TokenStream {
    let pv = private();
    let req = Ident::new("__stitch_request", Span::mixed_site());
    let template = s.target.as_ref().expect("checked").template();
    // Path values are pushed in template order (a placeholder may repeat).
    let path = template.pieces.iter().filter_map(|p| match p {
        Piece::Placeholder(name) => {
            let arg = s
                .arguments
                .iter()
                .find(|a| a.ident.to_string().trim_start_matches("r#") == name)?;
            let ident = &arg.ident;
            Some(quote!(#req.path(#name, &#ident);))
        }
        Piece::Literal(_) => None,
    });
    let others = s.arguments.iter().filter_map(|a: &Argument| {
        let ident = &a.ident;
        match a.role.as_ref()? {
            Role::Path => None,
            Role::Query(k) => Some(quote!(#req.query(#k, &#ident);)),
            Role::Body { form: false } => Some(quote!(#req.json(&#ident);)),
            Role::Body { form: true } => Some(quote!(#req.form(&#ident);)),
            Role::Header(h) => Some(quote!(#req.header(#h, &#ident);)),
        }
    });
    let idempotency = s
        .idempotency
        .as_ref()
        .and_then(|i| i.from.as_ref())
        .and_then(|from| s.arguments.iter().find(|a| a.ident == from.value()))
        .map(|a| {
            let ident = &a.ident;
            let name = ident.to_string();
            quote!(#req.idempotency_key(#name, &#ident);)
        });
    let decoder = decoder(s.output.as_ref().expect("checked: output"));
    let cached = s.cache.is_some() && s.sensitive.is_none();
    // Spanned at the output type: an unmet bound of the cached call is reported there.
    let t = s.output.as_ref().expect("checked: output").ty();
    let call = match (client, cached) {
        (Some(client), false) => quote!(#pv::call::<#decoder>(#client, #req).await),
        (Some(client), true) => {
            quote_spanned!(t.span()=> #pv::call_cached::<#decoder>(#client, #req).await)
        }
        (None, false) => quote!(#pv::call_global::<#decoder>(#req).await),
        (None, true) => {
            quote_spanned!(t.span()=> #pv::call_global_cached::<#decoder>(#req).await)
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
        Output::Json(t) => quote_spanned!(t.span()=> #pv::Json<#t>),
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
