//! Exports `ebbtide:policy/policy@0.2.0`: a policy from a future contract.
#[cfg(target_arch = "wasm32")]
mod guest {
    wit_bindgen::generate!({ path: "wit", world: "scaling-policy" });

    struct Future;
    impl exports::ebbtide::policy::policy::Guest for Future {
        fn describe() -> String {
            "from the future".into()
        }
    }
    export!(Future);
}
