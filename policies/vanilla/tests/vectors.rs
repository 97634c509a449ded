//! The worked examples of docs/builtins.md#vanilla, run natively.
#[test]
fn vanilla_passes_its_vectors() {
    ebbtide_sdk::vectors::assert_passes::<ebbtide_policy_vanilla::Vanilla>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/vanilla.json"
    ));
}
