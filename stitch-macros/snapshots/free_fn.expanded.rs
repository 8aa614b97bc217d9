#[doc(hidden)]
#[allow(non_camel_case_types)]
pub struct health {}
impl health {
    /// The stitch's descriptor (see `stitch::Endpoint::describe`).
    pub const ENDPOINT: &'static ::stitch::Endpoint = {
        use ::stitch::__private as __s;
        static __STITCH_DESCRIPTOR: __s::Endpoint = __s::Endpoint::get(
                __s::name!("health"),
                "https://status.example.com/health",
                &["https://status.example.com/health"],
            )
            .absolute()
            .timeout(__s::ms(2000))
            .arguments(&[("probe", __s::Header("x-probe"))])
            .schemas(__s::schemas!([& 'static str], String));
        &__STITCH_DESCRIPTOR
    };
}
pub async fn health(probe: &str) -> stitch::Result<String> {
    use ::stitch::__private as __s;
    let mut __stitch_request = __s::RequestParts::new(health::ENDPOINT);
    __stitch_request.header("x-probe", &probe);
    __s::call_global::<__s::Text>(__stitch_request).await
}
