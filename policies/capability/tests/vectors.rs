//! The worked examples of docs/builtins.md#capability, run natively.
#[test]
fn capability_passes_its_vectors() {
    ebbtide_sdk::vectors::assert_passes::<ebbtide_policy_capability::CapabilityPolicy>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/capability.json"
    ));
}
